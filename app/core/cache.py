"""The shared cache for marks, books and rate windows: Redis, or an in-process stand-in.

Only the few operations Preflight needs, batched so that one request costs one round trip.
Errors from Redis surface as :class:`CacheUnavailable`; callers fall back to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError


class CacheUnavailable(Exception):
    """The cache could not be reached; the caller falls back to the database."""


class Cache(Protocol):
    async def ping(self) -> None: ...

    async def hset_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Set fields of several hashes."""

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """Every field of each hash (empty dict when missing)."""

    async def zadd_many(
        self, items: Sequence[tuple[str, dict[str, float]]], keep_after: float
    ) -> None:
        """Add scored members to sorted sets, dropping members scored below ``keep_after``."""

    async def zrange_many(self, keys: Sequence[str], min_score: float) -> list[list[str]]:
        """Members scored at or above ``min_score``, ascending by score."""

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[str | None]: ...

    async def close(self) -> None: ...


class RedisCache:
    def __init__(self, url: str) -> None:
        self._client = redis_asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            health_check_interval=10,
        )

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def hset_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, mapping in items:
                    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def zadd_many(
        self, items: Sequence[tuple[str, dict[str, float]]], keep_after: float
    ) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, members in items:
                    pipe.zadd(key, dict(members))
                    pipe.zremrangebyscore(key, "-inf", f"({keep_after}")
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def zrange_many(self, keys: Sequence[str], min_score: float) -> list[list[str]]:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrangebyscore(key, min_score, "+inf")
                return [list(members) for members in await pipe.execute()]
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        try:
            await self._client.mset(dict(items))
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        try:
            values = await self._client.mget(list(keys))
            return [None if v is None else str(v) for v in values]
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()


class MemoryCache:
    """In-process stand-in for the embedded default (one process, nothing shared)."""

    def __init__(self) -> None:
        self._hashes: dict[str, dict[str, str]] = {}
        self._sorted: dict[str, dict[str, float]] = {}
        self._strings: dict[str, str] = {}

    async def ping(self) -> None:
        return None

    async def hset_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        for key, mapping in items:
            self._hashes.setdefault(key, {}).update(mapping)

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        return [dict(self._hashes.get(key, {})) for key in keys]

    async def zadd_many(
        self, items: Sequence[tuple[str, dict[str, float]]], keep_after: float
    ) -> None:
        for key, members in items:
            scores = self._sorted.setdefault(key, {})
            scores.update(members)
            for member in [m for m, score in scores.items() if score < keep_after]:
                del scores[member]

    async def zrange_many(self, keys: Sequence[str], min_score: float) -> list[list[str]]:
        result = []
        for key in keys:
            scores = self._sorted.get(key, {})
            ranked = sorted((score, member) for member, score in scores.items())
            result.append([member for score, member in ranked if score >= min_score])
        return result

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        self._strings.update(items)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [self._strings.get(key) for key in keys]

    async def close(self) -> None:
        return None


def create_cache(url: str | None) -> Cache:
    return RedisCache(url) if url else MemoryCache()
