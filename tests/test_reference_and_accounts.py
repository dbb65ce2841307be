"""Reference data, accounts, subaccounts, limits, leverage and trading states round trip."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from app.core.config import Settings
from tests.conftest import Api
from tests.factories import BTC_PERP, desk


async def test_asset_and_instrument_round_trip(admin: Api) -> None:
    created = await admin.put(
        "/v1/assets/USDC", json={"collateral_weight": 1, "is_settlement": True}
    )
    assert created.status_code == 201
    again = await admin.put(
        "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True}
    )
    assert again.status_code == 200
    await admin.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP)
    body = await admin.ok("GET", "/v1/instruments/BTC-PERP")
    assert body["margin_tiers"] == [
        # maintenance defaults to half the initial fraction
        {
            "notional_floor": "0",
            "initial_margin_fraction": "0.1",
            "maintenance_margin_fraction": "0.05",
        }
    ]
    assert (body["max_leverage"], body["stale_after_s"], body["max_twap_deviation"]) == (
        "10",
        "5",
        "0.05",
    )
    listed = await admin.ok("GET", "/v1/instruments")
    assert [i["symbol"] for i in listed["instruments"]] == ["BTC-PERP"]


async def test_there_is_one_settlement_asset(admin: Api) -> None:
    await admin.ok("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
    second = await admin.put(
        "/v1/assets/USDT", json={"collateral_weight": "1", "is_settlement": True}
    )
    assert second.status_code == 409
    assert (await admin.get("/v1/assets/USDT")).status_code == 404


async def test_contract_size_cannot_change_under_open_positions(admin: Api) -> None:
    await desk(admin)
    fill = {
        "fill_id": "f1",
        "subaccount_id": "sub-cross",
        "instrument": "BTC-PERP",
        "side": "buy",
        "size": "1",
        "price": "100",
        "fee": "0",
        "ts": "2026-01-01T00:00:00Z",
    }
    await admin.ok("POST", "/v1/fills", json={"fills": [fill]})
    response = await admin.put("/v1/instruments/BTC-PERP", json={**BTC_PERP, "contract_size": "10"})
    assert response.status_code == 409
    body = await admin.ok("GET", "/v1/instruments/BTC-PERP")
    assert body["contract_size"] == "1"


async def test_account_and_subaccount_creation_is_idempotent(admin: Api) -> None:
    await desk(admin)
    replay = await admin.post("/v1/accounts", json={"account_id": "acct-1", "name": "Fund One"})
    assert replay.status_code == 200
    clash = await admin.post("/v1/accounts", json={"account_id": "acct-1", "name": "Other"})
    assert clash.status_code == 409
    account = await admin.ok("GET", "/v1/accounts/acct-1")
    assert account["subaccounts"] == ["sub-cross"]
    sub = {"subaccount_id": "sub-cross", "account_id": "acct-1", "margin_mode": "cross"}
    assert (await admin.post("/v1/subaccounts", json=sub)).status_code == 200
    moved = await admin.post("/v1/subaccounts", json={**sub, "account_id": "acct-2"})
    assert moved.status_code == 409


async def test_limits_round_trip_with_warn_at(admin: Api) -> None:
    await desk(admin)
    limits = {
        "max_gross_notional": "1000000",
        "max_leverage": {"value": "5", "warn_at": "0.9"},
        "max_open_orders": 20,
        "strategy_limits": {"basis": {"max_gross_notional": 250000}},
    }
    body = await admin.ok("PUT", "/v1/accounts/acct-1/limits", json=limits)
    assert body["limits"]["max_gross_notional"] == {"value": "1000000", "warn_at": "0.8"}
    assert body["limits"]["max_leverage"] == {"value": "5", "warn_at": "0.9"}
    assert body["limits"]["max_open_orders"] == {"value": 20, "warn_at": "0.8"}
    assert body["limits"]["strategy_limits"]["basis"]["max_gross_notional"]["value"] == "250000"
    # A PUT replaces the whole set: absent means no cap.
    body = await admin.ok("PUT", "/v1/accounts/acct-1/limits", json={"max_daily_loss": "5000"})
    assert body["limits"]["max_gross_notional"] is None
    sub = await admin.ok(
        "PUT", "/v1/subaccounts/sub-cross/limits", json={"max_position_notional": "300000"}
    )
    assert sub["limits"]["max_position_notional"]["value"] == "300000"


async def test_chosen_leverage_is_bounded_by_the_first_tier(admin: Api) -> None:
    await desk(admin)
    body = await admin.ok(
        "PUT", "/v1/subaccounts/sub-cross/leverage", json={"instrument": "BTC-PERP", "leverage": 4}
    )
    assert body["leverage"] == {"BTC-PERP": "4"}
    # The first tier's IMF is 0.1, so at most 10×.
    too_high = await admin.put(
        "/v1/subaccounts/sub-cross/leverage", json={"instrument": "BTC-PERP", "leverage": "10.5"}
    )
    assert too_high.status_code == 422
    assert too_high.json()["errors"][0]["field"] == "leverage"


async def test_trading_states_list_only_non_active(admin: Api) -> None:
    await desk(admin)
    await admin.ok(
        "PUT",
        "/v1/trading-state",
        json={"scope": "instrument", "id": "BTC-PERP", "state": "reduce_only", "reason": "delist"},
    )
    await admin.ok(
        "PUT", "/v1/trading-state", json={"scope": "global", "state": "halted", "reason": "drill"}
    )
    states = (await admin.ok("GET", "/v1/trading-state"))["trading_states"]
    assert {(s["scope"], s["id"], s["state"]) for s in states} == {
        ("global", None, "halted"),
        ("instrument", "BTC-PERP", "reduce_only"),
    }
    await admin.ok(
        "PUT", "/v1/trading-state", json={"scope": "global", "state": "active", "reason": "over"}
    )
    states = (await admin.ok("GET", "/v1/trading-state"))["trading_states"]
    assert [s["scope"] for s in states] == ["instrument"]


async def test_cli_creates_a_scoped_key_that_works(admin: Api, settings: Settings) -> None:
    await desk(admin)
    env = {**os.environ, "PREFLIGHT_DATABASE_URL": settings.database_url}
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "keys",
            "create",
            "--role",
            "trader",
            "--account",
            "acct-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = result.stdout.strip()
    trader = admin.as_(key)
    assert (await trader.get("/v1/subaccounts/sub-cross/positions")).status_code == 200
    assert (await trader.get("/v1/subaccounts/other-sub/positions")).status_code == 404
    listed = (await admin.ok("GET", "/v1/api-keys"))["api_keys"]
    assert all("key" not in k and key not in str(k) for k in listed)
