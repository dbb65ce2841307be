"""Client-chosen idempotency ids (``fill_id``, ``transfer_id``) are unique per subaccount: the
same id in another subaccount is another record, never a 409 that reveals another tenant's id;
within one subaccount a replay still answers the first result and a change is still a 409."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.migrations import alembic_config
from tests import services
from tests.conftest import Api
from tests.factories import desk, fill

BEFORE = "f2a6c8d4e5b7"  # the revision before fill and transfer ids became per subaccount
CLIENT_IDS = "a45fa2b53249"


async def _scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


async def _written(settings: Settings) -> tuple[int, int, int]:
    """Rows of fills, of transfers, and audit entries: what a replay must not add to."""
    return (
        await _scalar(settings.database_url, "SELECT count(*) FROM fills"),
        await _scalar(settings.database_url, "SELECT count(*) FROM transfers"),
        await _scalar(settings.database_url, "SELECT count(*) FROM audit_log"),
    )


async def _position(api: Api, subaccount_id: str) -> str | None:
    body = await api.ok("GET", f"/v1/subaccounts/{subaccount_id}/positions")
    sizes = [p["size"] for p in body["positions"] if p["instrument"] == "BTC-PERP"]
    return sizes[0] if sizes else None


async def _usdc(api: Api, subaccount_id: str) -> str | None:
    body = await api.ok("GET", f"/v1/subaccounts/{subaccount_id}/balances")
    balance: str | None = body["balances"].get("USDC")
    return balance


def _deposit(transfer_id: str, amount: str) -> dict[str, str]:
    return {"transfer_id": transfer_id, "asset": "USDC", "amount": amount, "kind": "deposit"}


async def _trader(admin: Api, account_id: str) -> Api:
    body = {"role": "trader", "accounts": [account_id]}
    return admin.as_((await admin.ok("POST", "/v1/api-keys", json=body))["key"])


# --- the same id in two subaccounts ------------------------------------------------------------


async def test_the_same_fill_id_in_two_accounts_records_two_fills(admin: Api) -> None:
    await desk(admin)
    mine = await admin.post("/v1/fills", json={"fills": [fill("f-1", "buy", "1", "50000")]})
    theirs = await admin.post(
        "/v1/fills",
        json={"fills": [fill("f-1", "sell", "2", "51000", subaccount_id="other-sub", fee="3")]},
    )
    assert (mine.status_code, theirs.status_code) == (200, 200)
    [first], [second] = mine.json()["fills"], theirs.json()["fills"]
    assert (first["subaccount_id"], first["side"], first["size"]) == ("sub-cross", "buy", "1")
    assert (second["subaccount_id"], second["side"], second["size"]) == ("other-sub", "sell", "2")
    assert (await _position(admin, "sub-cross"), await _position(admin, "other-sub")) == ("1", "-2")
    assert await _usdc(admin, "other-sub") == "-3"


async def test_one_batch_may_use_an_id_once_per_subaccount(admin: Api) -> None:
    await desk(admin)
    both = [
        fill("f-2", "buy", "1", "50000"),
        fill("f-2", "buy", "3", "50000", subaccount_id="other-sub"),
    ]
    answer = await admin.ok("POST", "/v1/fills", json={"fills": both})
    assert [(f["subaccount_id"], f["size"]) for f in answer["fills"]] == [
        ("sub-cross", "1"),
        ("other-sub", "3"),
    ]
    twice = [fill("f-3", "buy", "1", "50000"), fill("f-3", "buy", "2", "50000")]
    refused = await admin.post("/v1/fills", json={"fills": twice})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["fills[1].fill_id"]


async def test_the_same_transfer_id_in_two_accounts_records_two_transfers(admin: Api) -> None:
    await desk(admin)
    mine = await admin.post("/v1/subaccounts/sub-cross/transfers", json=_deposit("t-1", "1000"))
    theirs = await admin.post("/v1/subaccounts/other-sub/transfers", json=_deposit("t-1", "250"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert (mine.json()["subaccount_id"], mine.json()["amount"]) == ("sub-cross", "1000")
    assert (theirs.json()["subaccount_id"], theirs.json()["amount"]) == ("other-sub", "250")
    assert (await _usdc(admin, "sub-cross"), await _usdc(admin, "other-sub")) == ("1000", "250")


async def test_a_transfer_id_belongs_to_the_subaccount_it_was_sent_from(admin: Api) -> None:
    await desk(admin, modes=("cross", "isolated"))
    await admin.ok("POST", "/v1/subaccounts/sub-cross/transfers", json=_deposit("d-1", "1000"))
    move = {**_deposit("t-1", "400"), "kind": "transfer", "to_subaccount_id": "sub-isolated"}
    await admin.ok("POST", "/v1/subaccounts/sub-cross/transfers", json=move)
    # The destination's own t-1 is its own record, not a replay of the move it received.
    again = await admin.post("/v1/subaccounts/sub-isolated/transfers", json=_deposit("t-1", "5"))
    assert again.status_code == 201
    assert (await _usdc(admin, "sub-cross"), await _usdc(admin, "sub-isolated")) == ("600", "405")


# --- a scoped key never learns another account's ids --------------------------------------------


async def test_a_scoped_trader_sending_another_accounts_ids_is_not_refused(
    admin: Api, settings: Settings
) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/subaccounts/other-sub/transfers", json=_deposit("t-1", "777"))
    other_fill = fill("f-1", "sell", "5", "40000", subaccount_id="other-sub")
    await admin.ok("POST", "/v1/fills", json={"fills": [other_fill]})
    trader = await _trader(admin, "acct-1")

    transfer = await trader.post("/v1/subaccounts/sub-cross/transfers", json=_deposit("t-1", "10"))
    assert transfer.status_code == 201, transfer.text
    assert (transfer.json()["subaccount_id"], transfer.json()["amount"]) == ("sub-cross", "10")
    fills = await trader.post("/v1/fills", json={"fills": [fill("f-1", "sell", "1", "50000")]})
    assert fills.status_code == 200, fills.text
    [recorded] = fills.json()["fills"]
    assert (recorded["subaccount_id"], recorded["price"]) == ("sub-cross", "50000")

    # Even the other account's exact content is a new record here, not a replay of theirs.
    copied = {**other_fill, "subaccount_id": "sub-cross", "fill_id": "f-9"}
    await admin.ok("POST", "/v1/fills", json={"fills": [{**other_fill, "fill_id": "f-9"}]})
    assert (await trader.post("/v1/fills", json={"fills": [copied]})).status_code == 200
    # The other account is untouched by all of it.
    assert (await _usdc(admin, "other-sub"), await _position(admin, "other-sub")) == ("777", "-10")
    assert (await _position(admin, "sub-cross"), await _usdc(admin, "sub-cross")) == ("-6", "10")
    assert (await _written(settings))[:2] == (4, 2)


# --- within one subaccount: replays and conflicts as before --------------------------------------


async def test_a_replay_in_the_same_subaccount_answers_the_same_and_writes_nothing(
    admin: Api, settings: Settings
) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/subaccounts/other-sub/transfers", json=_deposit("t-1", "1"))
    await admin.ok(
        "POST",
        "/v1/fills",
        json={"fills": [fill("f-1", "buy", "9", "1", subaccount_id="other-sub")]},
    )
    trader = await _trader(admin, "acct-1")
    deposit = _deposit("t-1", "1000")
    first_transfer = await trader.post("/v1/subaccounts/sub-cross/transfers", json=deposit)
    batch = {"fills": [fill("f-1", "buy", "2", "50000", fee="5")]}
    first_fills = await trader.ok("POST", "/v1/fills", json=batch)
    written = await _written(settings)

    again_transfer = await trader.post("/v1/subaccounts/sub-cross/transfers", json=deposit)
    again_fills = await trader.ok("POST", "/v1/fills", json=batch)
    assert (first_transfer.status_code, again_transfer.status_code) == (201, 200)
    assert again_transfer.json() == first_transfer.json()
    assert again_fills == first_fills
    assert await _written(settings) == written
    assert (await _position(admin, "sub-cross"), await _usdc(admin, "sub-cross")) == ("2", "995")


async def test_other_content_under_the_same_id_in_the_same_subaccount_is_a_conflict(
    admin: Api, settings: Settings
) -> None:
    await desk(admin)
    trader = await _trader(admin, "acct-1")
    await trader.ok("POST", "/v1/subaccounts/sub-cross/transfers", json=_deposit("t-1", "1000"))
    await trader.ok("POST", "/v1/fills", json={"fills": [fill("f-1", "buy", "1", "50000")]})
    written = await _written(settings)

    transfer = await trader.post("/v1/subaccounts/sub-cross/transfers", json=_deposit("t-1", "2"))
    fills = await trader.post("/v1/fills", json={"fills": [fill("f-1", "buy", "7", "50000")]})
    assert (transfer.status_code, transfer.json()["code"]) == (409, "CONFLICT")
    assert (fills.status_code, fills.json()["code"]) == (409, "CONFLICT")
    assert await _written(settings) == written
    assert (await _position(admin, "sub-cross"), await _usdc(admin, "sub-cross")) == ("1", "1000")
    # The same ids stay free in the other account.
    assert (
        await admin.post("/v1/subaccounts/other-sub/transfers", json=_deposit("t-1", "2"))
    ).status_code == 201


# --- the migration keeps every row, both ways ---------------------------------------------------

_SEED = [
    "INSERT INTO accounts VALUES ('a1', 'A', '{}', '2026-01-01 00:00:00+00')",
    "INSERT INTO accounts VALUES ('a2', 'B', '{}', '2026-01-01 00:00:00+00')",
    "INSERT INTO subaccounts VALUES ('s1', 'a1', 'cross', NULL, '{}', '2026-01-01 00:00:00+00')",
    "INSERT INTO subaccounts VALUES ('s2', 'a2', 'cross', NULL, '{}', '2026-01-01 00:00:00+00')",
    "INSERT INTO assets (symbol, collateral_weight, underlying, is_settlement, updated_at)"
    " VALUES ('USDC', '1', NULL, TRUE, '2026-01-01 00:00:00+00')",
    "INSERT INTO instruments (symbol, kind, underlying, contract_size, tick_size, lot_size,"
    " margin_tiers, taker_fee_rate, maker_fee_rate, updated_at) VALUES ('P', 'perpetual', 'BTC',"
    " '1', '1', '1', '[]', '0', '0', '2026-01-01 00:00:00+00')",
    "INSERT INTO fills VALUES ('f-1', 's1', 'P', 'buy', '1', '2', '0', 'USDC', NULL,"
    " '2026-01-01 00:00:00+00', '0', '1', '2', 'h1', '2026-01-01 00:00:00+00')",
    "INSERT INTO transfers VALUES ('t-1', 's1', 'USDC', '5', 'deposit', NULL, 'h2',"
    " '2026-01-01 00:00:00+00')",
]
_SHARE_IDS = [
    "INSERT INTO fills VALUES ('f-1', 's2', 'P', 'sell', '3', '4', '0', 'USDC', NULL,"
    " '2026-01-01 00:00:00+00', '0', '-3', '4', 'h3', '2026-01-01 00:00:00+00')",
    "INSERT INTO transfers VALUES ('t-1', 's2', 'USDC', '6', 'deposit', NULL, 'h4',"
    " '2026-01-01 00:00:00+00')",
]
_ROWS = (
    "SELECT count(*) || ':' || coalesce(sum(CAST(size AS INTEGER)), 0) FROM fills",
    "SELECT count(*) || ':' || coalesce(sum(CAST(amount AS INTEGER)), 0) FROM transfers",
)


async def _execute(url: str, statements: list[str]) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _rows(url: str) -> list[str]:
    return [str(await _scalar(url, sql)) for sql in _ROWS]


async def _round_trip(url: str) -> None:
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, BEFORE)
    await _execute(url, _SEED)
    await asyncio.to_thread(command.upgrade, config, CLIENT_IDS)
    assert await _rows(url) == ["1:1", "1:5"]
    await _execute(url, _SHARE_IDS)  # allowed now: another subaccount's f-1 and t-1
    assert await _rows(url) == ["2:4", "2:11"]

    # Back to global ids: refused, changing nothing, while two subaccounts share an id.
    with pytest.raises(RuntimeError, match="more than one subaccount"):
        await asyncio.to_thread(command.downgrade, config, BEFORE)
    assert await _rows(url) == ["2:4", "2:11"]
    await _execute(url, ["DELETE FROM fills WHERE subaccount_id = 's2'"])
    await _execute(url, ["DELETE FROM transfers WHERE subaccount_id = 's2'"])
    await asyncio.to_thread(command.downgrade, config, BEFORE)
    assert await _rows(url) == ["1:1", "1:5"]
    with pytest.raises(IntegrityError):  # the global key is back
        await _execute(url, _SHARE_IDS[:1])
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _rows(url) == ["1:1", "1:5"]


async def test_the_migration_keeps_every_row_on_postgresql() -> None:
    server = services.postgres_server_url()
    name = f"preflight_client_ids_{os.getpid()}"
    url = services.create_database(server, name)
    try:
        await _round_trip(url)
    finally:
        services.drop_database(server, name)


async def test_the_migration_keeps_every_row_on_sqlite(tmp_path: Path) -> None:
    await _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'ids.db'}")
