"""How a mark is judged, from the latest value of each source (api.md, margin.md step 5).

- A source is *fresh* when its age ``now − ts ≤ stale_after``.
- The mark is the **median of the fresh sources** (the mean of the middle two when even).
- The **TWAP** is the time-weighted average of the mark over the last 5 minutes. The mark's
  history is replayed from every source's ticks in timestamp order: after each tick the mark is
  the median of the sources fresh at that moment; each value holds until the next tick (the last
  until now), and the last value before the window counts from the window's start.
- Status: ``stale`` when no source is fresh (the price shown is then the median of every
  source's last value); else ``deviating`` when ``|mark − twap| / twap > max_twap_deviation``;
  else ``fresh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Literal

MarkStatus = Literal["fresh", "stale", "deviating"]
TWAP_QUANTUM = Decimal(1).scaleb(-12)


@dataclass(frozen=True)
class SourceMark:
    source: str
    price: Decimal
    ts: datetime
    funding_rate: Decimal | None


@dataclass(frozen=True)
class SourceView:
    source: str
    price: Decimal
    ts: datetime
    age_ms: int
    fresh: bool


@dataclass(frozen=True)
class Mark:
    symbol: str
    price: Decimal
    twap: Decimal
    status: MarkStatus
    age_ms: int
    """Age of the newest source."""
    funding_rate: Decimal | None
    sources: tuple[SourceView, ...]


def median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    with localcontext(prec=80):
        return (ordered[middle - 1] + ordered[middle]) / 2


def age_ms(now: datetime, ts: datetime) -> int:
    return max(0, int((now - ts).total_seconds() * 1000))


Tick = tuple[float, str, Decimal]
"""``(time_ms, source, price)`` as each source sent it."""


def mark_history(ticks: Sequence[Tick], stale_after_ms: float) -> list[tuple[float, Decimal]]:
    """The mark after each tick: the median of the sources fresh at that tick's time."""
    latest: dict[str, tuple[float, Decimal]] = {}
    history = []
    for time_ms, source, price in sorted(ticks):
        latest[source] = (time_ms, price)
        fresh = [p for t, p in latest.values() if time_ms - t <= stale_after_ms]
        history.append((time_ms, median(fresh)))
    return history


def twap(
    history: Sequence[tuple[float, Decimal]], now_ms: float, window_ms: float
) -> Decimal | None:
    """Time-weighted average of a ``(time_ms, mark)`` history over ``[now − window, now]``."""
    start = now_ms - window_ms
    # The last value before the window still holds at its start.
    before = [point for point in history if point[0] < start]
    inside = [point for point in history if start <= point[0] <= now_ms]
    series = ([(start, before[-1][1])] if before else []) + inside
    if not series:
        return None
    total = Decimal(0)
    span = Decimal(0)
    with localcontext(prec=80):
        ends = [*(t for t, _ in series[1:]), now_ms]
        for (t0, price), t1 in zip(series, ends, strict=True):
            weight = Decimal(repr(max(0.0, t1 - t0)))
            total += price * weight
            span += weight
        average = series[-1][1] if span == 0 else total / span
        return average.quantize(TWAP_QUANTUM)


def judge(
    symbol: str,
    sources: Sequence[SourceMark],
    ticks: Sequence[Tick],
    now: datetime,
    stale_after_s: Decimal,
    max_twap_deviation: Decimal,
    window_ms: float,
) -> Mark:
    """Price, TWAP and status of one symbol from its sources' latest values."""
    assert sources, "judge needs at least one source"
    limit_ms = stale_after_s * 1000
    views = tuple(
        SourceView(s.source, s.price, s.ts, age_ms(now, s.ts), age_ms(now, s.ts) <= limit_ms)
        for s in sorted(sources, key=lambda s: s.source)
    )
    fresh_prices = [v.price for v in views if v.fresh]
    price = median(fresh_prices) if fresh_prices else median([v.price for v in views])
    history = mark_history(ticks, float(limit_ms))
    average = twap(history, now.timestamp() * 1000, window_ms)
    if average is None:
        average = price  # no history (e.g. the cache was emptied): nothing to deviate from
    status: MarkStatus
    if not fresh_prices:
        status = "stale"
    elif average > 0 and abs(price - average) / average > max_twap_deviation:
        status = "deviating"
    else:
        status = "fresh"
    with_funding = [s for s in sources if s.funding_rate is not None]
    funding = max(with_funding, key=lambda s: s.ts).funding_rate if with_funding else None
    newest = min(v.age_ms for v in views)
    return Mark(symbol, price, average, status, newest, funding, views)
