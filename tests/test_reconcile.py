"""Reconciliation answers how our state differs from a venue snapshot and changes nothing.

Our state in every test: sub-cross holds 100000 USDC (a deposit) and is long 1 BTC-PERP at 60000
(a fill with no fee: the balance stays 100000, isolated margin 0). Each difference is
venue − ours."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.sealer import seal
from app.core.config import Settings
from tests.conftest import Api
from tests.factories import deposit, desk, fill

AuditHead = Callable[[], Awaitable[tuple[int, str] | None]]
URL = "/v1/subaccounts/sub-cross/reconcile"


@pytest.fixture
async def audit_head(settings: Settings) -> AsyncIterator[AuditHead]:
    engine = create_async_engine(settings.database_url)

    async def head() -> tuple[int, str] | None:
        async with engine.begin() as connection:
            await seal(connection)  # entries are sealed just after their commit
            row = (
                await connection.execute(
                    text(
                        "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL "
                        "ORDER BY seq DESC LIMIT 1"
                    )
                )
            ).first()
            return None if row is None else (row.seq, row.hash)

    yield head
    await engine.dispose()


async def holding(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "100000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f-1", "buy", "1", "60000")]})


async def state(api: Api) -> tuple[Any, Any]:
    positions = await api.ok("GET", "/v1/subaccounts/sub-cross/positions")
    balances = await api.ok("GET", "/v1/subaccounts/sub-cross/balances")
    return positions, balances


async def test_differences_in_balances_and_positions(admin: Api, audit_head: AuditHead) -> None:
    await holding(admin)
    before, head = await state(admin), await audit_head()
    snapshot = {
        "balances": {"USDC": "99990.5", "BTC": "0.5"},
        "positions": [
            {
                "instrument": "BTC-PERP",
                "size": "1.5",
                "entry_price": "61000",
                "isolated_margin": "250",
            },
            {"instrument": "ETH-PERP", "size": "-3", "entry_price": "3000"},
        ],
    }
    answer = await admin.ok("POST", URL, json=snapshot)
    assert answer == {
        "subaccount_id": "sub-cross",
        "balances": [
            # We hold no BTC: missing counts as 0.
            {"asset": "BTC", "ours": "0", "venue": "0.5", "difference": "0.5"},
            {"asset": "USDC", "ours": "100000", "venue": "99990.5", "difference": "-9.5"},
        ],
        "positions": [
            {
                "instrument": "BTC-PERP",
                "field": "size",
                "ours": "1",
                "venue": "1.5",
                "difference": "0.5",
            },
            {
                "instrument": "BTC-PERP",
                "field": "entry_price",
                "ours": "60000",
                "venue": "61000",
                "difference": "1000",
            },
            {
                "instrument": "BTC-PERP",
                "field": "isolated_margin",
                "ours": "0",
                "venue": "250",
                "difference": "250",
            },
            # Only the venue holds ETH-PERP: its size is the difference; no entry price is ours.
            {
                "instrument": "ETH-PERP",
                "field": "size",
                "ours": "0",
                "venue": "-3",
                "difference": "-3",
            },
        ],
        "matches": False,
    }
    assert await state(admin) == before
    assert await audit_head() == head


async def test_a_position_only_we_hold(admin: Api) -> None:
    await holding(admin)
    answer = await admin.ok("POST", URL, json={"balances": {"USDC": "100000"}, "positions": []})
    assert answer["balances"] == []
    assert answer["positions"] == [
        {"instrument": "BTC-PERP", "field": "size", "ours": "1", "venue": "0", "difference": "-1"}
    ]
    # A size of 0 on the venue is the same as not listing the position.
    zero = await admin.ok(
        "POST",
        URL,
        json={
            "balances": {"USDC": "100000"},
            "positions": [{"instrument": "BTC-PERP", "size": "0", "entry_price": "60000"}],
        },
    )
    assert zero["positions"] == answer["positions"]
    assert zero["matches"] is False


async def test_equal_state_matches(admin: Api, audit_head: AuditHead) -> None:
    await holding(admin)
    before, head = await state(admin), await audit_head()
    snapshot = {
        # Another spelling of the same numbers, and a zero balance we do not hold.
        "balances": {"USDC": "100000.00", "BTC": "0"},
        "positions": [{"instrument": "BTC-PERP", "size": 1, "entry_price": "60000.0"}],
    }
    assert await admin.ok("POST", URL, json=snapshot) == {
        "subaccount_id": "sub-cross",
        "balances": [],
        "positions": [],
        "matches": True,
    }
    assert await state(admin) == before
    assert await audit_head() == head


async def test_unknown_names_scope_and_roles(admin: Api, audit_head: AuditHead) -> None:
    await holding(admin)
    head = await audit_head()
    empty: dict[str, Any] = {"balances": {}, "positions": []}

    unknown_asset = await admin.post(URL, json={"balances": {"DOGE": "1"}, "positions": []})
    assert unknown_asset.status_code == 422
    assert [e["field"] for e in unknown_asset.json()["errors"]] == ["balances.DOGE"]
    unknown_instrument = await admin.post(
        URL,
        json={
            "balances": {},
            "positions": [
                {"instrument": "BTC-PERP", "size": "1", "entry_price": "1"},
                {"instrument": "SOL-PERP", "size": "1", "entry_price": "1"},
            ],
        },
    )
    assert unknown_instrument.status_code == 422
    assert [e["field"] for e in unknown_instrument.json()["errors"]] == ["positions[1].instrument"]
    extra = await admin.post(URL, json={**empty, "note": "x"})
    assert [e["field"] for e in extra.json()["errors"]] == ["note"]
    assert (await admin.post("/v1/subaccounts/nope/reconcile", json=empty)).status_code == 404

    trader = admin.as_(
        (await admin.ok("POST", "/v1/api-keys", json={"role": "trader", "accounts": ["acct-1"]}))[
            "key"
        ]
    )
    head = await audit_head()  # the key creation above is audited
    mine = await trader.ok("POST", URL, json=empty)
    assert mine["matches"] is False  # we hold USDC and BTC-PERP; the venue says nothing
    outside = await trader.post("/v1/subaccounts/other-sub/reconcile", json=empty)
    assert (outside.status_code, outside.json()["code"]) == (404, "NOT_FOUND")
    auditor = admin.as_((await admin.ok("POST", "/v1/api-keys", json={"role": "auditor"}))["key"])
    head = await audit_head()
    assert (await auditor.post(URL, json=empty)).status_code == 403
    assert await audit_head() == head
