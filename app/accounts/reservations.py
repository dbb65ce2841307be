"""The reservations' ledger as the layers below pre-trade see it: the unfilled legs of active
reservations count as fills (app/risk's margin figures), and a recorded fill consumes its leg
(app/accounts/venue.py). Making, listing and releasing reservations is app/pretrade's."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.fills import SimulatedFill
from app.accounts.models import Reservation
from app.core.types import utcnow


def as_fills(reservations: Sequence[Reservation]) -> list[SimulatedFill]:
    """Every unfilled leg, as the fill it stands for (fees included, conservatively)."""
    return [
        SimulatedFill(
            leg["instrument"],
            leg["side"],
            Decimal(leg["size"]),
            Decimal(leg["price"]),
            Decimal(leg["fee"]),
        )
        for reservation in reservations
        for leg in reservation.legs
        if Decimal(leg["size"]) > 0
    ]


def open_orders(reservations: Sequence[Reservation]) -> int:
    return sum(1 for r in reservations for leg in r.legs if Decimal(leg["size"]) > 0)


async def consume(
    session: AsyncSession, subaccount_id: str, client_order_id: str, size: Decimal
) -> None:
    """A fill with a reserved ``client_order_id`` shrinks that leg (the caller holds the
    subaccount lock); a reservation whose legs are all filled is consumed."""
    now = utcnow()
    for reservation in await repository.active_reservations(session, [subaccount_id], now):
        legs: list[dict[str, Any]] = [dict(leg) for leg in reservation.legs]
        for leg in legs:
            if leg["client_order_id"] != client_order_id:
                continue
            remaining = Decimal(leg["size"])
            left = max(Decimal(0), remaining - size)
            if remaining > 0:
                leg["fee"] = str(Decimal(leg["fee"]) * left / remaining)
            leg["size"] = str(left)
            reservation.legs = legs  # a new list, so the JSON column is written
            if all(Decimal(item["size"]) == 0 for item in legs):
                reservation.status, reservation.closed_at = "consumed", now
            return
