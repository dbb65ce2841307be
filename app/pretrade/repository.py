from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Subaccount
from app.core.db import dialect_name, driver_fetch
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


_ACCEPTED_ORDERS_SQL = """
SELECT coalesce(sum(jsonb_array_length(c.response -> 'executions')), 0)
  FROM checks c {join}
 WHERE {scope} = $1 AND c.created_at >= $2 AND c.response ->> 'decision' = 'accept'
"""


async def accepted_orders_since(
    session: AsyncSession, *, since: datetime, subaccount_id: str | None = None,
    account_id: str | None = None,
) -> int:  # fmt: skip
    """Orders in the checks accepted since ``since``, of one subaccount or of one account's
    subaccounts: the order-rate window counted from PostgreSQL when Redis cannot count it."""
    assert (subaccount_id is None) != (account_id is None)
    if dialect_name(session) == "postgresql":
        if subaccount_id is not None:
            sql = _ACCEPTED_ORDERS_SQL.format(join="", scope="c.subaccount_id")
            ident = subaccount_id
        else:
            sql = _ACCEPTED_ORDERS_SQL.format(
                join="JOIN subaccounts s ON s.subaccount_id = c.subaccount_id",
                scope="s.account_id",
            )
            ident = str(account_id)
        rows = await driver_fetch(session, sql, ident, since)
        return int(rows[0][0])
    query = select(CheckRecord.response).where(CheckRecord.created_at >= since)
    if subaccount_id is not None:
        query = query.where(CheckRecord.subaccount_id == subaccount_id)
    else:
        query = query.join(Subaccount, Subaccount.subaccount_id == CheckRecord.subaccount_id)
        query = query.where(Subaccount.account_id == account_id)
    responses = (await session.scalars(query)).all()
    return sum(len(r["executions"]) for r in responses if r["decision"] == "accept")
