"""The audit chain: every write appends a linked entry in the same transaction."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit import service as audit
from app.audit.chain import canonical_json
from app.audit.models import AuditEntry
from app.audit.sealer import seal
from app.core.config import Settings
from app.core.db import create_session_factory
from tests.conftest import Api
from tests.factories import desk, fill


async def _entries(settings: Settings) -> list[AuditEntry]:
    engine = create_async_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await seal(session)  # entries are linked just after their commit: link them now
            query = select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq)
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


async def _verify(settings: Settings) -> audit.Verification:
    engine = create_async_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await audit.verify(session)
    finally:
        await engine.dispose()


async def _tamper(settings: Settings, statement: str, **params: str) -> None:
    """Run ``statement`` on the sealed chain, as someone with database access would. Entries
    are linked just after their commit: seal first, or the edit may hit a row with no ``seq``
    yet, change nothing, and leave a chain that rightly verifies (the race CI once lost)."""
    engine = create_async_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await seal(session)
            changed = await session.execute(text(statement), params)
            assert changed.rowcount == 1, "the tampering must hit exactly one sealed row"  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_every_write_is_chained_and_verifies(admin: Api, settings: Settings) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("a1", "buy", "1", "100")]})
    entries = await _entries(settings)
    kinds = [e.kind for e in entries]
    assert kinds.count("asset.put") == 2 and kinds.count("instrument.put") == 2
    assert kinds[-1] == "fill"
    assert entries[-1].subaccount_id == "sub-cross" and entries[-1].account_id == "acct-1"
    # Recompute one link by hand: sha256(prev_hash ‖ canonical JSON of the entry).
    last = entries[-1]
    entry = canonical_json(
        {
            "seq": last.seq,
            "kind": last.kind,
            "actor_key_id": last.actor_key_id,
            "account_id": last.account_id,
            "subaccount_id": last.subaccount_id,
            "payload": __import__("json").loads(last.payload),
            "created_at": last.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }
    )
    assert last.prev_hash == entries[-2].hash
    assert last.hash == hashlib.sha256((last.prev_hash + entry).encode()).hexdigest()
    assert await _verify(settings) == audit.Verification(True, len(entries), None)


async def test_a_rejected_write_leaves_no_entry(admin: Api, settings: Settings) -> None:
    await desk(admin)
    before = len(await _entries(settings))
    bad = await admin.post(
        "/v1/fills", json={"fills": [fill("x", "buy", "1", "1", instrument="NO")]}
    )
    assert bad.status_code == 422
    assert len(await _entries(settings)) == before


async def test_verify_names_an_edited_row(admin: Api, settings: Settings) -> None:
    await desk(admin)
    await _tamper(settings, "UPDATE audit_log SET payload = :p WHERE seq = 3", p='{"forged":true}')
    result = await _verify(settings)
    assert (result.ok, result.first_bad_seq) == (False, 3)


async def test_verify_names_the_gap_left_by_a_deleted_row(admin: Api, settings: Settings) -> None:
    await desk(admin)
    await _tamper(settings, "DELETE FROM audit_log WHERE seq = 4")
    result = await _verify(settings)
    assert (result.ok, result.first_bad_seq) == (False, 5)
