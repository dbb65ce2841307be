from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeAlias, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.audit.models import AuditEntry
from app.core.db import dialect_name, driver_fetch

# Any constant works; it names "the audit chain" among PostgreSQL advisory locks.
_CHAIN_LOCK_KEY = 0x50524546

_log = cast(Table, AuditEntry.__table__)


class UnsealedRow(NamedTuple):
    id: int
    kind: str
    actor_key_id: str | None
    account_id: str | None
    subaccount_id: str | None
    payload: str
    created_at: datetime


Db: TypeAlias = "AsyncSession | AsyncConnection | asyncpg.Connection"
"""What sealing runs on, in the caller's transaction: a session or a connection, or a bare
asyncpg connection on PostgreSQL (the background sealer's: no ORM cost on a pass that runs many
times a second)."""


_SQLALCHEMY = (AsyncSession, AsyncConnection)


def _dialect(db: Db) -> str:
    if not isinstance(db, _SQLALCHEMY):
        return "postgresql"  # a bare asyncpg connection
    return db.dialect.name if isinstance(db, AsyncConnection) else dialect_name(db)


async def append(
    session: AsyncSession,
    *,
    kind: str,
    actor_key_id: str | None,
    account_id: str | None,
    subaccount_id: str | None,
    payload: str,
    created_at: datetime,
) -> None:
    """Insert an unsealed entry: the six columns a write names, nothing read, nothing locked."""
    values = (kind, actor_key_id, account_id, subaccount_id, payload, created_at)
    if dialect_name(session) == "postgresql":
        # Every write appends: straight to asyncpg, without the ORM's per-statement cost.
        await driver_fetch(
            session,
            "INSERT INTO audit_log (kind, actor_key_id, account_id, subaccount_id, payload, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            *values,
        )
        return
    columns = ("kind", "actor_key_id", "account_id", "subaccount_id", "payload", "created_at")
    await session.execute(insert(_log).values(dict(zip(columns, values, strict=True))))


async def lock_chain(db: Db, *, wait: bool = True) -> bool:
    """Take the chain's lock until this transaction ends; with ``wait=False`` only if it is free
    (False: another sealer holds it). SQLite's BEGIN IMMEDIATE already serialises sealers."""
    if _dialect(db) != "postgresql":
        return True
    if not isinstance(db, _SQLALCHEMY):
        if wait:
            await db.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK_KEY)
            return True
        return bool(await db.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CHAIN_LOCK_KEY))
    if wait:
        await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
        return True
    taken = await db.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY}
    )
    return bool(taken.scalar_one())


async def chain_head(db: Db) -> tuple[int, str | None] | None:
    """The last sealed entry's ``(seq, hash)``. Read after taking the lock, in its own
    statement, so that it sees the previous sealer's commit."""
    if not isinstance(db, _SQLALCHEMY):
        found = await db.fetchrow(
            "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        return None if found is None else (int(found[0]), found[1])
    row = (
        await db.execute(
            select(_log.c.seq, _log.c.hash)
            .where(_log.c.seq.is_not(None))
            .order_by(_log.c.seq.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (int(row.seq), row.hash)


async def has_unsealed(db: Db) -> bool:
    """Whether any committed entry awaits sealing (no lock: most passes find none)."""
    if not isinstance(db, _SQLALCHEMY):
        return bool(await db.fetch("SELECT id FROM audit_log WHERE seq IS NULL LIMIT 1"))
    query = select(_log.c.id).where(_log.c.seq.is_(None)).limit(1)
    return (await db.execute(query)).first() is not None


async def unsealed(db: Db, limit: int) -> Sequence[UnsealedRow]:
    """Up to ``limit`` unsealed entries in insertion order, locked (PostgreSQL) until the
    transaction ends."""
    if not isinstance(db, _SQLALCHEMY):
        rows = await db.fetch(
            "SELECT id, kind, actor_key_id, account_id, subaccount_id, payload, created_at "
            "FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
            limit,
        )
        return [UnsealedRow(*row) for row in rows]
    query = (
        select(
            _log.c.id,
            _log.c.kind,
            _log.c.actor_key_id,
            _log.c.account_id,
            _log.c.subaccount_id,
            _log.c.payload,
            _log.c.created_at,
        )
        .where(_log.c.seq.is_(None))
        .order_by(_log.c.id)
        .limit(limit)
        .with_for_update()
    )
    return [UnsealedRow(*row) for row in (await db.execute(query)).all()]


@dataclass(frozen=True)
class Link:
    id: int
    seq: int
    prev_hash: str
    hash: str


async def link(db: Db, links: Sequence[Link]) -> None:
    """Store the seals of a batch of entries in one statement."""
    if not isinstance(db, _SQLALCHEMY):
        await db.execute(
            "UPDATE audit_log SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash "
            "FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) "
            "AS u(id, seq, prev_hash, hash) WHERE audit_log.id = u.id",
            [x.id for x in links],
            [x.seq for x in links],
            [x.prev_hash for x in links],
            [x.hash for x in links],
        )
        return
    if _dialect(db) == "postgresql":
        await db.execute(
            text(
                "UPDATE audit_log SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash "
                "FROM unnest(CAST(:ids AS BIGINT[]), CAST(:seqs AS BIGINT[]), "
                "CAST(:prev_hashes AS TEXT[]), CAST(:hashes AS TEXT[])) "
                "AS u(id, seq, prev_hash, hash) WHERE audit_log.id = u.id"
            ),
            {
                "ids": [x.id for x in links],
                "seqs": [x.seq for x in links],
                "prev_hashes": [x.prev_hash for x in links],
                "hashes": [x.hash for x in links],
            },
        )
        return
    await db.execute(
        update(_log)
        .where(_log.c.id == bindparam("link_id"))
        .values(
            seq=bindparam("link_seq"), prev_hash=bindparam("link_prev"), hash=bindparam("link_hash")
        ),
        [
            {"link_id": x.id, "link_seq": x.seq, "link_prev": x.prev_hash, "link_hash": x.hash}
            for x in links
        ],
    )


async def walk(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    """Every sealed entry in sequence order, fetched in pages. No lower bound: a row forged with
    a seq below 1 is walked too (and named)."""
    after: int | None = None
    while True:
        query = select(AuditEntry).where(
            AuditEntry.seq.is_not(None) if after is None else AuditEntry.seq > after
        )
        rows = (await session.scalars(query.order_by(AuditEntry.seq).limit(batch))).all()
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
    """Up to ``limit`` sealed entries with ``after < seq (≤ through)`` in sequence order,
    matching every filter given: ``accounts`` keeps only entries of those accounts, and times
    are half-open, ``since ≤ created_at < until``."""
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
