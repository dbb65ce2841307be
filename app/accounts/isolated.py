"""A position's initial margin on its own, in Decimal: what an isolated position must have
allocated (margin.md, isolated mode) when a fill opens or grows it, recorded
(app/accounts/venue.py) or simulated (app/risk/book.py, ``Book.with_fills``). Its margin tiers
in the engine's row form are here too."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from app.engine import TierTable
from app.engine.rounding import requirement_to_decimal
from app.engine.tiers import position_margins
from app.instruments.models import Instrument

ZERO = Decimal(0)


def tier_rows(instrument: Instrument) -> list[tuple[float, float, float | None]]:
    return [
        (
            float(tier["notional_floor"]),
            float(tier["initial_margin_fraction"]),
            float(tier["maintenance_margin_fraction"]),
        )
        for tier in instrument.margin_tiers
    ]


def isolated_allocation(
    instrument: Instrument,
    size: Decimal,
    entry_price: Decimal,
    price: Decimal,
    isolated_margin: Decimal,
    leverage: Decimal | None,
) -> Decimal:
    """margin.md, isolated mode: a position that opens or grows to ``size`` needs
    ``IM_i(after) − (A_i + u_i)`` moved into its allocation when positive, valued at the fill
    price (so ``u_i = size · k · (price − entry)``)."""
    unrealized = size * instrument.contract_size * (price - entry_price)
    needed = initial_margin_at(instrument, size, price, leverage) - (isolated_margin + unrealized)
    return max(ZERO, needed)


def initial_margin_at(
    instrument: Instrument, size: Decimal, price: Decimal, leverage: Decimal | None
) -> Decimal:
    """``IM_i`` of a position of ``size`` at ``price`` (tiers and chosen leverage), rounded up
    at 6 places."""
    notional = np.array([abs(float(size)) * float(instrument.contract_size) * float(price)])
    tiers = TierTable.from_rows([tier_rows(instrument)])
    chosen = np.array([float(leverage) if leverage else np.nan])
    initial, _ = position_margins(notional, chosen, tiers)
    return requirement_to_decimal(float(initial[0]))
