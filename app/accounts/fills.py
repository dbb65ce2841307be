"""Fill arithmetic, exact in Decimal.

A fill of signed size ``d`` at price ``p`` on a position of size ``q`` with entry ``e``
(contract size ``k``):

- grows (``q = 0`` or same sign): ``q' = q + d``, ``e' = (|q|·e + |d|·p) / |q'|`` (weighted);
- reduces (opposite sign, ``|d| ≤ |q|``): ``e' = e``; realised ``= min(|d|,|q|)·k·(p − e)·sign(q)``;
- flips (``|d| > |q|``): the old position closes as above, the rest opens at ``e' = p``.

A weighted entry that does not terminate is rounded against the holder at 18 places (a long's
entry up, a short's down), so unrealised PnL is never overstated.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

ENTRY_QUANTUM = Decimal(1).scaleb(-18)


@dataclass(frozen=True)
class FillEffect:
    size: Decimal
    entry_price: Decimal
    realized_pnl: Decimal
    closed_size: Decimal
    """How much of the old position this fill closed (0 when it only grows)."""


@dataclass(frozen=True)
class SimulatedFill:
    """A fill the book does not hold yet: a reservation's leg or a leg being checked."""

    instrument: str
    side: str
    size: Decimal
    price: Decimal
    fee: Decimal


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def apply_fill(
    size: Decimal, entry_price: Decimal, delta: Decimal, price: Decimal, contract_size: Decimal
) -> FillEffect:
    with localcontext(prec=80):  # exact for any inputs within the accepted digit limits
        new_size = size + delta
        if size == 0 or _sign(size) == _sign(delta):
            weighted = (abs(size) * entry_price + abs(delta) * price) / abs(new_size)
            rounding = ROUND_CEILING if new_size > 0 else ROUND_FLOOR
            entry = weighted.quantize(ENTRY_QUANTUM, rounding=rounding)
            return FillEffect(new_size, entry, Decimal(0), Decimal(0))
        closed = min(abs(delta), abs(size))
        realized = closed * contract_size * (price - entry_price) * _sign(size)
        if new_size == 0:
            entry = Decimal(0)
        elif _sign(new_size) == _sign(size):
            entry = entry_price
        else:
            entry = price
        return FillEffect(new_size, entry, realized, closed)
