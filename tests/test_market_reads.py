"""Marks and books kept per process (marketdata.read_for_check): a check asks Redis for the
cache's write sequence and only for what the process does not hold; a write through any process
moves the sequence, so the very next check everywhere reads the new values.

By hand (BTC-PERP: contract 1, taker fee 0.05 %): a market buy of 0.1 against asks at 60,010
fills at 60,010, fee 0.0005 · 6,001 = 3.0005; against asks at 60,100, fee 0.0005 · 6,010 = 3.005.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.core.cache import RedisCache
from app.core.config import Settings
from tests.conftest import Api, flush_redis
from tests.factories import deposit, desk, marks
from tests.test_reference_cache import _check as check_on

MARKET_BUY = {"instrument": "BTC-PERP", "side": "buy", "size": "0.1", "type": "market"}


async def _book(api: Api, ask: str) -> None:
    now = datetime.now(UTC).isoformat()
    await api.ok(
        "PUT",
        "/v1/books/BTC-PERP",
        json={"bids": [["59990", "1"]], "asks": [[ask, "1"]], "ts": now},
    )


async def _check(api: Api) -> dict[str, Any]:
    return await check_on(api, MARKET_BUY)


async def test_a_mark_and_a_book_posted_on_one_process_are_used_by_the_next_check_on_the_other(
    apis: tuple[Api, Api],
) -> None:
    a, b = apis
    await desk(a)
    await deposit(a, "sub-cross", "10000")
    await marks(a, {"BTC-PERP": "60000"})
    await _book(a, "60010")
    for _ in range(2):  # B keeps the mark and the book it read
        first = await _check(b)
        assert first["marks"]["BTC-PERP"]["price"] == "60000"
        assert Decimal(first["executions"][0]["fee"]) == Decimal("3.0005")

    await marks(a, {"BTC-PERP": "61000"})
    await _book(a, "60100")
    second = await _check(b)
    assert second["marks"]["BTC-PERP"]["price"] == "61000"
    assert Decimal(second["executions"][0]["avg_price"]) == 60100
    assert Decimal(second["executions"][0]["fee"]) == Decimal("3.005")


async def test_the_cache_sends_only_what_moved_since_the_sequence_a_reader_knows(
    clean: None, settings: Settings
) -> None:
    assert settings.redis_url is not None
    cache = RedisCache(settings.redis_url)
    mark, book = ["pf:mark:X"], ["pf:book:X"]
    try:
        await cache.hset_many([("pf:mark:X", {"a": "1"})])
        first = await cache.read_for_check(mark, book, None)
        assert (first.unchanged, first.hashes, first.strings) == (False, [{"a": "1"}], [None])
        assert first.sequence > 0

        # Nothing written since: only what the reader asks for comes back.
        quiet = await cache.read_for_check(mark, book, None, first.sequence, [False, False])
        assert (quiet.unchanged, quiet.sequence) == (True, first.sequence)
        assert (quiet.hashes, quiet.strings) == ([None], [None])
        asked = await cache.read_for_check(mark, book, None, first.sequence, [True, False])
        assert asked.hashes == [{"a": "1"}]

        # A write moves the sequence: everything comes back, whatever was asked.
        await cache.set_many([("pf:book:X", "B")])
        moved = await cache.read_for_check(mark, book, None, first.sequence, [False, False])
        assert not moved.unchanged and moved.sequence > first.sequence
        assert (moved.hashes, moved.strings) == ([{"a": "1"}], ["B"])

        # A restart that lost everything: no sequence, nothing may be kept, and the next write
        # starts it above any it had reached (a process's kept sequence is never met again).
        await flush_redis(settings)
        lost = await cache.read_for_check(mark, book, None, moved.sequence, [False, False])
        assert (lost.sequence, lost.unchanged, lost.hashes) == (0, False, [{}])
        await cache.hset_many([("pf:mark:X", {"a": "2"})])
        again = await cache.read_for_check(mark, book, None, moved.sequence, [False, False])
        assert again.sequence > moved.sequence and again.hashes == [{"a": "2"}]
    finally:
        await cache.close()
