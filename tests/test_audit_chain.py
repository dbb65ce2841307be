"""Append, then seal: writes insert unsealed entries; the sealer numbers and links them after they
commit; every read seals first. The hash covers the payload exactly as stored.

``desk()`` writes entries 1–8 (see tests/test_audit_api.py): 3 is ``instrument.put`` BTC-PERP, 5
is ``account.created`` acct-1. Every expected hash below is spelled out as the text it covers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import column, insert, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.audit import repository, sealer
from app.audit import service as audit
from app.audit.chain import GENESIS_HASH, canonical_json
from app.core.config import Settings
from app.core.db import UTCDateTime, create_session_factory
from app.core.migrations import alembic_config, upgrade
from app.main import create_app
from tests import services
from tests.conftest import Api
from tests.factories import deposit, desk, fill
from tests.test_audit_api import line_hash, sealed

Sql = Callable[..., Awaitable[list[Any]]]
AUDIT_LOG = table(
    "audit_log",
    *(column(name) for name in ("seq", "kind", "actor_key_id", "account_id", "subaccount_id")),
    *(column(name) for name in ("payload", "prev_hash", "hash")),
    column("created_at", UTCDateTime()),
)
SEALED_AT = datetime(2026, 12, 2, 10, tzinfo=UTC)


async def insert_row(connection: AsyncConnection, kind: str, payload: str, **columns: Any) -> None:
    """A row written outside the app. With only the six columns a write names (as a bulk insert
    of checks does, or a writer that committed and was killed before any sealer ran) it is
    unsealed."""
    values = {"kind": kind, "payload": payload, "created_at": SEALED_AT, **columns}
    await connection.execute(insert(AUDIT_LOG).values(values))


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sql(engine: AsyncEngine) -> Sql:
    """A statement straight against PostgreSQL in a transaction of its own, as a tamperer or a
    writer outside the app would run it; the rows it answers, if any."""

    async def run(statement: str, **params: Any) -> list[Any]:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []

    return run


async def entries(api: Api, **params: Any) -> list[dict[str, Any]]:
    page = await api.ok("GET", "/v1/audit", params={"limit": 1000, **params})
    assert page["next_cursor"] is None
    return list(page["entries"])


async def verification(api: Api) -> tuple[bool, int, int | None, int | None]:
    result = await api.ok("GET", "/v1/audit/verify")
    return result["ok"], result["entries"], result["first_bad_seq"], result["head_seq"]


# --- the hash covers the stored bytes ----------------------------------------------------------


async def test_a_whitespace_only_edit_of_a_payload_fails_verify(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await sealed(admin, 8)
    [(stored,)] = await sql("SELECT payload FROM audit_log WHERE seq = 5")
    spaced = json.dumps(json.loads(stored), sort_keys=True, ensure_ascii=False)  # ", " and ": "
    assert spaced != stored and json.loads(spaced) == json.loads(stored)
    await sql("UPDATE audit_log SET payload = :p WHERE seq = 5", p=spaced)

    assert await verification(admin) == (False, 4, 5, 4)
    # The listed entry reads exactly as before: only verify tells.
    listed = await entries(admin, kind="account.created")
    assert (listed[0]["seq"], listed[0]["payload"]) == (5, json.loads(stored))


async def test_a_key_order_edit_of_a_payload_fails_verify(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await sealed(admin, 8)
    [(stored,)] = await sql("SELECT payload FROM audit_log WHERE seq = 3")
    document = json.loads(stored)
    reordered = json.dumps(
        dict(reversed(list(document.items()))), separators=(",", ":"), ensure_ascii=False
    )
    assert reordered != stored and json.loads(reordered) == document
    await sql("UPDATE audit_log SET payload = :p WHERE seq = 3", p=reordered)

    assert await verification(admin) == (False, 2, 3, 2)


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        (9, (False, 8, 9, 8)),  # appended after the head with a hash that does not recompute
        (0, (False, 0, 0, None)),  # slipped in before the first entry
    ],
)
async def test_a_row_inserted_with_a_forged_seq_fails_verify(
    admin: Api, sql: Sql, seq: int, expected: tuple[bool, int, int | None, int | None]
) -> None:
    await desk(admin)
    head = await sealed(admin, 8)
    await sql(
        "INSERT INTO audit_log (seq, kind, actor_key_id, account_id, subaccount_id, payload, "
        "created_at, prev_hash, hash) VALUES (:seq, 'transfer', NULL, 'acct-1', 'sub-cross', "
        '\'{"amount":"1000000"}\', now(), :prev, :hash)',
        seq=seq,
        prev=head["head_hash"] if seq == 9 else GENESIS_HASH,
        hash="f" * 64,
    )
    assert await verification(admin) == expected


async def test_a_deleted_row_fails_verify(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "100")  # seq 9
    await sealed(admin, 9)
    await sql("DELETE FROM audit_log WHERE seq = 6")
    assert await verification(admin) == (False, 5, 7, 5)


# --- sealing ---------------------------------------------------------------------------------


async def test_a_row_left_unsealed_by_a_crashed_writer_is_sealed_by_the_next_read(
    admin: Api, engine: AsyncEngine
) -> None:
    """A writer that committed its entry and died before any sealer ran (or a bulk insert that
    names only the six columns): the next read seals it, hashing its payload as stored — here
    with a space after the comma, as bytes reused from a response might have."""
    await desk(admin)
    head = await sealed(admin, 8)
    payload = '{"check_id":"c-1", "decision":"accept"}'
    async with engine.begin() as connection:
        await insert_row(
            connection,
            "check",
            payload,
            actor_key_id="k-1",
            account_id="acct-1",
            subaccount_id="sub-cross",
        )

    [entry] = await entries(admin, kind="check")
    covered = (
        '{"account_id":"acct-1","actor_key_id":"k-1","created_at":"2026-12-02T10:00:00.000000Z",'
        '"kind":"check","payload":{"check_id":"c-1", "decision":"accept"},"seq":9,'
        '"subaccount_id":"sub-cross"}'
    )
    assert entry["seq"] == 9
    assert entry["prev_hash"] == head["head_hash"]
    assert entry["hash"] == hashlib.sha256((head["head_hash"] + covered).encode()).hexdigest()
    assert entry["payload"] == {"check_id": "c-1", "decision": "accept"}
    assert await verification(admin) == (True, 9, None, 9)
    # The export carries the stored bytes, so the line recomputes to the same hash.
    last = (await admin.get("/v1/audit/export")).text.splitlines()[-1]
    assert '"payload":{"check_id":"c-1", "decision":"accept"},' in last
    assert line_hash(last) == entry["hash"]


async def test_fifty_concurrent_writes_are_all_sealed_in_one_contiguous_chain(
    admin: Api, sql: Sql
) -> None:
    await desk(admin)  # seq 1–8
    await deposit(admin, "sub-cross", "1000000")  # seq 9
    writes = [deposit(admin, "other-sub", str(n)) for n in range(1, 26)] + [
        admin.ok("POST", "/v1/fills", json={"fills": [fill(f"f{n}", "buy", "0.001", "100")]})
        for n in range(1, 26)
    ]
    await asyncio.gather(*writes)

    listed = await entries(admin)
    assert [e["seq"] for e in listed] == list(range(1, 60))
    later = listed[9:]
    assert sorted(e["payload"]["transfer_id"] for e in later if e["kind"] == "transfer") == sorted(
        f"dep-other-sub-USDC-{n}" for n in range(1, 26)
    )
    assert sorted(e["payload"]["fill_id"] for e in later if e["kind"] == "fill") == sorted(
        f"f{n}" for n in range(1, 26)
    )
    for previous, entry in pairwise(listed):
        assert entry["prev_hash"] == previous["hash"]
    assert await verification(admin) == (True, 59, None, 59)
    assert await sql("SELECT count(*) FROM audit_log WHERE seq IS NULL") == [(0,)]


async def test_a_pass_another_process_runs_is_skipped_not_waited_for(
    admin: Api, sql: Sql, engine: AsyncEngine
) -> None:
    """While one sealer holds the chain, a background pass elsewhere seals nothing and returns
    at once; the holder seals all three rows committed meanwhile, in insertion order."""
    await desk(admin)
    await sealed(admin, 8)
    async with engine.connect() as holder, holder.begin():
        assert await repository.lock_chain(holder)
        for n in (1, 2, 3):
            async with engine.begin() as writer:
                await insert_row(writer, "note", f'{{"n":{n}}}')
        async with engine.connect() as other, other.begin():
            assert await asyncio.wait_for(sealer.seal(other, wait=False), 1) == 0
        assert await sealer.seal(holder) == 3
    assert [(e["seq"], e["payload"]["n"]) for e in await entries(admin, kind="note")] == [
        (9, 1),
        (10, 2),
        (11, 3),
    ]
    assert await verification(admin) == (True, 11, None, 11)


async def test_a_reader_waits_for_a_pass_in_progress_and_sees_every_committed_entry(
    admin: Api, engine: AsyncEngine
) -> None:
    """A sealer elsewhere holds the chain (and has not sealed the row committed meanwhile): a
    reader does not answer without that row; it waits, then lists it sealed."""
    await desk(admin)
    await sealed(admin, 8)
    async with engine.connect() as holder, holder.begin():
        assert await repository.lock_chain(holder)
        async with engine.begin() as writer:
            await insert_row(writer, "note", '{"n":1}')
        reading = asyncio.create_task(entries(admin, kind="note"))
        await asyncio.sleep(0.2)
        assert not reading.done()
    assert [e["seq"] for e in await asyncio.wait_for(reading, 5)] == [9]


async def test_an_entry_committed_late_is_sealed_after_those_committed_before_it(
    admin: Api, sql: Sql, engine: AsyncEngine
) -> None:
    """The chain's order is the order of sealing: a transaction that inserted first (lower id)
    but commits last is sealed after a later insert that committed first."""
    await desk(admin)
    await sealed(admin, 8)
    async with engine.connect() as slow, slow.begin():
        await insert_row(slow, "note", '{"who":"slow"}')
        async with engine.begin() as quick:
            await insert_row(quick, "note", '{"who":"quick"}')
        await sealed(admin, 9)  # seals "quick"; "slow" is not committed yet
    await sealed(admin, 10)
    [(quick_id,), (slow_id,)] = await sql(
        "SELECT id FROM audit_log WHERE kind = 'note' ORDER BY seq"
    )
    assert slow_id < quick_id
    assert [(e["seq"], e["payload"]["who"]) for e in await entries(admin, kind="note")] == [
        (9, "quick"),
        (10, "slow"),
    ]


async def test_record_text_stores_and_exports_the_payload_bytes_as_given(
    admin: Api, engine: AsyncEngine
) -> None:
    """A payload already serialised (keys unsorted, spaces): stored, hashed and exported as it
    is, and a third party recomputes the hash from the exported line."""
    await desk(admin)
    await sealed(admin, 8)
    given = '{"z": 1, "a": [1, 2]}'
    async with create_session_factory(engine)() as session, session.begin():
        await audit.record_text(session, "note", audit.Actor("k-2"), given, account_id="acct-1")
    [entry] = await entries(admin, kind="note")
    assert (entry["seq"], entry["payload"], entry["actor_key_id"]) == (
        9,
        {"z": 1, "a": [1, 2]},
        "k-2",
    )
    raw = (await admin.get("/v1/audit/export")).text.splitlines()[-1]
    assert f'"payload":{given},' in raw
    assert line_hash(raw) == entry["hash"]
    assert await verification(admin) == (True, 9, None, 9)


# --- the embedded default ----------------------------------------------------------------------


async def test_sealing_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    await asyncio.to_thread(upgrade, url)
    app = create_app(Settings(database_url=url, redis_url=None, admin_key="k" * 32))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://preflight") as client:
            api = Api(client, "k" * 32)
            await desk(api)
            engine = create_async_engine(url)
            try:
                async with engine.begin() as connection:
                    await insert_row(connection, "note", '{"b":2, "a":1}')
            finally:
                await engine.dispose()
            assert await verification(api) == (True, 9, None, 9)
            raw = (await api.get("/v1/audit/export")).text.splitlines()
            assert [json.loads(line)["seq"] for line in raw] == list(range(1, 10))
            previous = GENESIS_HASH
            for line in raw:
                assert json.loads(line)["prev_hash"] == previous
                previous = line_hash(line)
                assert json.loads(line)["hash"] == previous


# --- the migration -----------------------------------------------------------------------------

BEFORE = "8b2e4d0f3c21"  # the revision before append-then-seal


def old_link(prev_hash: str, seq: int, payload: dict[str, Any]) -> str:
    """An entry's hash as chains were written before this change: the payload stored as
    canonical JSON and hashed re-canonicalised inside the entry."""
    entry = canonical_json(
        {
            "seq": seq,
            "kind": "note",
            "actor_key_id": None,
            "account_id": None,
            "subaccount_id": None,
            "payload": payload,
            "created_at": f"2026-11-30T00:00:0{seq}.000000Z",
        }
    )
    return hashlib.sha256((prev_hash + entry).encode()).hexdigest()


async def _migrate_a_chain(url: str) -> None:
    await asyncio.to_thread(upgrade, url, BEFORE)
    engine = create_async_engine(url)
    try:
        prev_hash = GENESIS_HASH
        async with engine.begin() as connection:
            for seq in (1, 2, 3):
                payload = {"n": seq, "amount": "1.50"}
                digest = old_link(prev_hash, seq, payload)
                await insert_row(
                    connection,
                    "note",
                    canonical_json(payload),
                    seq=seq,
                    created_at=datetime(2026, 11, 30, 0, 0, seq, tzinfo=UTC),
                    prev_hash=prev_hash,
                    hash=digest,
                )
                prev_hash = digest
        await asyncio.to_thread(upgrade, url)

        async with engine.begin() as connection:
            rows = (await connection.execute(text("SELECT id, seq, hash FROM audit_log"))).all()
            assert sorted((r.id, r.seq) for r in rows) == [(1, 1), (2, 2), (3, 3)]
            await insert_row(connection, "note", '{"n":4}')
        async with create_session_factory(engine)() as session, session.begin():
            assert await audit.verify(session) == audit.Verification(True, 4, None)
        async with engine.connect() as connection:
            [(id_, seq, prev)] = (
                await connection.execute(
                    text("SELECT id, seq, prev_hash FROM audit_log WHERE payload = :p"),
                    {"p": '{"n":4}'},
                )
            ).all()
            assert (id_, seq, prev) == (4, 4, prev_hash)  # numbered on from the old chain

        await asyncio.to_thread(command.downgrade, alembic_config(url), BEFORE)
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT seq FROM audit_log ORDER BY seq"))).all()
            assert [r.seq for r in kept] == [1, 2, 3, 4]
    finally:
        await engine.dispose()


async def test_the_migration_keeps_an_existing_chain_on_postgresql() -> None:
    server = services.postgres_server_url()
    name = f"preflight_audit_migrate_{os.getpid()}"
    url = services.create_database(server, name)
    try:
        await _migrate_a_chain(url)
    finally:
        services.drop_database(server, name)


async def test_the_migration_keeps_an_existing_chain_on_sqlite(tmp_path: Path) -> None:
    await _migrate_a_chain(f"sqlite+aiosqlite:///{tmp_path / 'chain.db'}")


async def test_the_background_sealers_bare_connection_links_as_a_session_does(
    admin: Api, app: Any, engine: AsyncEngine
) -> None:
    """The background sealer seals on a bare asyncpg connection (no ORM per pass): while it
    holds the chain a pass elsewhere seals nothing and returns at once, and the rows it links
    verify like any others, in insertion order."""
    await desk(admin)
    await sealed(admin, 8)
    async with app.state.runtime.hot.connect(transaction=True) as bare:
        assert await repository.lock_chain(bare)  # held until it commits: no other pass seals
        for n in (1, 2):
            async with engine.begin() as writer:
                await insert_row(writer, "note", f'{{"n":{n}}}')
        async with engine.connect() as other, other.begin():
            assert await asyncio.wait_for(sealer.seal(other, wait=False), 1) == 0
        assert await sealer.seal(bare) == 2
    assert [(e["seq"], e["payload"]["n"]) for e in await entries(admin, kind="note")] == [
        (9, 1),
        (10, 2),
    ]
    assert await verification(admin) == (True, 10, None, 10)
