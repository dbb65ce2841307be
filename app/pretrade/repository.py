from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.pretrade.models import CheckRecord, OrderId, Reservation


async def checks_for_order_ids(
    session: AsyncSession, subaccount_id: str, client_order_ids: Sequence[str]
) -> list[CheckRecord]:
    """The earlier checks that used any of these ``client_order_id``s on this subaccount."""
    if not client_order_ids:
        return []
    query = (
        select(CheckRecord)
        .join(OrderId, OrderId.check_id == CheckRecord.check_id)
        .where(
            OrderId.subaccount_id == subaccount_id,
            OrderId.client_order_id.in_(list(client_order_ids)),
        )
    )
    return list((await session.scalars(query)).unique().all())


async def active_reservations(
    session: AsyncSession, subaccount_ids: Sequence[str], now: datetime
) -> list[Reservation]:
    if not subaccount_ids:
        return []
    query = (
        select(Reservation)
        .where(
            Reservation.subaccount_id.in_(list(subaccount_ids)),
            Reservation.status == "active",
            Reservation.expires_at > now,
        )
        .order_by(Reservation.created_at)
    )
    return list((await session.scalars(query)).all())


async def reservations_of(session: AsyncSession, subaccount_id: str) -> list[Reservation]:
    query = (
        select(Reservation)
        .where(Reservation.subaccount_id == subaccount_id)
        .order_by(Reservation.created_at.desc())
        .limit(500)
    )
    return list((await session.scalars(query)).all())


async def get_reservation(session: AsyncSession, reservation_id: str) -> Reservation | None:
    return await session.get(Reservation, reservation_id)


def add(session: AsyncSession, row: CheckRecord | OrderId | Reservation) -> None:
    session.add(row)
