"""Appending to, reading and verifying the audit log. Every write calls :func:`record` in its
own transaction, so an entry exists exactly when the change it describes was committed; the
sealer (app/audit/sealer.py) links it into the hash chain after that commit."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import repository, sealer
from app.audit.chain import GENESIS_HASH, canonical_json, entry_hash, with_payload
from app.audit.models import AuditEntry
from app.core.db import dialect_name
from app.core.errors import InvalidInput
from app.core.types import Actor as Actor  # re-exported: writers name it audit.Actor
from app.core.types import format_timestamp, utcnow


async def record(
    session: AsyncSession,
    kind: str,
    actor: Actor,
    payload: dict[str, Any],
    *,
    account_id: str | None = None,
    subaccount_id: str | None = None,
) -> None:
    """Append an entry for a change made in this session's transaction (stored as canonical
    JSON)."""
    await record_text(
        session,
        kind,
        actor,
        canonical_json(payload),
        account_id=account_id,
        subaccount_id=subaccount_id,
    )


async def record_text(
    session: AsyncSession,
    kind: str,
    actor: Actor,
    payload_text: str,
    *,
    account_id: str | None = None,
    subaccount_id: str | None = None,
) -> None:
    """:func:`record` for a payload already serialised (a JSON object, e.g. the bytes of a
    response): stored and hashed exactly as given. The entry is inserted unsealed — no lock, no
    read — and sealed into the chain a few milliseconds after this transaction commits."""
    await repository.append(
        session,
        kind=kind,
        actor_key_id=actor.key_id,
        account_id=account_id,
        subaccount_id=subaccount_id,
        payload=payload_text,
        created_at=utcnow(),
    )
    sealer.appended(session)


async def seal_for_reading(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Seal every committed entry before a read, so that the reader sees each one committed
    before its request. On PostgreSQL in a transaction of its own, committed before the read:
    the chain's lock is not held while a verify walks the whole chain. On SQLite in the
    request's: its transaction already holds the one writer lock another would wait for."""
    if dialect_name(session) == "sqlite":
        await sealer.seal(session)
        return
    async with session_factory() as own, own.begin():
        await sealer.seal(own)


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None


async def verify(session: AsyncSession) -> Verification:
    """Seal what is committed, then re-walk the chain: each entry must link to its predecessor
    and hash to its stored hash, and sequence numbers must run from 1 without gaps (a deleted
    row breaks the chain)."""
    await sealer.seal(session)
    return (await verify_chain(session)).verification


@dataclass(frozen=True)
class ChainReport:
    verification: Verification
    last_good: tuple[int, str] | None
    """Seq and hash of the last entry that verified: the head when the chain is intact."""


async def verify_chain(session: AsyncSession) -> ChainReport:
    """:func:`verify` over the sealed entries as they are (seal first), also naming where the
    intact part of the chain ends. Walking alone cannot see rows removed from the tail;
    comparing this head with one noted down earlier can."""
    expected_prev, count = GENESIS_HASH, 0
    last_good: tuple[int, str] | None = None
    async for entry in repository.walk(session):
        # Over the stored payload text, whatever it holds (JSON or not): nothing is parsed.
        recomputed = entry_hash(
            prev_hash=expected_prev,
            seq=count + 1,
            kind=entry.kind,
            actor_key_id=entry.actor_key_id,
            account_id=entry.account_id,
            subaccount_id=entry.subaccount_id,
            payload=entry.payload,
            created_at=entry.created_at,
        )
        if entry.seq != count + 1 or entry.prev_hash != expected_prev or entry.hash != recomputed:
            return ChainReport(Verification(False, count, entry.seq), last_good)
        expected_prev, count = recomputed, count + 1
        last_good = (count, recomputed)
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


def _sealed_seq(entry: AuditEntry) -> int:
    assert entry.seq is not None, "readers see sealed entries only"
    return entry.seq


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None (strict JSON: no NaN or Infinity)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parsed_payload(entry: AuditEntry) -> dict[str, Any] | str:
    """The payload as the JSON object it was stored as; the raw text if a row was edited into
    something else (verify names that row)."""
    value = _json_object(entry.payload)
    return entry.payload if value is None else value


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    """An entry as it is listed (the payload parsed)."""
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


def export_line(entry: AuditEntry) -> str:
    """An entry as one exported line: canonical JSON with the payload's stored text spliced in
    byte for byte, so that the line without its ``hash`` and ``prev_hash`` members is exactly
    the entry that was hashed. A payload edited into something that is not a JSON object is
    exported as a JSON string of its text (the line stays JSON; verify names the row)."""
    stored = entry.payload
    return with_payload(
        {
            "seq": entry.seq,
            "kind": entry.kind,
            "actor_key_id": entry.actor_key_id,
            "account_id": entry.account_id,
            "subaccount_id": entry.subaccount_id,
            "created_at": format_timestamp(entry.created_at),
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        },
        stored if _json_object(stored) is not None else canonical_json(stored),
    )


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
    """One page of sealed entries in sequence order, and the cursor of the next (None on the
    last page). Call :func:`seal_for_reading` first."""
    after = 0 if cursor is None else decode_cursor(cursor)
    rows = await _page(session, query, after=after, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], encode_cursor(_sealed_seq(rows[limit - 1]))
    return rows, None


async def export_lines(
    session_factory: async_sessionmaker[AsyncSession], query: AuditQuery, page_size: int = 1000
) -> AsyncIterator[str]:
    """Lines (:func:`export_line`) up to the head the export started at, after sealing what was
    committed, read one page per short transaction of its own: a slow reader holds no
    transaction (or SQLite's writer lock) open, and the request's session is closed before a
    streamed body runs."""
    async with session_factory() as session, session.begin():
        await sealer.seal(session)
    after, through = 0, None
    while True:
        async with session_factory() as session, session.begin():
            if through is None:
                head = await repository.chain_head(session)
                if head is None:
                    return
                through = head[0]
            rows = await _page(session, query, after=after, limit=page_size, through=through)
            lines = "".join(export_line(row) + "\n" for row in rows)
        if lines:
            yield lines
        if len(rows) < page_size:
            return
        after = _sealed_seq(rows[-1])
