"""Checks that reserve nothing are written together (app/core/batches.py): records handed over
while a batch is being written go in the next one, each request returns only once its own
record is committed, and a record that cannot be written fails its own check only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import pytest
from fastapi import FastAPI

from app.core.batches import GroupCall
from app.pretrade.repository import CheckRow
from app.pretrade.service import write_records
from tests.conftest import Api
from tests.factories import desk


async def _settle() -> None:
    """Let every task that can run, run (a few turns of the event loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_records_handed_over_during_a_write_go_together_in_the_next() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(records: list[int]) -> list[Exception | None]:
        batches.append(records)
        await release.wait()
        return [ValueError(f"odd {r}") if r % 2 else None for r in records]

    group: GroupCall[int, None] = GroupCall(write)
    first = asyncio.create_task(group.call(0))
    await _settle()
    assert batches == [[0]]  # a lone record is written at once
    later = [asyncio.create_task(group.call(n)) for n in range(1, 6)]
    await _settle()
    assert not first.done()  # not acknowledged before its write returns
    release.set()
    await first
    results = await asyncio.gather(*later, return_exceptions=True)
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert [type(r).__name__ for r in results] == [
        "ValueError", "NoneType", "ValueError", "NoneType", "ValueError"
    ]  # fmt: skip


async def test_a_batch_that_raises_fails_every_record_of_it() -> None:
    async def write(records: list[int]) -> list[Exception | None]:
        raise ConnectionRefusedError("database away")

    group: GroupCall[int, None] = GroupCall(write)
    results = await asyncio.gather(*(group.call(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)


def _record(check_id: str, order_ids: list[str]) -> CheckRow:
    return CheckRow(
        check_id=check_id,
        subaccount_id="sub-cross",
        account_id="acct-1",
        actor_key_id=None,
        request_hash="0" * 64,
        response_json=json.dumps({"check_id": check_id}),
        audit_payload=json.dumps({"check_id": check_id}),
        created_at=datetime.now(UTC),
        client_order_ids=order_ids,
        reservation=None,
    )


async def test_a_reused_order_id_fails_its_own_check_and_no_other(admin: Api, app: FastAPI) -> None:
    await desk(admin)
    runtime = app.state.runtime
    if not runtime.hot.pooled:
        pytest.skip("group commit is PostgreSQL's")
    assert await write_records(runtime, [_record("c0", ["taken"])]) == [None]
    errors = await write_records(
        runtime, [_record("c1", ["a"]), _record("c2", ["taken"]), _record("c3", [])]
    )
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], asyncpg.UniqueViolationError)
    async with runtime.hot.connect() as db:
        stored = await db.fetch("SELECT check_id FROM checks ORDER BY check_id")
        audited = await db.fetchval("SELECT count(*) FROM audit_log WHERE kind = 'check'")
    assert [row[0] for row in stored] == ["c0", "c1", "c3"]
    assert audited == 3
