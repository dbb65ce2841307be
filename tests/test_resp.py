"""The connection many callers share (app/core/resp.py): answers reach the caller that asked,
in order, whatever the interleaving; an error answer in the middle of a pipeline fails that
pipeline and leaves the connection in step for the next command."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.connection import parse_url
from redis.exceptions import ResponseError

from app.core.config import Settings
from app.core.resp import SharedConnection
from tests.conftest import flush_redis


@pytest.fixture
async def line(settings: Settings) -> AsyncIterator[SharedConnection]:
    assert settings.redis_url is not None
    await flush_redis(settings)
    options = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    shared = SharedConnection(host=options["host"], port=options["port"], db=options["db"])
    yield shared
    shared.close()
    await flush_redis(settings)


async def test_concurrent_callers_each_get_their_own_answer(line: SharedConnection) -> None:
    await line.pipeline([("SET", f"k{i}", f"v{i}") for i in range(200)])
    answers = await asyncio.gather(*(line.execute("GET", f"k{i}") for i in range(200)))
    assert answers == [f"v{i}" for i in range(200)]


async def test_an_error_answer_fails_its_pipeline_and_the_next_command_is_in_step(
    line: SharedConnection,
) -> None:
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await line.pipeline([("SET", "a", "1"), ("HGETALL", "a"), ("SET", "b", "2")])
    # The commands after the error ran (Redis does not stop a pipeline), and the answers that
    # follow are the right ones: nothing was left behind in the stream.
    assert await line.execute("MGET", "a", "b") == ["1", "2"]
    assert await line.execute("HSET", "h", "f", "x") == 1
    assert await line.execute("HGETALL", "h") == ["f", "x"]


async def test_the_cache_runs_its_scripts_again_after_redis_lost_them(settings: Settings) -> None:
    """A Redis that restarted (or flushed its scripts) answers NOSCRIPT to a script called by its
    SHA: the cache sends its text instead, for the check's read and for the bump after a write."""
    from app.core.cache import SEQUENCE_KEY, RedisCache

    assert settings.redis_url is not None
    await flush_redis(settings)
    cache = RedisCache(settings.redis_url)
    try:
        await cache.hset_many([("pf:mark:X", {"venue": "1"})])
        await cache._line.execute("SCRIPT", "FLUSH")  # type: ignore[union-attr]
        before = int(await cache._line.execute("GET", SEQUENCE_KEY))  # type: ignore[union-attr]
        await cache.hset_many([("pf:mark:X", {"venue": "2"})])
        read = await cache.read_for_check(["pf:mark:X"], [], None)
        assert read.hashes == [{"venue": "2"}] and read.sequence > before
    finally:
        await cache.close()
        await flush_redis(settings)
