from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import dialect_name
from app.risk.models import DailyMarginReport, MarginCall, StoredRiskParameters, WebhookEvent

_ROW_ID = 1
_SWEEP_LOCK_KEY = 0x53574550  # "SWEP": one margin-call sweep at a time, across processes


async def lock_sweep(session: AsyncSession, *, wait: bool) -> bool:
    """Take the sweep's lock until this transaction ends; with ``wait=False`` only if it is
    free (False: another process is sweeping). SQLite: one process, BEGIN IMMEDIATE."""
    if dialect_name(session) != "postgresql":
        return True
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    taken = await session.execute(text(f"SELECT {function}(:key)"), {"key": _SWEEP_LOCK_KEY})
    return wait or bool(taken.scalar_one())


async def get_parameters(session: AsyncSession) -> StoredRiskParameters | None:
    return await session.get(StoredRiskParameters, _ROW_ID)


async def parameters_for_update(session: AsyncSession, now: datetime) -> StoredRiskParameters:
    """The parameters' row, created if absent and row-locked until commit: two first writes
    at once take turns (the second's insert waits for the first's, then finds its row)
    instead of one failing on the key."""
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    await session.execute(
        dialect.insert(StoredRiskParameters)
        .values(id=_ROW_ID, parameters={}, updated_at=now)
        .on_conflict_do_nothing(index_elements=[StoredRiskParameters.id])
    )
    row = await session.get(
        StoredRiskParameters,
        _ROW_ID,
        with_for_update=dialect_name(session) == "postgresql",
        populate_existing=True,
    )
    assert row is not None  # inserted above, or by a transaction that committed first
    return row


async def unresolved_calls(
    session: AsyncSession, subaccount_ids: Sequence[str]
) -> dict[tuple[str, str, str], MarginCall]:
    if not subaccount_ids:
        return {}
    ids = list(subaccount_ids)
    # A sweep asks for thousands of subaccounts: one array parameter on PostgreSQL, not a
    # statement compiled with a parameter per id.
    among = (
        MarginCall.subaccount_id == any_(bindparam("ids", ids, type_=ARRAY(String)))
        if dialect_name(session) == "postgresql"
        else MarginCall.subaccount_id.in_(ids)
    )
    rows = await session.scalars(select(MarginCall).where(among, MarginCall.resolved_at.is_(None)))
    return {(c.subaccount_id, c.level, c.subject): c for c in rows}


async def insert_calls(session: AsyncSession, calls: Sequence[MarginCall]) -> set[str]:
    """Insert in one statement, skipping any for which an unresolved call of the same
    subaccount, level and subject exists (a concurrent evaluation raised it first); the ids
    actually inserted."""
    if not calls:
        return set()
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    columns = [c.name for c in MarginCall.__table__.columns]
    statement = (
        dialect.insert(MarginCall)
        .values([{name: getattr(call, name) for name in columns} for call in calls])
        .on_conflict_do_nothing(
            index_elements=["subaccount_id", "level", "subject"],
            index_where=MarginCall.resolved_at.is_(None),
        )
        .returning(MarginCall.id)
    )
    return set((await session.scalars(statement)).all())


async def get_call(session: AsyncSession, call_id: str) -> MarginCall | None:
    return await session.get(MarginCall, call_id)


async def list_calls(
    session: AsyncSession,
    accounts: frozenset[str] | None,
    status: str | None,
    subaccount_id: str | None,
    limit: int = 500,
) -> list[MarginCall]:
    query = select(MarginCall).order_by(MarginCall.raised_at.desc(), MarginCall.id).limit(limit)
    if accounts is not None:
        query = query.where(MarginCall.account_id.in_(list(accounts)))
    if status is not None:
        query = query.where(MarginCall.status == status)
    if subaccount_id is not None:
        query = query.where(MarginCall.subaccount_id == subaccount_id)
    return list((await session.scalars(query)).all())


def add_event(session: AsyncSession, event: WebhookEvent) -> None:
    session.add(event)


async def due_events(session: AsyncSession, now: datetime, limit: int) -> list[WebhookEvent]:
    """Undelivered events whose time has come, oldest first, locked for this worker (other
    processes' workers skip them)."""
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.delivered_at.is_(None), WebhookEvent.next_attempt_at <= now)
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


async def report_rows(
    session: AsyncSession, report_date: date, accounts: frozenset[str] | None
) -> list[DailyMarginReport]:
    query = (
        select(DailyMarginReport)
        .where(DailyMarginReport.report_date == report_date)
        .order_by(DailyMarginReport.subaccount_id)
    )
    if accounts is not None:
        query = query.where(DailyMarginReport.account_id.in_(list(accounts)))
    return list((await session.scalars(query)).all())


async def has_report(session: AsyncSession, report_date: date) -> bool:
    query = select(DailyMarginReport.subaccount_id).where(
        DailyMarginReport.report_date == report_date
    )
    return (await session.execute(query.limit(1))).first() is not None


async def insert_reports(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert, leaving rows another process captured first."""
    if not rows:
        return
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    statement = dialect.insert(DailyMarginReport).values(list(rows)).on_conflict_do_nothing()
    await session.execute(statement)
