"""Options through the paths a perpetual goes through (issue 12, margin.md "Options"): the
premium moves at the fill, the margin view values the option at its mark with its greeks, the
check walks its book and fails closed on its underlying's index, stress moves its volatility,
the overview counts it, and isolated subaccounts and expired options refuse it.

Expected numbers are worked by hand from margin.md; Φ from ``statistics.NormalDist``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Api
from tests.engine.helpers import black76_by_hand, black76_delta_by_hand
from tests.factories import deposit, desk, fill, marks

CALL = "BTC-C70K"


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _call(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "option",
        "underlying": "BTC",
        "option_type": "call",
        "strike": "70000",
        "expiry": _in(30 * 86_400),
        "contract_size": "1",
        "tick_size": "0.5",
        "lot_size": "0.01",
        "taker_fee_rate": "0",
        "maker_fee_rate": "0",
        "price_band": "0.5",
        **changes,
    }


async def _short_call_desk(admin: Api, usdc: str = "100000") -> None:
    """``usdc`` in ``sub-cross``, then 1 call 70,000 sold at 1,500 (no fee); BTC 65,000, the
    call marked 1,200 at σ 0.5."""
    await desk(admin, modes=("cross", "isolated"))
    await admin.ok("PUT", f"/v1/instruments/{CALL}", json=_call())
    await deposit(admin, "sub-cross", usdc)
    await marks(admin, {"BTC": "65000", "BTC-PERP": "65000", CALL: "1200"}, **{CALL: {"iv": "0.5"}})
    await admin.ok(
        "POST", "/v1/fills", json={"fills": [fill("f-1", "sell", "1", "1500", instrument=CALL)]}
    )


async def test_selling_a_call_receives_its_premium_and_values_it_at_its_mark(admin: Api) -> None:
    await _short_call_desk(admin)
    balances = await admin.ok("GET", "/v1/subaccounts/sub-cross/balances")
    assert Decimal(balances["balances"]["USDC"]) == Decimal("101500")  # 100,000 + 1·1·1,500
    view = await admin.ok("GET", "/v1/subaccounts/sub-cross/margin")
    summary = view["summary"]
    # E = C + q·k·m = 101,500 − 1,200; its PnL q·k·(m − e) = +300 is reported, not counted twice.
    assert Decimal(summary["equity"]) == Decimal("100300")
    assert Decimal(summary["unrealized_pnl"]) == Decimal("300")
    # Short call: OTM 5,000, IM max(0.15·65,000 − 5,000, 0.10·65,000) = 6,500, MM 0.075·65,000.
    assert Decimal(summary["initial_margin"]) == Decimal("6500")
    assert Decimal(summary["maintenance_margin"]) == Decimal("4875")
    assert Decimal(summary["free_collateral"]) == Decimal("93800")
    [position] = view["positions"]
    assert position["instrument"] == CALL
    # Delta-adjusted notional |q·k·Δ|·S, Δ = Φ(d1) at 30 days, σ 0.5.
    delta = black76_delta_by_hand(True, 65_000, 70_000, 0.5, 30 / 365)
    assert float(position["notional"]) == pytest.approx(delta * 65_000, abs=2.0)
    assert float(position["greeks"]["delta"]) == pytest.approx(-delta, abs=1e-3)
    assert float(position["greeks"]["gamma"]) < 0 and float(position["greeks"]["vega"]) < 0
    # The call's own mark at which E meets MM: 1,200 + (4,875 − 100,300) / −1.
    assert Decimal(position["liquidation_price"]) == Decimal("96625")
    assert view["marks"]["BTC"]["status"] == "fresh"  # its underlying's index is valued too


async def test_a_check_buys_back_part_of_the_call_on_its_book(admin: Api) -> None:
    await _short_call_desk(admin)
    await admin.ok(
        "PUT",
        f"/v1/books/{CALL}",
        json={"bids": [["1150", "10"]], "asks": [["1250", "10"]], "ts": _in(0)},
    )
    check = await admin.ok(
        "POST",
        "/v1/pretrade/check",
        json={
            "subaccount_id": "sub-cross",
            "orders": [{"instrument": CALL, "side": "buy", "size": "0.5", "type": "market"}],
        },
    )
    assert check["decision"] == "accept", check["reasons"]
    [execution] = check["executions"]
    assert (execution["filled_size"], execution["avg_price"]) == ("0.5", "1250")
    # After: 101,500 − 0.5·1,250 paid; −0.5 call at 1,200 → E = 100,875 − 600.
    assert Decimal(check["before"]["equity"]) == Decimal("100300")
    assert Decimal(check["after"]["equity"]) == Decimal("100275")
    assert Decimal(check["after"]["initial_margin"]) == Decimal("3250")
    assert Decimal(check["after"]["maintenance_margin"]) == Decimal("2437.5")
    [position] = check["positions_after"]
    assert (position["size"], position["entry_price"]) == ("-0.5", "1500")
    delta = black76_delta_by_hand(True, 65_000, 70_000, 0.5, 30 / 365)
    assert float(position["greeks"]["delta"]) == pytest.approx(-0.5 * delta, abs=1e-3)


async def _call_with_an_aged_index(admin: Api, index_age_s: float, **call: Any) -> None:
    """100,000 USDC in ``sub-cross``, the call (``call`` changes its terms) freshly marked and
    BTC's index posted ``index_age_s`` ago, by one source."""
    await desk(admin)
    await admin.ok("PUT", f"/v1/instruments/{CALL}", json=_call(**call))
    await deposit(admin, "sub-cross", "100000")
    await admin.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                {"symbol": "BTC", "price": "65000", "source": "index", "ts": _in(-index_age_s)},
                {"symbol": CALL, "price": "1200", "source": "venue", "ts": _in(0), "iv": "0.5"},
            ]
        },
    )


async def test_an_option_order_fails_closed_on_a_stale_index(admin: Api) -> None:
    # The call's own mark is fresh; its underlying's index is a minute old (stale after 5 s).
    await _call_with_an_aged_index(admin, 60)
    order = {
        "subaccount_id": "sub-cross",
        "orders": [{"instrument": CALL, "side": "sell", "size": "0.1", "type": "market"}],
    }
    check = await admin.ok("POST", "/v1/pretrade/check", json=order)
    assert check["decision"] == "reject"
    stale = [r for r in check["reasons"] if r["code"] == "STALE_MARK"]
    assert [r["message"] for r in stale] == ["BTC index mark is stale"], check["reasons"]
    # A fresh index lets the same order through.
    await marks(admin, {"BTC": "65000"})
    check = await admin.ok("POST", "/v1/pretrade/check", json=order)
    assert check["decision"] == "accept", check["reasons"]


async def test_isolated_subaccounts_refuse_options(admin: Api) -> None:
    await _short_call_desk(admin)
    await deposit(admin, "sub-isolated", "10000")
    check = await admin.post(
        "/v1/pretrade/check",
        json={
            "subaccount_id": "sub-isolated",
            "orders": [{"instrument": CALL, "side": "buy", "size": "0.1", "type": "market"}],
        },
    )
    assert check.status_code == 422, check.text
    assert check.json()["errors"][0]["field"] == "orders[0].instrument"
    fills = await admin.post(
        "/v1/fills",
        json={
            "fills": [
                fill("f-iso", "buy", "0.1", "1200", instrument=CALL, subaccount_id="sub-isolated")
            ]
        },
    )
    assert fills.status_code == 422, fills.text
    assert fills.json()["errors"][0]["field"] == "fills[0].instrument"
    snapshot = await admin.put(
        "/v1/subaccounts/sub-isolated/snapshot",
        json={
            "balances": {"USDC": "10000"},
            "positions": [{"instrument": CALL, "size": "1", "entry_price": "1200"}],
        },
    )
    assert snapshot.status_code == 422, snapshot.text
    assert snapshot.json()["errors"][0]["field"] == "positions[0].instrument"
    # Nothing was written: the isolated subaccount holds no option.
    held = await admin.ok("GET", "/v1/subaccounts/sub-isolated/positions")
    assert held["positions"] == []
    # A cross subaccount holding an option cannot become isolated.
    moved = await admin.patch("/v1/subaccounts/sub-cross", json={"margin_mode": "isolated"})
    assert moved.status_code == 409, moved.text


async def test_an_expired_option_cannot_be_ordered(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "10000")
    await admin.ok("PUT", "/v1/instruments/BTC-C-SOON", json=_call(expiry=_in(1.5)))
    await marks(admin, {"BTC": "65000", "BTC-C-SOON": "10"}, **{"BTC-C-SOON": {"iv": "0.5"}})
    await asyncio.sleep(2)
    check = await admin.post(
        "/v1/pretrade/check",
        json={
            "subaccount_id": "sub-cross",
            "orders": [{"instrument": "BTC-C-SOON", "side": "buy", "size": "1", "type": "market"}],
        },
    )
    assert check.status_code == 422, check.text
    assert check.json()["errors"][0]["field"] == "orders[0].instrument"
    assert "expired" in check.text


async def test_stress_moves_the_calls_volatility(admin: Api) -> None:
    await _short_call_desk(admin)
    stressed = await admin.ok(
        "POST",
        "/v1/subaccounts/sub-cross/stress",
        json={
            "scenarios": [
                {"name": "vol up", "shocks": {}, "vol_shocks": {"BTC": 0.5}},
                {"name": "BTC −10%", "shocks": {"BTC": -0.1}},
            ]
        },
    )
    vol_up, crash = stressed["scenarios"]
    years = 30 / 365
    # The call's mark moves by V(S, 0.75) − V(S, 0.5): E = 101,500 − (1,200 + that move).
    move = black76_by_hand(True, 65_000, 70_000, 0.75, years) - black76_by_hand(
        True, 65_000, 70_000, 0.5, years
    )
    assert float(vol_up["equity"]) == pytest.approx(101_500 - 1_200 - move, abs=0.5)
    assert vol_up["vol_shocks"] == {"BTC": 0.5}
    # BTC −10%: the model value falls by 1,398.6 (1,859.9 → 461.3), more than the 1,200 the
    # call is marked at: its value stops at 0, never below (a short cannot gain more than the
    # premium it owes back), so E = 101,500. MM 0.075·58,500 at the moved index.
    fall = black76_by_hand(True, 65_000, 70_000, 0.5, years) - black76_by_hand(
        True, 58_500, 70_000, 0.5, years
    )
    assert fall > 1_200
    assert Decimal(crash["equity"]) == Decimal("101500")
    assert Decimal(crash["maintenance_margin"]) == Decimal("4387.5")


async def test_the_overview_counts_the_option_at_its_mark(admin: Api) -> None:
    await _short_call_desk(admin)
    overview = await admin.ok("GET", "/v1/risk/overview")
    row = next(r for r in overview["subaccounts"] if r["subaccount_id"] == "sub-cross")
    assert Decimal(row["equity"]) == Decimal("100300")
    assert Decimal(row["maintenance_margin"]) == Decimal("4875")


async def test_an_option_orders_notional_for_limits_is_delta_adjusted(admin: Api) -> None:
    await _short_call_desk(admin)
    await admin.ok(
        "PUT",
        f"/v1/books/{CALL}",
        json={"bids": [["1150", "10"]], "asks": [["1250", "10"]], "ts": _in(0)},
    )
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_order_notional": "5000"})
    delta = black76_delta_by_hand(True, 65_000, 70_000, 0.5, 30 / 365)

    async def buy(size: str) -> dict[str, Any]:
        order = {"instrument": CALL, "side": "buy", "size": size, "type": "market"}
        return await admin.ok(
            "POST", "/v1/pretrade/check", json={"subaccount_id": "sub-cross", "orders": [order]}
        )

    # 0.3 calls cost 375 of premium, but their notional is 0.3 · Δ · 65,000 ≈ 6,397 > 5,000.
    rejected = await buy("0.3")
    [cap] = [r for r in rejected["reasons"] if r["code"] == "MAX_ORDER_NOTIONAL"]
    assert float(cap["value"]) == pytest.approx(0.3 * delta * 65_000, abs=2.0)
    # 0.2: ≈ 4,265, within the cap.
    assert (await buy("0.2"))["decision"] == "accept"


async def test_a_rising_call_raises_a_margin_call_on_its_writer(admin: Api) -> None:
    # 10,000 USDC: after the sale E = 11,500 − 1,200 = 10,300 against MM 4,875 (ratio 0.47).
    await _short_call_desk(admin, usdc="10000")
    assert (await admin.ok("GET", "/v1/margin-calls", params={"status": "open"}))[
        "margin_calls"
    ] == []
    # The call marked 7,000: E = 11,500 − 7,000 = 4,500 ≤ MM 4,875 (ratio 1.083).
    await marks(admin, {CALL: "7000"}, **{CALL: {"iv": "0.5"}})
    calls = (await admin.ok("GET", "/v1/margin-calls", params={"status": "open"}))["margin_calls"]
    liquidation = next(c for c in calls if c["level"] == "liquidation")
    assert liquidation["subaccount_id"] == "sub-cross"
    assert liquidation["shortfall"] == "375"  # MM − E = 4,875 − 4,500
    assert liquidation["ratio"] == pytest.approx(4_875 / 4_500, rel=1e-6)


async def test_max_size_of_a_call_is_bounded_by_its_margin(admin: Api) -> None:
    # 10,000 USDC, nothing held; a market sell walks a deep bid at 1,150 (no fee).
    await desk(admin)
    await admin.ok("PUT", f"/v1/instruments/{CALL}", json=_call())
    await deposit(admin, "sub-cross", "10000")
    await marks(admin, {"BTC": "65000", CALL: "1200"}, **{CALL: {"iv": "0.5"}})
    await admin.ok(
        "PUT",
        f"/v1/books/{CALL}",
        json={"bids": [["1150", "1000"]], "asks": [["1250", "1000"]], "ts": _in(0)},
    )
    found = await admin.ok(
        "POST",
        "/v1/pretrade/max-size",
        json={"subaccount_id": "sub-cross", "instrument": CALL, "side": "sell", "type": "market"},
    )
    # Selling q calls at 1,150: E = 10,000 + 1,150·q − 1,200·q = 10,000 − 50·q and
    # IM = 6,500·q, so F ≥ 0 while 6,550·q ≤ 10,000: q ≤ 1.5267 → 1.52 in lots of 0.01.
    assert found["size"] == "1.52"
    assert found["binding"] == "INSUFFICIENT_MARGIN"


async def test_the_index_is_judged_by_the_options_own_staleness(admin: Api) -> None:
    # The option goes stale after 2 s; BTC's index (default 5 s) was posted 3 s ago: fresh for
    # BTC, stale for an order in this option.
    await _call_with_an_aged_index(admin, 3, stale_after_s="2")
    assert (await admin.ok("GET", "/v1/marks/BTC"))["status"] == "fresh"
    order = {
        "subaccount_id": "sub-cross",
        "orders": [{"instrument": CALL, "side": "sell", "size": "0.1", "type": "market"}],
    }
    check = await admin.ok("POST", "/v1/pretrade/check", json=order)
    assert check["decision"] == "reject"
    assert [r["message"] for r in check["reasons"] if r["code"] == "STALE_MARK"] == [
        "BTC index mark is stale"
    ]


async def test_buying_back_the_call_pays_its_premium_and_reports_the_pnl(admin: Api) -> None:
    await _short_call_desk(admin)
    recorded = await admin.ok(
        "POST", "/v1/fills", json={"fills": [fill("f-2", "buy", "1", "1000", instrument=CALL)]}
    )
    # Cash: 100,000 + 1,500 received − 1,000 paid. The realised PnL, 1 · (1,500 − 1,000) =
    # 500, is recorded for reporting: the premiums already moved the cash, it is not added.
    balances = await admin.ok("GET", "/v1/subaccounts/sub-cross/balances")
    assert Decimal(balances["balances"]["USDC"]) == Decimal("100500")
    [closing] = recorded["fills"]
    assert Decimal(closing["realized_pnl"]) == Decimal("500")


async def test_the_value_of_a_long_put_cannot_be_withdrawn(admin: Api) -> None:
    await desk(admin)
    await admin.ok("PUT", "/v1/instruments/BTC-P60K", json=_call(option_type="put", strike="60000"))
    await deposit(admin, "sub-cross", "10000")
    await marks(
        admin, {"BTC": "65000", "BTC-PERP": "65000", "BTC-P60K": "2000"},
        **{"BTC-P60K": {"iv": "0.5"}},
    )  # fmt: skip
    await admin.ok(
        "POST",
        "/v1/fills",
        json={
            "fills": [
                fill("p-1", "buy", "1", "2000", instrument="BTC-P60K"),
                fill("p-2", "buy", "0.1", "65000"),
            ]
        },
    )
    # 8,000 USDC, the put worth 2,000, 0.1 BTC-PERP at its entry (IM 10 % · 6,500 = 650):
    # E = 10,000, W = E − 2,000 (the long put's value) − 650 = 7,350, under the balance.
    summary = (await admin.ok("GET", "/v1/subaccounts/sub-cross/margin"))["summary"]
    assert Decimal(summary["equity"]) == 10000
    assert Decimal(summary["withdrawable"]) == Decimal("7350")

    async def withdraw(amount: str) -> Any:
        return await admin.post(
            "/v1/subaccounts/sub-cross/transfers",
            json={"transfer_id": f"w-{amount}", "asset": "USDC", "amount": amount,
                  "kind": "withdrawal"},
        )  # fmt: skip

    assert (await withdraw("7350.01")).status_code == 409
    assert (await withdraw("7350")).status_code in (200, 201)
