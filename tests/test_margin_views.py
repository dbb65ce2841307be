"""GET …/margin in each mode, withdrawals and mode changes; every number worked by hand from
margin.md (BTC-PERP here: one tier, IMF 10 %, MMF 5 %, contract size 1)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks


async def _margin(api: Api, subaccount_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await api.ok("GET", f"/v1/subaccounts/{subaccount_id}/margin")
    return body


async def test_cross_long_summary_and_liquidation_price(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    await marks(admin, {"BTC-PERP": "60000"}, **{"BTC-PERP": {"funding_rate": "0.0001"}})
    body = await _margin(admin, "sub-cross")
    summary = body["summary"]
    # N = 60,000; IM = 0.10·N = 6,000; MM = 0.05·N = 3,000; E = 10,000 + 0; F = E − IM.
    assert summary["gross_notional"] == "60000"
    assert (summary["initial_margin"], summary["maintenance_margin"]) == ("6000", "3000")
    assert (summary["equity"], summary["free_collateral"]) == ("10000", "4000")
    assert summary["withdrawable"] == "4000"  # max(0, E − max(IM, 0·ΣN))
    assert (summary["initial_margin_ratio"], summary["maintenance_margin_ratio"]) == (0.6, 0.3)
    assert summary["leverage"] == 6.0
    # Funding: −q·k·m·f = −1·60,000·0.0001 = −6 (a long pays a positive rate).
    assert summary["next_funding"] == "-6"
    # Portfolio model for the same book: WS = 60,000·0.10 = 6,000 = directional; basis 0;
    # floor 0.005·60,000 = 300; MM_pm = 6,000; IM_pm = 1.25·6,000 = 7,500.
    assert (summary["standard_initial_margin"], summary["portfolio_initial_margin"]) == (
        "6000",
        "7500",
    )
    # Liquidation: 10,000 + (m − 60,000) = 0.05·m → m = 50,000 / 0.95 = 52,631.5789473…,
    # rounded up for a long (the conservative side) at 6 places.
    [position] = body["positions"]
    assert position["liquidation_price"] == "52631.578948"
    assert body["marks"]["BTC-PERP"]["status"] == "fresh"


async def test_cross_short_liquidation_price(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "sell", "2", "50000")]})
    await marks(admin, {"BTC-PERP": "50000"})
    body = await _margin(admin, "sub-cross")
    # 10,000 − 2·(m − 50,000) = 0.05·2·m → 110,000 = 2.1·m → m = 52,380.952380952…, rounded
    # down for a short.
    assert body["positions"][0]["liquidation_price"] == "52380.95238"
    assert body["summary"]["next_funding"] == "0"


async def test_isolated_fill_allocates_margin_and_liquidation_prices(admin: Api) -> None:
    await desk(admin, modes=("isolated",))
    await deposit(admin, "sub-isolated", "10000")
    await admin.ok(
        "POST",
        "/v1/fills",
        json={"fills": [fill("i1", "buy", "1", "60000", subaccount_id="sub-isolated")]},
    )
    # Opening needs IM(60,000) − (A + u) = 6,000 − 0 moved from the balance into A.
    balances = await admin.ok("GET", "/v1/subaccounts/sub-isolated/balances")
    assert balances["balances"]["USDC"] == "4000"
    await marks(admin, {"BTC-PERP": "60000"})
    body = await _margin(admin, "sub-isolated")
    summary = body["summary"]
    # C = 4,000; E = C + Σ(A + u) = 4,000 + 6,000; F = C − reserved = 4,000.
    assert (summary["collateral_value"], summary["equity"]) == ("4000", "10000")
    assert (summary["free_collateral"], summary["withdrawable"]) == ("4000", "4000")
    # Long: m = (q·k·e − A) / (q·k·(1 − mmf)) = (60,000 − 6,000) / 0.95 = 56,842.1052631…
    assert body["positions"][0]["isolated_margin"] == "6000"
    assert body["positions"][0]["liquidation_price"] == "56842.105264"


async def test_isolated_short_liquidation_price(admin: Api) -> None:
    await desk(admin, modes=("isolated",))
    snapshot = {
        "balances": {"USDC": "1000"},
        "positions": [
            {
                "instrument": "BTC-PERP",
                "size": "-1",
                "entry_price": "60000",
                "isolated_margin": "6000",
            }
        ],
    }
    await admin.ok("PUT", "/v1/subaccounts/sub-isolated/snapshot", json=snapshot)
    await marks(admin, {"BTC-PERP": "60000"})
    body = await _margin(admin, "sub-isolated")
    # 6,000 − (m − 60,000) = 0.05·m → 66,000 = 1.05·m → m = 62,857.142857142…, down for a short.
    assert body["positions"][0]["liquidation_price"] == "62857.142857"


async def test_collateral_haircut_in_standard_mode_full_value_in_portfolio(admin: Api) -> None:
    await desk(admin, modes=("cross", "portfolio"))
    for subaccount_id in ("sub-cross", "sub-portfolio"):
        await deposit(admin, subaccount_id, "1", asset="BTC")
    await admin.ok(
        "POST",
        "/v1/fills",
        json={"fills": [fill("p1", "sell", "1", "60000", subaccount_id="sub-portfolio")]},
    )
    await marks(admin, {"BTC-PERP": "60000", "BTC": "60000"})
    cross = (await _margin(admin, "sub-cross"))["summary"]
    # Standard: C = 1 BTC · 60,000 · weight 0.9 = 54,000.
    assert (cross["collateral_value"], cross["equity"]) == ("54000", "54000")
    portfolio = (await _margin(admin, "sub-portfolio"))["summary"]
    # Portfolio: collateral at full price, E = 60,000. Cash and carry: D_BTC = −60,000 (perp) +
    # 60,000 (collateral) = 0 → directional 0; basis 0.01·min(60,000, 60,000) = 600; floor
    # 0.005·60,000 = 300; MM_pm = 600; IM_pm = 1.25·600 = 750. Standard IM = 0.10·60,000.
    assert portfolio["equity"] == "60000"
    assert (portfolio["maintenance_margin"], portfolio["initial_margin"]) == ("600", "750")
    assert portfolio["standard_initial_margin"] == "6000"
    assert portfolio["free_collateral"] == "59250"


async def test_withdrawal_is_capped_at_withdrawable(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    await marks(admin, {"BTC-PERP": "60000"})
    transfer = {"transfer_id": "w1", "asset": "USDC", "amount": "4000.000001", "kind": "withdrawal"}
    refused = await admin.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    assert refused.status_code == 409
    assert refused.json()["code"] == "INSUFFICIENT_MARGIN"
    assert (await _margin(admin, "sub-cross"))["summary"]["equity"] == "10000"  # nothing moved
    await admin.ok(
        "POST",
        "/v1/subaccounts/sub-cross/transfers",
        json={**transfer, "transfer_id": "w2", "amount": "4000"},
    )
    assert (await _margin(admin, "sub-cross"))["summary"]["free_collateral"] == "0"


async def test_withdrawal_floor_reproduces_the_transfer_rule(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    await marks(admin, {"BTC-PERP": "60000"})
    await admin.ok("PUT", "/v1/risk/parameters", json={"withdrawal_floor": 0.15})
    # W = max(0, 10,000 − max(6,000, 0.15·60,000 = 9,000)) = 1,000.
    assert (await _margin(admin, "sub-cross"))["summary"]["withdrawable"] == "1000"
    transfer = {"transfer_id": "w1", "asset": "USDC", "amount": "1000.5", "kind": "withdrawal"}
    assert (
        await admin.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    ).status_code == 409
    transfer["amount"] = "1000"
    assert (
        await admin.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    ).status_code == 201


async def test_withdrawal_fails_closed_on_a_stale_mark(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "0.1", "60000")]})
    old = "2020-01-01T00:00:00Z"
    await admin.ok(
        "POST",
        "/v1/marks",
        json={"marks": [{"symbol": "BTC-PERP", "price": "60000", "source": "a", "ts": old}]},
    )
    transfer = {"transfer_id": "w1", "asset": "USDC", "amount": "1", "kind": "withdrawal"}
    refused = await admin.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    assert (refused.status_code, refused.json()["code"]) == (409, "STALE_MARK")


async def test_mode_change_refused_when_it_would_put_the_book_under_water(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    await marks(admin, {"BTC-PERP": "60000"})
    # Isolated: the position would hold A = 0, so A + u = 0 ≤ MM = 3,000: under water.
    refused = await admin.patch("/v1/subaccounts/sub-cross", json={"margin_mode": "isolated"})
    assert refused.status_code == 409
    assert (await admin.ok("GET", "/v1/subaccounts/sub-cross"))["margin_mode"] == "cross"
    # Portfolio: E = 10,000, IM_pm = 7,500 → F = 2,500 ≥ 0.
    moved = await admin.ok("PATCH", "/v1/subaccounts/sub-cross", json={"margin_mode": "portfolio"})
    assert moved["margin_mode"] == "portfolio"


async def test_account_margin_sums_its_subaccounts(admin: Api) -> None:
    await desk(admin, modes=("cross", "isolated"))
    await deposit(admin, "sub-cross", "10000")
    await deposit(admin, "sub-isolated", "2500")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    await marks(admin, {"BTC-PERP": "60000"})
    body = await admin.ok("GET", "/v1/accounts/acct-1/margin")
    assert [s["subaccount_id"] for s in body["subaccounts"]] == ["sub-cross", "sub-isolated"]
    # Equity 10,000 + 2,500; IM 6,000 + 0; ratio 6,000 / 12,500 = 0.48.
    assert (body["total"]["equity"], body["total"]["initial_margin"]) == ("12500", "6000")
    assert body["total"]["initial_margin_ratio"] == 0.48


async def test_risk_parameters_round_trip_and_refuse_nonsense(admin: Api) -> None:
    await desk(admin)
    defaults = await admin.ok("GET", "/v1/risk/parameters")
    assert (defaults["floor_rate"], defaults["im_multiplier"]) == (0.005, 1.25)
    assert defaults["scan_ranges"] == {"BTC": 0.1, "ETH": 0.12}
    updated = await admin.ok("PUT", "/v1/risk/parameters", json={"im_multiplier": 1.5})
    assert updated["im_multiplier"] == 1.5
    bad = await admin.put("/v1/risk/parameters", json={"floor_rate": -1})
    assert bad.status_code == 422
    assert "floor_rate" in bad.json()["detail"]
    assert (await admin.ok("GET", "/v1/risk/parameters"))["im_multiplier"] == 1.5


async def test_two_first_writes_of_the_risk_parameters_both_succeed_in_turn(admin: Api) -> None:
    """No parameters stored yet; two PUTs at once: both answer 200 (the second waits for the
    first's row, then updates it), and what is stored is one of the two, whole."""
    first, second = {"withdrawal_floor": 0.15}, {"withdrawal_floor": 0.25}
    answers = await asyncio.gather(
        admin.put("/v1/risk/parameters", json=first),
        admin.put("/v1/risk/parameters", json=second),
    )
    assert [a.status_code for a in answers] == [200, 200]
    stored = await admin.ok("GET", "/v1/risk/parameters")
    assert stored["withdrawal_floor"] in (0.15, 0.25)
