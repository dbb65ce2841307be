"""The audit log over HTTP: paging and filters, account scope, verify, and the JSON-lines export.

``desk()`` writes eight entries, in this order (worked out from tests/factories.py):
1–2 ``asset.put`` (USDC, BTC), 3–4 ``instrument.put`` (BTC-PERP, ETH-PERP), 5–6
``account.created`` (acct-1, acct-2), 7 ``subaccount.created`` sub-cross (acct-1), 8
``subaccount.created`` other-sub (acct-2). Reference data and keys belong to no account.

Writes insert their entries unsealed; the sealer numbers and links them a few milliseconds after
they commit, and every read seals first. A test that tampers with a row by its seq reads first
(:func:`sealed`), so that the row it names has been sealed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit import service as audit
from app.audit.chain import GENESIS_HASH, canonical_json
from app.core.config import Settings
from app.core.db import create_session_factory
from tests.conftest import Api
from tests.factories import deposit, desk

Sql = Callable[..., Awaitable[None]]
ENTRY_FIELDS = {
    "seq",
    "kind",
    "actor_key_id",
    "account_id",
    "subaccount_id",
    "payload",
    "created_at",
    "prev_hash",
    "hash",
}


@pytest.fixture
async def sql(settings: Settings) -> AsyncIterator[Sql]:
    """Run a statement straight against PostgreSQL, as someone tampering with the table would."""
    engine = create_async_engine(settings.database_url)

    async def run(statement: str, **params: Any) -> None:
        async with engine.begin() as connection:
            await connection.execute(text(statement), params)

    yield run
    await engine.dispose()


async def key(admin: Api, role: str, accounts: list[str] | None = None) -> Api:
    body: dict[str, Any] = (
        {"role": role} if accounts is None else {"role": role, "accounts": accounts}
    )
    created = await admin.ok("POST", "/v1/api-keys", json=body)
    return admin.as_(created["key"])


async def seqs(api: Api, **params: Any) -> list[int]:
    page = await api.ok("GET", "/v1/audit", params={"limit": 1000, **params})
    assert page["next_cursor"] is None
    return [entry["seq"] for entry in page["entries"]]


def field_errors(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


def recomputed_hash(line: dict[str, Any]) -> str:
    """For an entry whose stored payload is canonical JSON (every ``record``): the parsed
    entry re-serialised is the hashed text."""
    hashed = {k: v for k, v in line.items() if k not in ("prev_hash", "hash")}
    return hashlib.sha256((line["prev_hash"] + canonical_json(hashed)).encode()).hexdigest()


def hashed_entry(raw_line: str) -> str:
    """What an exported line's hash covers, whatever its payload: the line without its
    ``"hash":…,`` member (the first, before the payload) and its ``"prev_hash":…,`` member (the
    last, after it), the payload's bytes untouched (README, Audit)."""
    line = json.loads(raw_line)
    without_hash = raw_line.replace(f'"hash":"{line["hash"]}",', "", 1)
    before, found, after = without_hash.rpartition(f'"prev_hash":"{line["prev_hash"]}",')
    assert found, raw_line
    return before + after


def line_hash(raw_line: str) -> str:
    prev_hash = json.loads(raw_line)["prev_hash"]
    return hashlib.sha256((prev_hash + hashed_entry(raw_line)).encode()).hexdigest()


async def sealed(api: Api, head_seq: int) -> dict[str, Any]:
    """Read the chain (which seals every committed entry) and check it is whole up to
    ``head_seq``: after this, a row can be named by its seq."""
    result: dict[str, Any] = await api.ok("GET", "/v1/audit/verify")
    assert (result["ok"], result["head_seq"]) == (True, head_seq), result
    return result


async def small_desk(admin: Api) -> None:
    """``desk()`` (1–8), then deposits 9–11 into sub-cross (acct-1), 12–13 into other-sub (acct-2)."""
    await desk(admin)
    for amount in ("100", "200", "300"):
        await deposit(admin, "sub-cross", amount)
    for amount in ("400", "500"):
        await deposit(admin, "other-sub", amount)


# --- the list ------------------------------------------------------------------------------


async def test_entries_are_filtered_by_kind_and_subaccount(admin: Api) -> None:
    await small_desk(admin)
    assert await seqs(admin) == list(range(1, 14))
    assert await seqs(admin, kind="transfer") == [9, 10, 11, 12, 13]
    assert await seqs(admin, kind="account.created") == [5, 6]
    assert await seqs(admin, subaccount_id="sub-cross") == [7, 9, 10, 11]
    assert await seqs(admin, kind="transfer", subaccount_id="other-sub") == [12, 13]
    assert await seqs(admin, kind="no-such-kind") == []


async def test_an_entry_carries_its_fields_and_parsed_payload(admin: Api) -> None:
    await small_desk(admin)
    [entry] = (await admin.ok("GET", "/v1/audit", params={"kind": "transfer", "limit": 1}))[
        "entries"
    ]
    assert set(entry) == ENTRY_FIELDS
    assert (entry["seq"], entry["account_id"], entry["subaccount_id"]) == (9, "acct-1", "sub-cross")
    assert entry["actor_key_id"] == "bootstrap-admin"  # the key from PREFLIGHT_ADMIN_KEY
    assert entry["payload"]["transfer_id"] == "dep-sub-cross-USDC-100"
    assert entry["payload"]["amount"] == "100"
    assert entry["created_at"].endswith("Z")
    assert entry["hash"] == recomputed_hash(entry)


async def test_cursor_pages_through_every_entry_once(admin: Api) -> None:
    await desk(admin)  # seq 1–8
    for index in range(260):  # seq 9–268
        await deposit(admin, "sub-cross", str(index + 1))

    seen: list[int] = []
    pages: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"kind": "transfer", "limit": 100}
        if cursor is not None:
            params["cursor"] = cursor
        page = await admin.ok("GET", "/v1/audit", params=params)
        pages.append(len(page["entries"]))
        seen += [entry["seq"] for entry in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [100, 100, 60]
    assert seen == list(range(9, 269))

    first = await admin.ok("GET", "/v1/audit")  # default limit 100
    assert [e["seq"] for e in first["entries"]] == list(range(1, 101))
    assert first["next_cursor"] is not None
    # A page that ends exactly at the last entry has no next page.
    exact = await admin.ok("GET", "/v1/audit", params={"kind": "transfer", "limit": 260})
    assert (len(exact["entries"]), exact["next_cursor"]) == (260, None)
    assert await seqs(admin) == list(range(1, 269))
    for limit in (0, 1001):
        assert field_errors(await admin.get("/v1/audit", params={"limit": limit})) == ["limit"]


async def test_since_and_until_bound_created_at(admin: Api) -> None:
    await desk(admin)  # seq 1–8
    t1 = datetime.now(UTC)
    await deposit(admin, "sub-cross", "1")  # seq 9
    await deposit(admin, "sub-cross", "2")  # seq 10
    t2 = datetime.now(UTC)
    await deposit(admin, "sub-cross", "3")  # seq 11

    assert await seqs(admin, since=t1.isoformat()) == [9, 10, 11]
    assert await seqs(admin, until=t1.isoformat()) == list(range(1, 9))
    assert await seqs(admin, since=t1.isoformat(), until=t2.isoformat()) == [9, 10]
    assert await seqs(admin, since=t2.isoformat().replace("+00:00", "Z")) == [11]
    assert await seqs(admin, kind="transfer", until=t2.isoformat()) == [9, 10]


async def test_bad_since_until_and_cursor_name_the_field(admin: Api) -> None:
    await desk(admin)
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no time zone
        ({"since": now.isoformat(), "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "YWJj"}, "cursor"),  # base64 of "abc": not a seq
        ({"cursor": ""}, "cursor"),
        ({"subaccount_id": "bad id"}, "subaccount_id"),
    ]
    for params, field in cases:
        response = await admin.get("/v1/audit", params=params)
        assert field_errors(response) == [field], params
        assert response.json()["code"] == "VALIDATION_ERROR"
    assert field_errors(await admin.get("/v1/audit/export", params={"since": "x"})) == ["since"]


async def test_a_scoped_auditor_sees_only_its_accounts_entries(admin: Api) -> None:
    await small_desk(admin)
    scoped = await key(admin, "auditor", ["acct-1"])  # seq 14, api_key.created: no account
    assert await seqs(scoped) == [5, 7, 9, 10, 11]
    assert await seqs(scoped, subaccount_id="other-sub") == []
    assert await seqs(scoped, kind="transfer") == [9, 10, 11]
    # An unscoped auditor sees everything, keys included.
    auditor = await key(admin, "auditor")  # seq 15
    assert await seqs(auditor) == list(range(1, 16))


async def test_only_auditors_and_admins_read_the_log(admin: Api) -> None:
    await desk(admin)
    for role in ("trader", "risk", "feeder"):
        api = await key(admin, role)
        for path in ("/v1/audit", "/v1/audit/verify", "/v1/audit/export"):
            response = await api.get(path)
            assert response.status_code == 403, (role, path)
            assert response.json()["code"] == "FORBIDDEN"
    assert (await admin.as_(None).get("/v1/audit")).status_code == 401


# --- verify --------------------------------------------------------------------------------


async def test_verify_an_untouched_chain(admin: Api) -> None:
    await desk(admin)
    auditor = await key(admin, "auditor")  # seq 9
    last = (await admin.ok("GET", "/v1/audit", params={"kind": "api_key.created"}))["entries"][-1]
    assert last["seq"] == 9
    assert await auditor.ok("GET", "/v1/audit/verify") == {
        "ok": True,
        "entries": 9,
        "first_bad_seq": None,
        "head_seq": 9,
        "head_hash": last["hash"],
    }


async def test_verify_names_a_row_edited_in_sql(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await sealed(admin, 8)
    await sql("UPDATE audit_log SET payload = :p WHERE seq = 3", p='{"forged":true}')
    result = await admin.ok("GET", "/v1/audit/verify")
    assert (result["ok"], result["entries"], result["first_bad_seq"]) == (False, 2, 3)
    assert result["head_seq"] == 2
    # The list shows what is stored now; verify is what says it was changed.
    entries = (await admin.ok("GET", "/v1/audit", params={"limit": 3}))["entries"]
    assert entries[2]["payload"] == {"forged": True}


async def test_verify_names_a_payload_that_is_no_longer_json(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await sealed(admin, 8)
    await sql("UPDATE audit_log SET payload = 'not json' WHERE seq = 6")
    result = await admin.ok("GET", "/v1/audit/verify")
    assert (result["ok"], result["entries"], result["first_bad_seq"]) == (False, 5, 6)
    entries = (await admin.ok("GET", "/v1/audit", params={"kind": "account.created"}))["entries"]
    assert entries[1]["payload"] == "not json"


async def test_verify_names_the_gap_left_by_a_deleted_middle_row(admin: Api, sql: Sql) -> None:
    await desk(admin)
    await sealed(admin, 8)
    await sql("DELETE FROM audit_log WHERE seq = 4")
    result = await admin.ok("GET", "/v1/audit/verify")
    assert (result["ok"], result["entries"], result["first_bad_seq"]) == (False, 3, 5)


async def test_a_deleted_last_row_shows_only_as_a_lower_head(admin: Api, sql: Sql) -> None:
    """The walk cannot see a truncated tail: the chain that is left is intact. What tells is a
    head noted down earlier that the chain no longer reaches."""
    await desk(admin)
    noted = await sealed(admin, 8)
    await sql("DELETE FROM audit_log WHERE seq = 8")
    after = await admin.ok("GET", "/v1/audit/verify")
    assert (after["ok"], after["entries"], after["first_bad_seq"]) == (True, 7, None)
    assert after["head_seq"] == 7 < noted["head_seq"]


# --- export --------------------------------------------------------------------------------


async def test_export_streams_every_entry_as_a_verifiable_line(admin: Api) -> None:
    await small_desk(admin)
    auditor = await key(admin, "auditor")  # seq 14
    response = await auditor.get("/v1/audit/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    raw_lines = response.text.splitlines()
    assert response.text.endswith("\n")
    lines = [json.loads(line) for line in raw_lines]
    assert [line["seq"] for line in lines] == list(range(1, 15))
    previous = GENESIS_HASH
    for raw, line in zip(raw_lines, lines, strict=True):
        assert set(line) == ENTRY_FIELDS
        # Every payload here was written by record(), as canonical JSON: so is each line.
        assert raw == canonical_json(line), "each line is canonical JSON"
        assert line["prev_hash"] == previous
        assert line["hash"] == line_hash(raw), f"seq {line['seq']} does not recompute"
        assert line["hash"] == recomputed_hash(line)
        previous = line["hash"]
    # The lines are the list's entries, field for field.
    listed = (await auditor.ok("GET", "/v1/audit"))["entries"]
    assert lines == listed


async def test_export_is_bounded_by_time_and_scope(admin: Api) -> None:
    await desk(admin)  # seq 1–8
    t1 = datetime.now(UTC)
    await deposit(admin, "sub-cross", "1")  # seq 9, acct-1
    await deposit(admin, "other-sub", "2")  # seq 10, acct-2
    t2 = datetime.now(UTC)
    await deposit(admin, "sub-cross", "3")  # seq 11, acct-1

    async def exported(api: Api, **params: Any) -> list[int]:
        response = await api.get("/v1/audit/export", params=params)
        assert response.status_code == 200, response.text
        return [json.loads(line)["seq"] for line in response.text.splitlines()]

    assert await exported(admin, since=t1.isoformat()) == [9, 10, 11]
    assert await exported(admin, since=t1.isoformat(), until=t2.isoformat()) == [9, 10]
    assert await exported(admin, until=t1.isoformat()) == list(range(1, 9))
    scoped = await key(admin, "auditor", ["acct-1"])  # seq 12
    assert await exported(scoped) == [5, 7, 9, 11]
    assert await exported(scoped, since=t2.isoformat()) == [11]
    assert await exported(admin, since=datetime.now(UTC).isoformat()) == []


async def test_export_reads_page_by_page_in_sessions_of_its_own(
    admin: Api, settings: Settings
) -> None:
    """Pages of 3 over 13 entries (3+3+3+3+1) give the same lines as one HTTP export."""
    await small_desk(admin)
    whole = (await admin.get("/v1/audit/export")).text
    engine = create_async_engine(settings.database_url)
    try:
        query = audit.AuditQuery(accounts=None)
        chunks = [
            chunk async for chunk in audit.export_lines(create_session_factory(engine), query, 3)
        ]
    finally:
        await engine.dispose()
    assert [chunk.count("\n") for chunk in chunks] == [3, 3, 3, 3, 1]
    assert "".join(chunks) == whole
