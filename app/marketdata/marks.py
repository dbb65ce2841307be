"""How a mark is judged, from the latest value of each source (api.md, margin.md step 5).

- A source is *fresh* when its age ``now − ts ≤ stale_after``.
- The mark is the **median of the fresh sources** (the mean of the middle two when even).
- The **TWAP** is the time-weighted average of the mark over the last 5 minutes: each recorded
  mark holds until the next one (the last until now); a mark recorded before the window counts
  from the window's start.
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


def fresh_median(
    sources: Sequence[SourceMark], now: datetime, stale_after_s: Decimal
) -> Decimal | None:
    """The median of the fresh sources, or None when none is fresh."""
    limit_ms = stale_after_s * 1000
    fresh = [s.price for s in sources if age_ms(now, s.ts) <= limit_ms]
    return median(fresh) if fresh else None


def twap(ticks: Sequence[tuple[float, Decimal]], now_ms: float, window_ms: float) -> Decimal | None:
    """Time-weighted average of ``(time_ms, price)`` ticks over ``[now − window, now]``."""
    start = now_ms - window_ms
    ordered = sorted(ticks, key=lambda tick: tick[0])
    # The last tick before the window still holds at its start.
    before = [tick for tick in ordered if tick[0] < start]
    inside = [tick for tick in ordered if start <= tick[0] <= now_ms]
    series = ([(start, before[-1][1])] if before else []) + inside
    if not series:
        return None
    total = Decimal(0)
    span = Decimal(0)
    with localcontext(prec=80):
        for (t0, price), (t1, _) in zip(series, [*series[1:], (now_ms, Decimal(0))], strict=True):
            weight = Decimal(repr(max(0.0, t1 - t0)))
            total += price * weight
            span += weight
        average = series[-1][1] if span == 0 else total / span
        return average.quantize(TWAP_QUANTUM)


def judge(
    symbol: str,
    sources: Sequence[SourceMark],
    ticks: Sequence[tuple[float, Decimal]],
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
    average = twap(ticks, now.timestamp() * 1000, window_ms)
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
