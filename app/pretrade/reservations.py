"""Reservations: accepted baskets counted as filled until consumed, released or expired. Their
model and the ledger the layers below read (as fills, open orders, consumed by fills) are in
app/accounts (models.py, reservations.py); here, their answers and their release."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import Reservation
from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, NotFound
from app.core.types import utcnow
from app.pretrade import repository
from app.pretrade.schemas import ReservationLegOut, ReservationOut


def status(
    reservation: Reservation, now: datetime
) -> Literal["active", "released", "consumed", "expired"]:
    if reservation.status == "active" and reservation.expires_at <= now:
        return "expired"
    return cast(Literal["active", "released", "consumed"], reservation.status)


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
