"""Appending to, reading and verifying the audit log. Every write calls :func:`record` in its
own transaction, so an entry exists exactly when the change it describes was committed."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import repository
from app.audit.chain import GENESIS_HASH, canonical_json, entry_hash
from app.audit.models import AuditEntry
from app.core.errors import InvalidInput
from app.core.types import utcnow


def hash_of(entry: AuditEntry) -> str:
    """The entry's link in the chain, from its stored fields."""
    return entry_hash(
        prev_hash=entry.prev_hash,
        seq=entry.seq,
        kind=entry.kind,
        actor_key_id=entry.actor_key_id,
        account_id=entry.account_id,
        subaccount_id=entry.subaccount_id,
        payload=entry.payload,
        created_at=entry.created_at,
    )


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
    )
    entry.hash = hash_of(entry)
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
    return (await verify_chain(session)).verification


@dataclass(frozen=True)
class ChainReport:
    verification: Verification
    last_good: tuple[int, str] | None
    """Seq and hash of the last entry that verified: the head when the chain is intact."""


async def verify_chain(session: AsyncSession) -> ChainReport:
    """:func:`verify`, also naming where the intact part of the chain ends. Walking alone cannot
    see rows removed from the tail; comparing this head with one noted down earlier can."""
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    last_good: tuple[int, str] | None = None
    async for entry in repository.walk(session):
        try:
            recomputed = hash_of(entry)
        except ValueError:  # a payload edited into something that is not JSON
            recomputed = None
        if (
            entry.seq != expected_seq
            or entry.prev_hash != expected_prev
            or recomputed != entry.hash
        ):
            return ChainReport(Verification(False, count, entry.seq), last_good)
        expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
        last_good = (entry.seq, entry.hash)
    return ChainReport(Verification(True, count, None), last_good)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """Which entries a reader asked for, and may see (``accounts`` None = every entry)."""

    accounts: frozenset[str] | None
    subaccount_id: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidInput("until", "must be later than since")


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The last seq of the previous page, from the opaque ``next_cursor`` it answered."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    if not text.isdigit() or len(text) > 19:
        raise InvalidInput("cursor", "not a cursor this endpoint returned")
    return int(text)


def parsed_payload(entry: AuditEntry) -> dict[str, Any] | str:
    """The payload as the JSON object it was stored as; the raw text if a row was edited into
    something else (verify names that row)."""
    try:
        value = json.loads(entry.payload)
    except ValueError:
        return entry.payload
    return value if isinstance(value, dict) else entry.payload


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """An entry as it is read and exported; without ``prev_hash`` and ``hash`` it is exactly what
    was hashed: ``hash = sha256(prev_hash ‖ canonical_json(those fields))``."""
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "actor_key_id": entry.actor_key_id,
        "account_id": entry.account_id,
        "subaccount_id": entry.subaccount_id,
        "payload": parsed_payload(entry),
        "created_at": entry.created_at,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


async def _page(
    session: AsyncSession,
    query: AuditQuery,
    *,
    after: int,
    limit: int,
    through: int | None = None,
) -> list[AuditEntry]:
    return list(
        await repository.page(
            session,
            after=after,
            limit=limit,
            through=through,
            accounts=query.accounts,
            subaccount_id=query.subaccount_id,
            kind=query.kind,
            since=query.since,
            until=query.until,
        )
    )


async def list_entries(
    session: AsyncSession, query: AuditQuery, cursor: str | None, limit: int
) -> tuple[list[AuditEntry], str | None]:
    """One page in sequence order, and the cursor of the next (None on the last page)."""
    after = 0 if cursor is None else decode_cursor(cursor)
    rows = await _page(session, query, after=after, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].seq)
    return rows, None


async def export_lines(
    session_factory: async_sessionmaker[AsyncSession], query: AuditQuery, page_size: int = 1000
) -> AsyncIterator[str]:
    """Canonical JSON lines up to the head the export started at, read one page per short
    transaction of its own: a slow reader holds no transaction (or SQLite's writer lock) open,
    and the request's session is closed before a streamed body runs."""
    after, through = 0, None
    while True:
        async with session_factory() as session, session.begin():
            if through is None:
                head = await repository.chain_head(session)
                if head is None:
                    return
                through = head[0]
            rows = await _page(session, query, after=after, limit=page_size, through=through)
            lines = "".join(canonical_json(entry_document(row)) + "\n" for row in rows)
        if lines:
            yield lines
        if len(rows) < page_size:
            return
        after = rows[-1].seq
