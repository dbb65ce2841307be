from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from app.core.db import dialect_name, driver_fetch

# Any constant works; it names "the audit chain" among PostgreSQL advisory locks.
_CHAIN_LOCK_KEY = 0x50524546


async def lock_chain(session: AsyncSession) -> None:
    """Serialise appends until this transaction ends (SQLite's BEGIN IMMEDIATE already does)."""
    if dialect_name(session) == "postgresql":
        # Every check appends: straight to asyncpg, without the ORM's per-statement cost.
        await driver_fetch(session, "SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK_KEY)


async def chain_head(session: AsyncSession) -> tuple[int, str] | None:
    """The last entry's ``(seq, hash)``. Read after taking the lock, in its own statement, so
    that it sees the previous holder's committed append."""
    if dialect_name(session) == "postgresql":
        rows = await driver_fetch(
            session, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        )
        return None if not rows else (int(rows[0][0]), str(rows[0][1]))
    row = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    return None if row is None else (row.seq, row.hash)


def add(session: AsyncSession, entry: AuditEntry) -> None:
    session.add(entry)


async def walk(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    """Every entry in sequence order, fetched in pages."""
    after = -1
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
        ).all()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].seq


async def page(
    session: AsyncSession,
    *,
    after: int,
    limit: int,
    through: int | None = None,
    accounts: Collection[str] | None = None,
    subaccount_id: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AuditEntry]:
    """Up to ``limit`` entries with ``after < seq (≤ through)`` in sequence order, matching every
    filter given: ``accounts`` keeps only entries of those accounts, and times are half-open,
    ``since ≤ created_at < until``."""
    query = select(AuditEntry).where(AuditEntry.seq > after)
    if through is not None:
        query = query.where(AuditEntry.seq <= through)
    if accounts is not None:
        query = query.where(AuditEntry.account_id.in_(sorted(accounts)))
    if subaccount_id is not None:
        query = query.where(AuditEntry.subaccount_id == subaccount_id)
    if kind is not None:
        query = query.where(AuditEntry.kind == kind)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    if until is not None:
        query = query.where(AuditEntry.created_at < until)
    return (await session.scalars(query.order_by(AuditEntry.seq).limit(limit))).all()
