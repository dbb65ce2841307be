"""How a mark is judged, from the latest value of each source (api.md, margin.md step 5).

- A source is *fresh* when its age ``now − ts ≤ stale_after``.
- The mark is the **median of the fresh sources** (the mean of the middle two when even).
- The **TWAP** is the time-weighted average of the mark over the last 5 minutes. Only the
  fresh consensus enters it: each post of marks extends it with one point per symbol, at the
  time of the post, worth the mark then (the median of the sources fresh at that moment); a
  post with no fresh source adds nothing. A tick dated in the past (a late source, a replay)
  changes the sources but never rewrites the history, so one late tick cannot move the TWAP
  away from the mark and fail every check closed. Each point holds until the next (the last
  until now). It is computed in float64: it only decides ``deviating``. The writer extends
  the stored state in O(1) (:meth:`TwapState.extended`) and keeps it in PostgreSQL too, so a
  cache that restarted empty still knows it; a reader extends it to now in O(1)
  (:meth:`TwapState.at`), whatever the length of the history.
- An option's sources each carry an implied volatility: its ``iv`` is the **median iv of the
  same sources** the price's median is taken over (the fresh ones; every source when none is).
  Other symbols' sources carry none, and their ``iv`` is None at no cost to judge.
- Status: ``stale`` when no source is fresh (the price shown is then the median of every
  source's last value); else ``deviating`` when ``|mark − twap| / twap > max_twap_deviation``;
  else ``fresh``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from functools import cached_property
from typing import Literal

MarkStatus = Literal["fresh", "stale", "deviating"]
TWAP_QUANTUM = Decimal(1).scaleb(-12)
_WIDE = Context(prec=80)


@dataclass(frozen=True)
class SourceMark:
    source: str
    price: Decimal
    ts: datetime
    funding_rate: Decimal | None
    iv: Decimal | None = None
    """An option's implied volatility from this source (annualised); None for other symbols."""


@dataclass(frozen=True)
class SourceView:
    source: str
    price: Decimal
    ts: datetime
    age_ms: int
    fresh: bool
    iv: Decimal | None


@dataclass(frozen=True)
class Sources:
    """A symbol's sources' latest values, prepared once per post (they are judged many times):
    ordered by name, with the median of all of them (the mark when every source is fresh, and
    when none is), the newest timestamp, the funding rate of the newest source that has one,
    and the median iv of all of them (None when no source has one: every symbol but an
    option)."""

    ordered: tuple[SourceMark, ...]
    median_all: Decimal
    newest_ts: datetime
    funding_rate: Decimal | None
    times_us: tuple[int, ...]
    """Each ordered source's timestamp in whole microseconds since the epoch: ages are judged
    in exact integers, not in datetime arithmetic, once per check and symbol."""
    oldest_us: int
    newest_us: int
    iv_all: Decimal | None = None
    """The median iv of the sources that have one (an option's: all of them), None when none
    has: the option's iv when every source is fresh, and when none is."""

    @cached_property
    def median_all_float(self) -> float:
        return float(self.median_all)

    @classmethod
    def of(cls, sources: Sequence[SourceMark]) -> Sources:
        assert sources, "a mark needs at least one source"
        ordered = tuple(sorted(sources, key=_by_source))
        funding, funded_at = None, None
        for s in ordered:
            if s.funding_rate is not None and (funded_at is None or s.ts > funded_at):
                funding, funded_at = s.funding_rate, s.ts
        times = tuple(microseconds(s.ts) for s in ordered)
        return cls(
            ordered,
            median([s.price for s in ordered]),
            max(s.ts for s in ordered),
            funding,
            times,
            min(times),
            max(times),
            median_iv(ordered),
        )


@dataclass(frozen=True)
class Mark:
    symbol: str
    price: Decimal
    status: MarkStatus
    age_ms: int
    """Age of the newest source."""
    funding_rate: Decimal | None
    inputs: Sources
    judged_at: datetime
    stale_after: timedelta
    recorded_twap: float | None
    iv: Decimal | None = None
    """An option's implied volatility: the median iv of the sources the price is the median
    of (the fresh ones; every source when none is fresh). None for other symbols."""

    @cached_property
    def twap(self) -> Decimal:
        """The TWAP as a decimal (the price itself without history: nothing to deviate from)."""
        if self.recorded_twap is None:
            return self.price
        return Decimal(repr(self.recorded_twap)).quantize(TWAP_QUANTUM)

    @cached_property
    def sources(self) -> tuple[SourceView, ...]:
        """Each source with its age and freshness when the mark was judged."""
        now, limit = self.judged_at, self.stale_after
        return tuple(
            SourceView(s.source, s.price, s.ts, age_ms(now, s.ts), now - s.ts <= limit, s.iv)
            for s in self.inputs.ordered
        )


def median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    # Wide enough for any two accepted prices: the mean is exact.
    return _WIDE.divide(_WIDE.add(ordered[middle - 1], ordered[middle]), 2)


def median_iv(sources: Sequence[SourceMark]) -> Decimal | None:
    """The median iv of ``sources`` that have one; None when none has."""
    ivs = [s.iv for s in sources if s.iv is not None]
    return median(ivs) if ivs else None


_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def microseconds(at: datetime) -> int:
    """``at`` in whole microseconds since the epoch, exactly (datetimes are microsecond-exact)."""
    return (at - _EPOCH) // _US


def _by_source(mark: SourceMark) -> str:
    return mark.source


def age_ms(now: datetime, ts: datetime) -> int:
    """Whole milliseconds, for display: freshness is judged by ``is_fresh``."""
    return max(0, int((now - ts) / _MS))


def is_fresh(now: datetime, ts: datetime, stale_after_s: Decimal) -> bool:
    """At most ``stale_after_s`` old, to the microsecond (a whole-millisecond age would pass a
    value up to 1 ms past its limit)."""
    return now - ts <= timedelta(seconds=float(stale_after_s))


@dataclass(frozen=True)
class TwapState:
    """The TWAP as of the last point: ``average`` over the ``span_ms`` (≤ the window) of
    history before ``at_ms``, where the mark became ``last``."""

    at_ms: float
    last: float
    average: float
    span_ms: float

    def at(self, now_ms: float, window_ms: float) -> float:
        """The TWAP at ``now``: the last point holds over ``d = now − at``; the history before
        it keeps its average. Exact while ``span + d ≤ window``; past that, the ``d`` oldest
        milliseconds leave at the window's average instead of their own value — while the mark
        is fresh ``d ≤ stale_after`` (seconds against a 300 s window), so the error is at most
        ``d / window`` of the spread between those and the average."""
        elapsed = max(0.0, now_ms - self.at_ms)
        if elapsed >= window_ms:
            return self.last
        kept = min(self.span_ms, window_ms - elapsed)
        if kept + elapsed == 0:
            return self.last
        return (self.average * kept + self.last * elapsed) / (kept + elapsed)

    def extended(self, at_ms: float, value: float, window_ms: float) -> TwapState:
        """The state after a new point ``value`` at ``at_ms`` (not before ``self.at_ms``): the
        last point held until then, so the average before the new point is ``at(at_ms)``, over
        ``min(span + d, window)``."""
        at_ms = max(at_ms, self.at_ms)
        elapsed = at_ms - self.at_ms
        return TwapState(
            at_ms, value, self.at(at_ms, window_ms), min(self.span_ms + elapsed, window_ms)
        )

    @classmethod
    def first(cls, at_ms: float, value: float) -> TwapState:
        """A history of one point: the TWAP is that point until the next."""
        return cls(at_ms, value, value, 0.0)


def judge(
    symbol: str,
    sources: Sources,
    recorded: float | None,
    now: datetime,
    stale_after_s: Decimal,
    max_twap_deviation: Decimal,
) -> Mark:
    """Price and status of one symbol from its sources' latest values and the TWAP ``recorded``
    for now (None: no history). Ages are compared in whole microseconds, as ``is_fresh``
    compares datetimes: ``now − ts ≤ stale_after`` (the limit rounded to the microsecond, as a
    ``timedelta`` rounds it)."""
    limit, limit_us = _stale_limit(stale_after_s)
    now_us = microseconds(now)
    times = sources.times_us
    oldest_age = now_us - sources.oldest_us
    newest_age = now_us - sources.newest_us
    iv = sources.iv_all  # every source fresh, or none: the median iv of all of them
    if oldest_age <= limit_us:  # every source fresh: the common case
        price, fresh = sources.median_all, True
        if recorded is not None and recorded > 0:
            # Its float is kept with the sources: judged once per post, not per check.
            clear = _float_deviation(sources.median_all_float, recorded, max_twap_deviation)
            if clear is not None:
                age = max(0, newest_age // 1000)
                return Mark(
                    symbol, price, clear, age, sources.funding_rate, sources, now, limit,
                    recorded, iv,
                )  # fmt: skip
    elif newest_age > limit_us:  # none: the median of every last value, stale
        price, fresh = sources.median_all, False
    else:
        fresh_sources = [s for s, t in zip(sources.ordered, times, strict=True)
                         if now_us - t <= limit_us]  # fmt: skip
        price = median([s.price for s in fresh_sources])
        if iv is not None:  # an option: the iv of the same (fresh) sources as the price
            iv = median_iv(fresh_sources)
        fresh = True
    status: MarkStatus = deviation_status(price, recorded, max_twap_deviation) if fresh else "stale"
    age = max(0, newest_age // 1000)
    return Mark(symbol, price, status, age, sources.funding_rate, sources, now, limit, recorded, iv)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check needs of a judged mark: its price, status and funding rate, the newest
    source's time (the age is the check's own: ``now − newest``) and, for an option, its
    implied volatility."""

    price: Decimal
    status: MarkStatus
    funding_rate: Decimal | None
    newest_us: int
    iv: Decimal | None = None
    """An option's implied volatility (annualised): the median iv of the same sources as the
    price's median (``Mark.iv``). None for every other symbol."""

    def age_ms(self, now_us: int) -> int:
        return max(0, (now_us - self.newest_us) // 1000)


NEVER_US = 2**63
"""A verdict no time changes (every source stale stays stale until a new post)."""


def verdict(
    sources: Sources,
    twap: TwapState | None,
    window_ms: float,
    now_us: int,
    stale_after_s: Decimal,
    max_twap_deviation: Decimal,
) -> tuple[Verdict, int]:
    """``judge``'s price and status at ``now_us``, and until when (µs since the epoch) they hold
    for these sources and TWAP whatever the time: while every source stays fresh, a fresh mark
    whose price is the TWAP's last point stays fresh — the TWAP only moves toward that point,
    so the deviation only shrinks; a mark whose sources are all stale stays stale. Any other
    verdict holds for this instant only."""
    _, limit_us = _stale_limit(stale_after_s)
    recorded = None if twap is None else twap.at(now_us / 1000, window_ms)
    mark = judge(
        "", sources, recorded, _EPOCH + timedelta(microseconds=now_us), stale_after_s,
        max_twap_deviation,
    )  # fmt: skip
    until = now_us
    if now_us - sources.newest_us > limit_us:
        until = NEVER_US
    elif (
        mark.status == "fresh"
        and now_us - sources.oldest_us <= limit_us
        and (twap is None or twap.last == sources.median_all_float)
    ):
        until = sources.oldest_us + limit_us
    return Verdict(mark.price, mark.status, sources.funding_rate, sources.newest_us, mark.iv), until


_DEVIATION_SLACK = 1e-9
"""Relative room, around the limit, inside which the deviation is judged in exact decimals."""


@functools.lru_cache(maxsize=256)
def _stale_limit(stale_after_s: Decimal) -> tuple[timedelta, int]:
    """``stale_after`` as a ``timedelta`` and in whole microseconds (as a timedelta rounds it):
    a few distinct values, converted once."""
    limit = timedelta(seconds=float(stale_after_s))
    return limit, limit // _US


@functools.lru_cache(maxsize=256)
def _bound(limit: Decimal) -> float:
    return float(limit)


def _float_deviation(price: float, recorded: float, limit: Decimal) -> MarkStatus | None:
    """The deviation decided in float64 when clearly on one side of the limit (``recorded >
    0``); None near it, where the exact rule decides."""
    ratio = abs(price - recorded) / recorded
    bound = _bound(limit)
    slack = _DEVIATION_SLACK * bound + 1e-12 / recorded + 1e-15
    if ratio < bound - slack:
        return "fresh"
    if ratio > bound + slack:
        return "deviating"
    return None


def deviation_status(price: Decimal, recorded: float | None, limit: Decimal) -> MarkStatus:
    """``deviating`` when ``|price − twap| / twap > limit``, with ``twap`` the recorded float at
    12 places. Decided in float64 when clearly on one side: the float ratio is off by at most
    ~1e-15 plus the 0.5e-12 quantum of the decimal TWAP relative to it, far inside the slack;
    near the limit, by the exact rule."""
    if recorded is None:
        return "fresh"  # no history: nothing to deviate from
    if recorded > 0:
        status = _float_deviation(float(price), recorded, limit)
        if status is not None:
            return status
    average = Decimal(repr(recorded)).quantize(TWAP_QUANTUM)
    if average > 0 and abs(price - average) / average > limit:
        return "deviating"
    return "fresh"
