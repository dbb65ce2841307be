"""Simulating a leg against the visible book (margin.md, Pre-trade step 1). Exact, in Decimal.

- With a fresh book, a market order or marketable limit walks the opposite side level by level;
  a limit stops at its price. Levels consumed by one leg are gone for the next leg of the basket.
- What a limit order does not fill rests at its limit price (``gtc``) and is counted as if
  filled there, conservatively; ``ioc`` cancels the rest; ``fok`` fills all or nothing.
- Without a fresh book: a limit is assumed filled at its limit price; a market order at
  ``mark · (1 ± default_slippage)`` (``price_source: "mark"``).
- ``fee = filled · k · avg_price · taker_rate`` (+ the maker rate on a resting remainder when
  that rate is positive). ``slippage_bps = ±(avg_price − mark) / mark · 10⁴``, positive when
  against the trader.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Literal

PRICE_QUANTUM = Decimal(1).scaleb(-18)
Level = tuple[Decimal, Decimal]
BookStatus = Literal["fresh", "stale", "missing"]
PriceSource = Literal["book", "limit", "mark"]


@dataclass(frozen=True)
class Leg:
    side: Literal["buy", "sell"]
    size: Decimal
    order_type: Literal["market", "limit"]
    limit_price: Decimal | None
    time_in_force: Literal["gtc", "ioc", "fok"]


@dataclass(frozen=True)
class Execution:
    filled_size: Decimal
    """Filled against the book (or assumed filled without one)."""
    avg_price: Decimal | None
    unfilled_size: Decimal
    resting_size: Decimal
    """The part of ``unfilled_size`` resting at ``resting_price``, counted as if filled."""
    resting_price: Decimal | None
    cancelled_size: Decimal
    """The part of ``unfilled_size`` an ``ioc`` limit lets go: neither filled nor missing."""
    fee: Decimal
    book: BookStatus
    price_source: PriceSource
    slippage_bps: float | None

    def counted(self) -> list[tuple[Decimal, Decimal]]:
        """``(size, price)`` that margin counts as filled: the executed and the resting part."""
        parts = []
        if self.filled_size and self.avg_price is not None:
            parts.append((self.filled_size, self.avg_price))
        if self.resting_size and self.resting_price is not None:
            parts.append((self.resting_size, self.resting_price))
        return parts

    @property
    def short_of_liquidity(self) -> bool:
        """Some of the order neither fills, rests nor is let go: a market order past the
        book's depth, or a ``fok`` that cannot fill whole."""
        return self.unfilled_size > self.resting_size + self.cancelled_size


def _average(notional: Decimal, size: Decimal, side: str) -> Decimal:
    with localcontext(prec=80):
        rounding = ROUND_CEILING if side == "buy" else ROUND_FLOOR  # against the trader
        return (notional / size).quantize(PRICE_QUANTUM, rounding=rounding)


def walk(levels: list[Level], leg: Leg) -> tuple[Decimal, Decimal]:
    """Consume ``levels`` (best first) in place for ``leg``; ``(filled, notional)``."""
    remaining, filled, notional = leg.size, Decimal(0), Decimal(0)
    while remaining > 0 and levels:
        price, available = levels[0]
        if leg.limit_price is not None and (
            price > leg.limit_price if leg.side == "buy" else price < leg.limit_price
        ):
            break
        take = min(available, remaining)
        filled += take
        notional += take * price
        remaining -= take
        if take == available:
            levels.pop(0)
        else:
            levels[0] = (price, available - take)
    return filled, notional


def _slippage(avg: Decimal, mark: Decimal, side: str) -> float:
    sign = 1 if side == "buy" else -1
    return round(float(sign * (avg - mark) / mark * 10_000), 4)


def execute(
    leg: Leg,
    levels: list[Level] | None,
    book_status: BookStatus,
    mark: Decimal,
    contract_size: Decimal,
    taker_fee_rate: Decimal,
    maker_fee_rate: Decimal,
    default_slippage: Decimal,
) -> Execution:
    """Simulate one leg. ``levels`` is the opposite side of a fresh book (consumed in place),
    or None when the book is stale or missing."""
    zero = Decimal(0)
    if levels is None:
        source: PriceSource
        if leg.order_type == "limit":
            assert leg.limit_price is not None
            price, source = leg.limit_price, "limit"
        else:
            move = default_slippage if leg.side == "buy" else -default_slippage
            price, source = mark * (1 + move), "mark"
        fee = leg.size * contract_size * price * taker_fee_rate
        return Execution(
            filled_size=leg.size,
            avg_price=price,
            unfilled_size=zero,
            resting_size=zero,
            resting_price=None,
            cancelled_size=zero,
            fee=fee,
            book=book_status,
            price_source=source,
            slippage_bps=_slippage(price, mark, leg.side),
        )

    if leg.time_in_force == "fok" and walk(list(levels), leg)[0] < leg.size:
        return Execution(
            filled_size=zero,
            avg_price=None,
            unfilled_size=leg.size,
            resting_size=zero,
            resting_price=None,
            cancelled_size=zero,
            fee=zero,
            book=book_status,
            price_source="book",
            slippage_bps=None,
        )
    filled, notional = walk(levels, leg)
    unfilled = leg.size - filled
    avg = _average(notional, filled, leg.side) if filled else None
    rests = leg.order_type == "limit" and leg.time_in_force == "gtc"
    resting = unfilled if rests else zero
    fee = notional * contract_size * taker_fee_rate
    if resting and maker_fee_rate > 0:
        assert leg.limit_price is not None
        fee += resting * contract_size * leg.limit_price * maker_fee_rate
    return Execution(
        filled_size=filled,
        avg_price=avg,
        unfilled_size=unfilled,
        resting_size=resting,
        resting_price=leg.limit_price if rests else None,
        cancelled_size=unfilled
        if leg.order_type == "limit" and leg.time_in_force == "ioc"
        else zero,
        fee=fee,
        book=book_status,
        price_source="book",
        slippage_bps=None if avg is None else _slippage(avg, mark, leg.side),
    )
