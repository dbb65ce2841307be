"""Reservations: accepted baskets counted as filled until consumed, released or expired."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, NotFound
from app.core.types import utcnow
from app.pretrade import repository
from app.pretrade.models import Reservation
from app.pretrade.schemas import ReservationLegOut, ReservationOut
from app.risk.book import SimulatedFill


def status(
    reservation: Reservation, now: datetime
) -> Literal["active", "released", "consumed", "expired"]:
    if reservation.status == "active" and reservation.expires_at <= now:
        return "expired"
    return cast(Literal["active", "released", "consumed"], reservation.status)


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


def reservation_out(reservation: Reservation, now: datetime) -> ReservationOut:
    return ReservationOut(
        reservation_id=reservation.reservation_id,
        subaccount_id=reservation.subaccount_id,
        check_id=reservation.check_id,
        status=status(reservation, now),
        legs=[
            ReservationLegOut(
                client_order_id=leg["client_order_id"],
                instrument=leg["instrument"],
                side=leg["side"],
                size=Decimal(leg["size"]),
                price=Decimal(leg["price"]),
            )
            for leg in reservation.legs
        ],
        created_at=reservation.created_at,
        expires_at=reservation.expires_at,
    )


async def release(session: AsyncSession, principal: Principal, reservation_id: str) -> Reservation:
    """Release an active reservation; releasing twice answers the same (idempotent)."""
    reservation = await repository.get_reservation(session, reservation_id)
    subaccount = (
        None
        if reservation is None
        else await accounts_repository.get_subaccount(session, reservation.subaccount_id)
    )
    if reservation is None or subaccount is None or not principal.sees(subaccount.account_id):
        raise NotFound(f"reservation {reservation_id!r} not found")
    await accounts_repository.lock_subaccounts(session, [reservation.subaccount_id])
    now = utcnow()
    current = status(reservation, now)
    if current == "consumed":
        raise Conflict(f"reservation {reservation_id!r} was already consumed by fills")
    if current == "active":
        reservation.status, reservation.closed_at = "released", now
        await session.flush()
        await audit.record(
            session,
            "reservation.released",
            principal.actor,
            {"reservation_id": reservation_id},
            account_id=subaccount.account_id,
            subaccount_id=subaccount.subaccount_id,
        )
    return reservation


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
