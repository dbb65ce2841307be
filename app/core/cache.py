"""The shared cache for marks, books and rate windows: Redis, or an in-process stand-in.

Only the few operations Preflight needs, batched so that one request costs one round trip.
Errors from Redis surface as :class:`CacheUnavailable`; callers fall back to PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from app.core.resp import SharedConnection

_T = TypeVar("_T")


class CacheUnavailable(Exception):
    """The cache could not be reached; the caller falls back to the database."""


class Cache(Protocol):
    async def ping(self) -> None: ...

    async def hset_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Set fields of several hashes."""

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """Every field of each hash (empty dict when missing)."""

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[str | None]: ...

    async def read_for_check(
        self,
        hashes: Sequence[str],
        strings: Sequence[str],
        rate: RateCount | None,
        known: int = 0,
        needed: Sequence[bool] = (),
    ) -> CheckRead:
        """One round trip: every field of ``hashes``, the values of ``strings`` and, with
        ``rate``, the order-rate window counted and (when the caps allow) added to atomically.
        While the write sequence is still ``known``, only the entries ``needed`` marks (hashes
        then strings) are sent."""

    async def zrem_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Remove members from sorted sets."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class RateCount:
    """Count-and-add on the order-rate windows of a subaccount and its account: the members
    are added to both only if ``subaccount + n ≤ subaccount_cap`` and ``account + n ≤
    account_cap`` (None = no cap), in one atomic step, so concurrent checks cannot pass a cap
    together."""

    subaccount_key: str
    account_key: str
    now_ms: float
    window_ms: float
    members: Sequence[str]
    subaccount_cap: int | None
    account_cap: int | None


@dataclass(frozen=True)
class RateWindow:
    subaccount: int
    """Orders in the subaccount's window before this check."""
    account: int
    admitted: bool
    """The members were added (the caps had room)."""


@dataclass(frozen=True)
class CheckRead:
    sequence: int
    """The cache's write sequence when it was read (0: unknown, nothing read may be kept)."""
    unchanged: bool
    """The sequence was still the one the caller knew: only the entries it asked for were
    sent, the others are None (what it read before is still current)."""
    hashes: list[dict[str, str] | None]
    strings: list[str | None]
    rate: RateWindow | None


@dataclass
class KeptReads:
    """What this process read from the cache at write sequence ``sequence``, decoded by the
    reader, by key. It stays current while the sequence does: every write to the cache bumps
    it after writing, so a read that finds the sequence unchanged finds these values too."""

    sequence: int = 0
    values: dict[str, object] = field(default_factory=dict)


SEQUENCE_KEY = "pf:sequence"
"""The cache's write sequence: bumped after every write (``_BUMP_SCRIPT``), never lowered."""

# max(sequence + 1, Redis's clock in µs): increasing across writes, and across a restart or a
# flush that lost it too (the clock has moved on more than the writes since could count), so a
# sequence a process kept is never reached again with other values behind it. %.0f: Lua's
# numbers are doubles (µs since the epoch are exact below 2^53), tostring would write 1.8e+15.
_BUMP_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local next = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
if now > next then next = now end
redis.call('SET', KEYS[1], string.format('%.0f', next))
return 1
"""

# The check's one round trip, as one command. KEYS: the sequence, the hashes, the strings,
# then (when ARGV[3] is 1) the subaccount's and the account's order-rate windows. ARGV: the
# number of hashes, of strings, whether to count, the sequence the caller knows, which entries
# it needs whatever the sequence ('1'/'0' per hash, then per string); then now_ms, window_ms,
# sub cap, account cap (-1 = none), members. The answer: the sequence; each hash as its flat
# field/value list and each string (0 for an entry not sent: the sequence is the one the
# caller knows and it did not ask for it); then {sub, account, admitted}: the windows are
# trimmed, counted and added to only when both caps have room, atomically (no check can pass
# a cap beside another).
_CHECK_SCRIPT = """
local n_hashes, n_strings = tonumber(ARGV[1]), tonumber(ARGV[2])
local sequence = redis.call('GET', KEYS[1]) or '0'
local all = sequence == '0' or sequence ~= ARGV[4]
local needed = ARGV[5]
local out = {sequence}
for i = 1, n_hashes + n_strings do
  if all or string.byte(needed, i) == 49 then
    if i <= n_hashes then
      out[i + 1] = redis.call('HGETALL', KEYS[i + 1])
    else
      out[i + 1] = redis.call('GET', KEYS[i + 1])
    end
  else
    out[i + 1] = 0
  end
end
if ARGV[3] ~= '1' then
  return out
end
local first = n_hashes + n_strings + 2
local sub_key, acct_key = KEYS[first], KEYS[first + 1]
local now = tonumber(ARGV[6])
local since = now - tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', sub_key, '-inf', '(' .. since)
redis.call('ZREMRANGEBYSCORE', acct_key, '-inf', '(' .. since)
local sub = redis.call('ZCARD', sub_key)
local acct = redis.call('ZCARD', acct_key)
local n = #ARGV - 9
local sub_cap, acct_cap = tonumber(ARGV[8]), tonumber(ARGV[9])
local admitted = 0
if not ((sub_cap >= 0 and sub + n > sub_cap) or (acct_cap >= 0 and acct + n > acct_cap)) then
  for i = 10, #ARGV do
    redis.call('ZADD', sub_key, ARGV[6], ARGV[i])
    redis.call('ZADD', acct_key, ARGV[6], ARGV[i])
  end
  admitted = 1
end
out[first] = {sub, acct, admitted}
return out
"""


def _cap(value: int | None) -> int:
    return -1 if value is None else value


SOCKET_TIMEOUT_S = 0.5
"""Every wait on Redis, connecting included, on either client."""

RETRY_AFTER_S = 1.0
"""After a failure, calls fail fast for this long; then one call at a time probes Redis."""


class RedisCache:
    """Redis, guarded for when it is unreachable (refused, hung, partitioned):

    - **Fail fast.** Every socket operation is bounded (0.5 s), and after a failure calls raise
      :class:`CacheUnavailable` at once for ``RETRY_AFTER_S``; then a single call probes Redis
      while the others keep failing fast. A hung Redis costs one timeout per interval, not one
      per call (a check makes several). ``ping`` (readiness) always probes.
    - **Missed writes are forgotten.** ``hset_many`` and ``set_many`` write last values, which
      the database also holds. A key whose write failed may hold an older value when Redis
      answers again (a restart that loads its dump, a partition that heals), so such keys are
      deleted before anything else is done there: readers fall back to the database until the
      next write refills them. (Sorted sets only gain members; a missed add loses nothing the
      next read could be misled by.)
    """

    def __init__(self, url: str, on_round_trip: Callable[[], None] = lambda: None) -> None:
        self._on_round_trip = on_round_trip
        self._client = redis_asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=10,
            # One immediate retry on a broken connection (a pooled one that died with a Redis
            # restart); none on a timeout, which would only double the wait on a hung Redis.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._check_script = self._client.register_script(_CHECK_SCRIPT)
        self._line = _shared_connection(url)
        self._bump_script = self._client.register_script(_BUMP_SCRIPT)
        self._down_until = 0.0
        self._missed: dict[str, int] = {}  # key → the failure that last missed it
        self._failures = 0

    def _admit(self) -> bool:
        if not self._down_until:
            return True
        now = time.monotonic()
        if now < self._down_until:
            return False
        self._down_until = now + RETRY_AFTER_S  # this call probes; the others keep failing fast
        return True

    async def _run(
        self, op: Callable[[], Awaitable[_T]], writes: Iterable[str] = (), *, probe: bool = False
    ) -> _T:
        if not (probe or self._admit()):
            self._miss(writes)
            raise CacheUnavailable("Redis failed just now; not retried yet")
        self._on_round_trip()
        try:
            if self._missed:
                missed = dict(self._missed)
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.delete(*missed)
                    await self._bump_script(keys=[SEQUENCE_KEY], client=pipe)
                    await pipe.execute()
                for key, failure in missed.items():
                    if self._missed.get(key) == failure:  # not missed again meanwhile
                        del self._missed[key]
            result = await op()
        except (RedisError, OSError) as exc:
            self._miss(writes)
            self._down_until = time.monotonic() + RETRY_AFTER_S
            raise CacheUnavailable(str(exc)) from exc
        self._down_until = 0.0
        return result

    def _miss(self, keys: Iterable[str]) -> None:
        self._failures += 1
        for key in keys:
            self._missed[key] = self._failures

    async def ping(self) -> None:
        async def op() -> None:
            await self._client.ping()

        await self._run(op, probe=True)

    async def hset_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        async def op() -> None:
            if self._line is not None:
                await self._write_then_bump(
                    [("HSET", key, *(x for pair in mapping.items() for x in pair))
                     for key, mapping in items if mapping]
                )  # fmt: skip
                return
            async with self._client.pipeline(transaction=False) as pipe:
                for key, mapping in items:
                    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                await self._bump_script(keys=[SEQUENCE_KEY], client=pipe)  # after the writes
                await pipe.execute()

        await self._run(op, [key for key, _ in items])

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        async def op() -> list[dict[str, str]]:
            if self._line is not None:
                flat = await self._line.pipeline([("HGETALL", key) for key in keys])
                return [dict(zip(f[::2], f[1::2], strict=True)) for f in flat]
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        return await self._run(op)

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return

        async def op() -> None:
            if self._line is not None:
                await self._write_then_bump([("MSET", *(x for pair in items for x in pair))])
                return
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.mset(dict(items))
                await self._bump_script(keys=[SEQUENCE_KEY], client=pipe)  # after the writes
                await pipe.execute()

        await self._run(op, [key for key, _ in items])

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []

        async def op() -> list[str | None]:
            values = await self._client.mget(list(keys))
            return [None if v is None else str(v) for v in values]

        return await self._run(op)

    async def read_for_check(
        self,
        hashes: Sequence[str],
        strings: Sequence[str],
        rate: RateCount | None,
        known: int = 0,
        needed: Sequence[bool] = (),
    ) -> CheckRead:
        keys = [SEQUENCE_KEY, *hashes, *strings]
        mask = "".join("1" if n else "0" for n in needed) if needed else ""
        args: list[str | int] = [len(hashes), len(strings), 0 if rate is None else 1, known, mask]
        if rate is not None:
            keys += [rate.subaccount_key, rate.account_key]
            args += [
                f"{rate.now_ms:.3f}",
                f"{rate.window_ms:.3f}",
                _cap(rate.subaccount_cap),
                _cap(rate.account_cap),
                *rate.members,
            ]
        n_hashes = len(hashes)

        async def op() -> CheckRead:
            # One command, not a pipeline of one per key: the client's cost is per command.
            replies = await self._check(keys, args)
            sequence = int(replies[0])
            window = None
            if rate is not None:
                sub, acct, admitted = replies[n_hashes + len(strings) + 1]
                window = RateWindow(int(sub), int(acct), bool(admitted))
            found: list[dict[str, str] | None] = [
                None if flat == 0 else dict(zip(flat[::2], flat[1::2], strict=True))
                for flat in replies[1 : n_hashes + 1]
            ]
            values = [
                None if v == 0 else v for v in replies[n_hashes + 1 : n_hashes + len(strings) + 1]
            ]
            return CheckRead(sequence, bool(known) and sequence == known, found, values, window)

        return await self._run(op)

    async def _write_then_bump(self, commands: list[tuple[str | int, ...]]) -> None:
        """``commands``, then the write sequence bumped (after them: one connection runs its
        commands in order), on the shared connection."""
        assert self._line is not None
        bump: tuple[str | int, ...] = ("EVALSHA", self._bump_script.sha, 1, SEQUENCE_KEY)
        try:
            await self._line.pipeline([*commands, bump])
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self._eval(self._bump_script, [SEQUENCE_KEY], [])

    async def _check(self, keys: list[str], args: list[str | int]) -> Any:
        """The check's script, on the connection the checks share when the URL allows."""
        if self._line is None:
            return await self._check_script(keys=keys, args=args)
        return await self._eval(self._check_script, keys, args)

    async def _eval(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """``script`` on the shared connection: by its SHA, or by its text when Redis has lost
        it (a restart or a flush of its scripts; EVAL caches it again)."""
        assert self._line is not None
        try:
            return await self._line.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            text = cast(str, script.script)  # registered from this module's str constants
            return await self._line.execute("EVAL", text, len(keys), *keys, *args)

    async def zrem_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> None:
        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, members in items:
                    pipe.zrem(key, *members)
                await pipe.execute()

        await self._run(op)

    async def close(self) -> None:
        if self._line is not None:
            self._line.close()
        await self._client.aclose()


def _shared_connection(url: str) -> SharedConnection | None:
    """The shared connection to ``url`` (the checks' reads, the feed's writes); None for what it
    does not speak (TLS)."""
    if not url.startswith(("redis://", "unix://")):
        return None
    options = parse_url(url)  # type: ignore[no-untyped-call]
    return SharedConnection(
        host=options.get("host", "localhost"),
        port=int(options.get("port", 6379)),
        path=options.get("path"),
        db=int(options.get("db", 0)),
        username=options.get("username"),
        password=options.get("password"),
        timeout=SOCKET_TIMEOUT_S,
    )


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

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        self._strings.update(items)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [self._strings.get(key) for key in keys]

    async def read_for_check(
        self,
        hashes: Sequence[str],
        strings: Sequence[str],
        rate: RateCount | None,
        known: int = 0,
        needed: Sequence[bool] = (),
    ) -> CheckRead:
        # Everything, every time (sequence 0: nothing is kept): reading a dict costs nothing.
        # No await between reading and adding: atomic within the one process it serves.
        window = None
        if rate is not None:
            since = rate.now_ms - rate.window_ms
            counts = []
            for key in (rate.subaccount_key, rate.account_key):
                scores = self._sorted.setdefault(key, {})
                for member in [m for m, score in scores.items() if score < since]:
                    del scores[member]
                counts.append(len(scores))
            n = len(rate.members)
            admitted = not (
                (rate.subaccount_cap is not None and counts[0] + n > rate.subaccount_cap)
                or (rate.account_cap is not None and counts[1] + n > rate.account_cap)
            )
            if admitted:
                for key in (rate.subaccount_key, rate.account_key):
                    self._sorted[key].update(dict.fromkeys(rate.members, rate.now_ms))
            window = RateWindow(counts[0], counts[1], admitted)
        return CheckRead(
            0,
            False,
            [dict(self._hashes.get(key, {})) for key in hashes],
            [self._strings.get(key) for key in strings],
            window,
        )

    async def zrem_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> None:
        for key, members in items:
            scores = self._sorted.get(key, {})
            for member in members:
                scores.pop(member, None)

    async def close(self) -> None:
        return None


def create_cache(url: str | None, on_round_trip: Callable[[], None] = lambda: None) -> Cache:
    """``on_round_trip`` is called for every round trip to Redis (metrics count them)."""
    return RedisCache(url, on_round_trip) if url else MemoryCache()
