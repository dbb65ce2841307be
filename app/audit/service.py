"""Appending to and verifying the audit log. Every write calls :func:`record` in its own
transaction, so an entry exists exactly when the change it describes was committed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.chain import GENESIS_HASH, canonical_json, entry_hash
from app.audit.models import AuditEntry
from app.core.types import utcnow


@dataclass(frozen=True)
class Actor:
    key_id: str | None


async def record(
    session: AsyncSession,
    kind: str,
    actor: Actor,
    payload: dict[str, Any],
    *,
    account_id: str | None = None,
    subaccount_id: str | None = None,
) -> AuditEntry:
    await repository.lock_chain(session)
    head = await repository.chain_head(session)
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (head[0] + 1, head[1])
    created_at = utcnow()
    body = canonical_json(payload)
    entry = AuditEntry(
        seq=seq,
        kind=kind,
        actor_key_id=actor.key_id,
        account_id=account_id,
        subaccount_id=subaccount_id,
        payload=body,
        created_at=created_at,
        prev_hash=prev_hash,
        hash=entry_hash(
            prev_hash=prev_hash,
            seq=seq,
            kind=kind,
            actor_key_id=actor.key_id,
            account_id=account_id,
            subaccount_id=subaccount_id,
            payload=body,
            created_at=created_at,
        ),
    )
    repository.add(session, entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None


async def verify(session: AsyncSession) -> Verification:
    """Re-walk the chain: each entry must link to its predecessor and hash to its stored hash,
    and sequence numbers must run without gaps (a deleted row breaks the chain)."""
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    async for entry in repository.walk(session):
        recomputed = entry_hash(
            prev_hash=entry.prev_hash,
            seq=entry.seq,
            kind=entry.kind,
            actor_key_id=entry.actor_key_id,
            account_id=entry.account_id,
            subaccount_id=entry.subaccount_id,
            payload=entry.payload,
            created_at=entry.created_at,
        )
        if (
            entry.seq != expected_seq
            or entry.prev_hash != expected_prev
            or recomputed != entry.hash
        ):
            return Verification(False, count, entry.seq)
        expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
    return Verification(True, count, None)
