"""The pre-trade check, worked by hand. BTC-PERP here: IMF 10 %, MMF 5 %, contract 1, tick 0.5,
lot 0.001, taker fee 0.05 %, maker 0.02 %, price band 5 %; the mark is 60,000."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.pretrade.schemas import CheckOut
from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks

ASKS = [["60010", "1"], ["60020", "1"], ["60040", "2"]]
BIDS = [["59990", "1"], ["59980", "1"], ["59960", "2"]]


def order(side: str = "buy", size: str = "1", **extra: Any) -> dict[str, Any]:
    body = {"instrument": "BTC-PERP", "side": side, "size": size, "type": "market"}
    if "limit_price" in extra:
        body["type"] = "limit"
    return {**body, **extra}


async def check(
    api: Api, *orders: dict[str, Any], subaccount: str = "sub-cross", **extra: Any
) -> Any:
    body = {"subaccount_id": subaccount, "orders": list(orders), **extra}
    return await api.ok("POST", "/v1/pretrade/check", json=body)


def codes(result: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in result["reasons"]]


async def _book(api: Api) -> None:
    now = datetime.now(UTC).isoformat()
    await api.ok("PUT", "/v1/books/BTC-PERP", json={"bids": BIDS, "asks": ASKS, "ts": now})


@pytest.fixture
async def trader(admin: Api) -> Api:
    """A funded cross subaccount (20,000 USDC), fresh marks, a fresh three-level book."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000"})
    await _book(admin)
    return admin


async def test_market_order_walks_three_levels(trader: Api) -> None:
    result = await check(trader, order(size="2.5"))
    [execution] = result["executions"]
    # 1 @ 60,010 + 1 @ 60,020 + 0.5 @ 60,040 = 150,050 for 2.5 → average 60,020.
    assert (execution["filled_size"], execution["avg_price"]) == ("2.5", "60020")
    assert (execution["unfilled_size"], execution["book"], execution["price_source"]) == (
        "0",
        "fresh",
        "book",
    )
    # Fee: 150,050 · 0.0005 = 75.025. Slippage: (60,020 − 60,000) / 60,000 = 3.3333 bps.
    assert execution["fee"] == "75.025"
    assert execution["slippage_bps"] == pytest.approx(3.3333, abs=1e-4)
    # After: long 2.5 @ 60,020 marked at 60,000: u = 2.5 · (−20) = −50; balance 20,000 − 75.025;
    # E = 19,874.975; IM = 0.10 · 150,000 = 15,000; F = 4,874.975.
    after = result["after"]
    assert (after["equity"], after["initial_margin"], after["free_collateral"]) == (
        "19874.975",
        "15000",
        "4874.975",
    )
    assert result["before"]["free_collateral"] == "20000"
    [position] = result["positions_after"]
    assert (position["size"], position["entry_price"]) == ("2.5", "60020")
    assert result["decision"] == "accept"
    assert result["marks"]["BTC-PERP"]["status"] == "fresh"


async def test_each_check_reports_its_own_age_of_the_marks(trader: Api) -> None:
    """Checks between two changes share the book they value, but not its ages: a mark's age is
    the time from its newest source to this check, so it grows from one check to the next."""
    first = await check(trader, order(size="0.1"))
    await asyncio.sleep(0.3)
    second = await check(trader, order(size="0.1"))
    first_age = first["marks"]["BTC-PERP"]["age_ms"]
    second_age = second["marks"]["BTC-PERP"]["age_ms"]
    assert second_age - first_age >= 300
    assert second_age < 5_000  # the fixture posted the marks moments ago


async def test_a_mark_goes_stale_between_two_checks_with_nothing_written(admin: Api) -> None:
    """Checks between two writes of the cache share their verdicts of the marks, but only until
    the first of them would change with the time alone: a fresh mark whose sources pass
    stale_after (5 s by default) between two checks fails the second closed."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await _book(admin)
    trader = admin
    nearly_stale = (datetime.now(UTC) - timedelta(seconds=4.3)).isoformat()
    await trader.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                {"symbol": "BTC-PERP", "price": "60000", "source": source, "ts": nearly_stale}
                for source in ("venue", "oracle")
            ]
        },
    )
    fresh = await check(trader, order(size="0.1"))
    assert (fresh["decision"], fresh["marks"]["BTC-PERP"]["status"]) == ("accept", "fresh")
    await asyncio.sleep(1.0)
    stale = await check(trader, order(size="0.1"))
    assert codes(stale) == ["STALE_MARK"]
    assert stale["marks"]["BTC-PERP"]["status"] == "stale"


async def test_the_answer_has_exactly_the_documented_shape(trader: Api) -> None:
    """The check writes its answer by hand (once, as the bytes sent and audited): read back
    through ``CheckOut`` it must lose and gain nothing — a reject with its reasons, and an
    accepted reservation with its id and expiry."""
    rejected = await check(trader, order(size="1000"))
    reserved = await check(
        trader, order(size="0.1", client_order_id="shape-1"), reserve=True, reservation_ttl_s=60
    )
    assert rejected["reasons"] and reserved["expires_at"] is not None
    for answer in (rejected, reserved):
        assert CheckOut.model_validate(answer).model_dump(mode="json") == answer


async def test_a_market_order_past_the_books_depth_is_short_of_liquidity(trader: Api) -> None:
    result = await check(trader, order(size="5"))
    [execution] = result["executions"]
    assert (execution["filled_size"], execution["unfilled_size"]) == ("4", "1")
    # The 4 that do fill already need IM 0.10 · 4 · 60,000 = 24,000 > 20,000 of equity.
    assert codes(result) == ["INSUFFICIENT_LIQUIDITY", "INSUFFICIENT_MARGIN"]


async def test_a_limit_stops_inside_the_book_and_the_rest_rests(trader: Api) -> None:
    result = await check(trader, order(size="3", limit_price="60020"))
    [execution] = result["executions"]
    # Fills 1 @ 60,010 + 1 @ 60,020 (avg 60,015); 60,040 is past the limit; 1 rests at 60,020.
    assert (execution["filled_size"], execution["avg_price"], execution["unfilled_size"]) == (
        "2",
        "60015",
        "1",
    )
    # Taker 120,030 · 0.0005 = 60.015, plus maker on the resting 60,020 · 0.0002 = 12.004.
    assert execution["fee"] == "72.019"
    # Margin counts the resting part as filled: long 3, IM = 0.10 · 3 · 60,000 = 18,000.
    assert result["positions_after"][0]["size"] == "3"
    assert result["after"]["initial_margin"] == "18000"
    assert result["decision"] == "accept"


async def test_an_ioc_remainder_is_cancelled_not_rested(trader: Api) -> None:
    result = await check(trader, order(size="3", limit_price="60020", time_in_force="ioc"))
    [execution] = result["executions"]
    assert (execution["filled_size"], execution["unfilled_size"], execution["fee"]) == (
        "2",
        "1",
        "60.015",
    )
    assert result["positions_after"][0]["size"] == "2"
    assert result["decision"] == "accept"


async def test_without_a_fresh_book_limits_fill_at_the_limit_and_markets_at_the_mark(
    admin: Api,
) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000"})
    limit = await check(admin, order(size="1", limit_price="59990"))
    assert limit["executions"][0]["avg_price"] == "59990"
    assert (limit["executions"][0]["book"], limit["executions"][0]["price_source"]) == (
        "missing",
        "limit",
    )
    market = await check(admin, order(size="1"))
    # mark · (1 + default_slippage) = 60,000 · 1.005 = 60,300; 50 bps against the buyer.
    assert market["executions"][0]["avg_price"] == "60300"
    assert market["executions"][0]["price_source"] == "mark"
    assert market["executions"][0]["slippage_bps"] == pytest.approx(50)


@pytest.mark.parametrize(
    ("setup", "orders", "expected"),
    [
        ("none", [order(size="0.0015", limit_price="60000")], "LOT_SIZE"),
        ("none", [order(size="0.1", limit_price="60000.3")], "TICK_SIZE"),
        ("none", [order(size="0.1", limit_price="63500")], "PRICE_BAND"),
        ("none", [order(size="0.5", limit_price="60040", time_in_force="fok")], "none"),
        (
            "thin",
            [order(size="2.5", limit_price="60020", time_in_force="fok")],
            "INSUFFICIENT_LIQUIDITY",
        ),
        # Rests 3.4 @ 60,000: IM 20,400 > equity 20,000 − 40.8 maker fee.
        ("none", [order(size="3.4", limit_price="60000")], "INSUFFICIENT_MARGIN"),
        ("halted", [order(size="0.1")], "HALTED"),
        ("reduce_only_state", [order(size="0.1")], "REDUCE_ONLY"),
        ("none", [order(size="0.1", reduce_only=True)], "REDUCE_ONLY"),
        ("order_cap", [order(size="0.1")], "MAX_ORDER_NOTIONAL"),
        ("position_cap", [order(size="1")], "MAX_POSITION_NOTIONAL"),
        ("underlying_cap", [order(size="1")], "MAX_UNDERLYING_NOTIONAL"),
        ("gross_cap", [order(size="1")], "MAX_GROSS_NOTIONAL"),
        ("leverage_cap", [order(size="1")], "MAX_LEVERAGE"),
        ("strategy_cap", [order(size="1")], "STRATEGY_LIMIT"),
        ("account_cap", [order(size="1")], "ACCOUNT_LIMIT"),
    ],
)
async def test_each_rule_alone(
    trader: Api, setup: str, orders: list[dict[str, Any]], expected: str
) -> None:
    sub, acct = "/v1/subaccounts/sub-cross/limits", "/v1/accounts/acct-1/limits"
    state = {"scope": "instrument", "id": "BTC-PERP", "reason": "test"}
    setups: dict[str, tuple[str, str, dict[str, Any]]] = {
        "halted": ("PUT", "/v1/trading-state", {**state, "state": "halted"}),
        "reduce_only_state": ("PUT", "/v1/trading-state", {**state, "state": "reduce_only"}),
        # 0.1 · 60,010 = 6,001 > 5,000.
        "order_cap": ("PUT", sub, {"max_order_notional": "5000"}),
        # Long 1 marked at 60,000 > 50,000 (and likewise net BTC, gross).
        "position_cap": ("PUT", sub, {"max_position_notional": "50000"}),
        "underlying_cap": ("PUT", sub, {"max_underlying_notional": "50000"}),
        "gross_cap": ("PUT", sub, {"max_gross_notional": "50000"}),
        # 60,000 / (20,000 − 30.005 fee − 10 of slippage) ≈ 3.0 > 2.
        "leverage_cap": ("PUT", sub, {"max_leverage": "2"}),
        "strategy_cap": (
            "PUT",
            acct,
            {"strategy_limits": {"basis": {"max_gross_notional": "50000"}}},
        ),
        "account_cap": ("PUT", acct, {"max_gross_notional": "50000"}),
    }
    if setup == "strategy_cap":
        await trader.ok("PATCH", "/v1/subaccounts/sub-cross", json={"strategy": "basis"})
    if setup in setups:
        method, url, body = setups[setup]
        await trader.ok(method, url, json=body)
    result = await check(trader, *orders)
    if expected == "none":
        assert (result["decision"], codes(result)) == ("accept", [])
    else:
        assert (result["decision"], codes(result)) == ("reject", [expected])


async def test_stale_and_deviating_marks_fail_closed_for_risk_adding_legs(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await admin.ok(
        "PUT",
        "/v1/subaccounts/sub-cross/snapshot",
        json={
            "balances": {"USDC": "20000"},
            "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
        },
    )
    old = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
    await admin.ok(
        "POST",
        "/v1/marks",
        json={"marks": [{"symbol": "BTC-PERP", "price": "60000", "source": "a", "ts": old}]},
    )
    adding = await check(admin, order(size="0.1", limit_price="60000"))
    assert codes(adding) == ["STALE_MARK"]
    reducing = await check(admin, order(side="sell", size="0.1", limit_price="60000"))
    assert reducing["decision"] == "accept"
    # 60,000 (fresh) for 0.5 s, then 66,000: about 10 % from the TWAP (≈ 60,000).
    await marks(admin, {"BTC-PERP": "60000"})
    await asyncio.sleep(0.5)
    await marks(admin, {"BTC-PERP": "66000"})
    deviating = await check(admin, order(size="0.1", limit_price="66000"))
    assert codes(deviating) == ["ORACLE_DEVIATION"]


async def test_a_basket_lists_every_rule_it_breaks(trader: Api) -> None:
    result = await check(
        trader,
        order(size="0.0015", limit_price="60000.3"),
        order(size="0.1", limit_price="70000"),
        order(size="10", limit_price="60000"),
    )
    assert result["decision"] == "reject"
    assert {(r["code"], r["order_index"]) for r in result["reasons"]} == {
        ("LOT_SIZE", 0),
        ("TICK_SIZE", 0),
        ("PRICE_BAND", 1),
        ("INSUFFICIENT_MARGIN", None),
    }


async def test_a_reducing_basket_passes_under_water_but_never_when_halted(admin: Api) -> None:
    await desk(admin)
    await admin.ok(
        "PUT",
        "/v1/subaccounts/sub-cross/snapshot",
        json={
            "balances": {"USDC": "1000"},
            "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
        },
    )
    await marks(admin, {"BTC-PERP": "50000"})
    # E = 1,000 + (50,000 − 60,000) = −9,000: under water.
    margin = await admin.ok("GET", "/v1/subaccounts/sub-cross/margin")
    assert margin["summary"]["equity"] == "-9000"
    reduce = await check(admin, order(side="sell", size="0.5", limit_price="50000"))
    assert reduce["decision"] == "accept"
    grow = await check(admin, order(side="buy", size="0.1", limit_price="50000"))
    assert codes(grow) == ["INSUFFICIENT_MARGIN"]
    await admin.ok(
        "PUT", "/v1/trading-state", json={"scope": "global", "state": "halted", "reason": "x"}
    )
    halted = await check(admin, order(side="sell", size="0.5", limit_price="50000"))
    assert codes(halted) == ["HALTED"]


async def test_a_halt_applies_exactly_to_its_scope(trader: Api) -> None:
    """An account, subaccount or instrument halt stops the orders it governs and no others:
    acct-1 owns sub-cross, acct-2 owns other-sub (both funded, 20,000 USDC)."""
    await deposit(trader, "other-sub", "20000")
    small = order(size="0.1", limit_price="60000")
    eth = order(instrument="ETH-PERP", size="1", limit_price="3000")
    await marks(trader, {"BTC-PERP": "60000", "ETH-PERP": "3000"})

    async def halt(scope: str, ident: str, state: str) -> None:
        body = {"scope": scope, "id": ident, "state": state, "reason": "scope test"}
        await trader.ok("PUT", "/v1/trading-state", json=body)

    await halt("account", "acct-1", "halted")
    assert codes(await check(trader, small)) == ["HALTED"]
    assert codes(await check(trader, small, subaccount="other-sub")) == []
    await halt("account", "acct-1", "active")

    await halt("subaccount", "other-sub", "halted")
    assert codes(await check(trader, small)) == []
    assert codes(await check(trader, small, subaccount="other-sub")) == ["HALTED"]
    await halt("subaccount", "other-sub", "active")

    await halt("instrument", "ETH-PERP", "halted")
    assert codes(await check(trader, small)) == []
    assert codes(await check(trader, eth)) == ["HALTED"]
    assert codes(await check(trader, eth, subaccount="other-sub")) == ["HALTED"]


async def test_loss_limit_counts_todays_realised_and_open_pnl(trader: Api) -> None:
    today = datetime.now(UTC).isoformat()
    fills = [fill("l1", "buy", "1", "60500", ts=today), fill("l2", "sell", "1", "60000", ts=today)]
    await trader.ok("POST", "/v1/fills", json={"fills": fills})
    # Realised today: 1 · (60,000 − 60,500) = −500 > the 100 allowed.
    await trader.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_daily_loss": "100"})
    assert codes(await check(trader, order(size="0.1", limit_price="60000"))) == ["LOSS_LIMIT"]


async def test_open_orders_and_order_rate_caps(trader: Api) -> None:
    await trader.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_open_orders": 1})
    first = await check(
        trader, order(size="0.1", limit_price="60000", client_order_id="r1"), reserve=True
    )
    assert first["decision"] == "accept"
    second = await check(
        trader, order(size="0.1", limit_price="60000", client_order_id="r2"), reserve=True
    )
    assert codes(second) == ["MAX_OPEN_ORDERS"]
    # A what-if check reserves nothing, so the open-order cap does not apply to it.
    assert (await check(trader, order(size="0.1", limit_price="60000")))["decision"] == "accept"
    await trader.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_order_rate": 2})
    # Two orders were accepted within this second already (r1 and the what-if).
    assert codes(await check(trader, order(size="0.1", limit_price="60000"))) == ["ORDER_RATE"]


async def test_a_reservation_counts_until_released_and_a_replay_reserves_nothing(
    trader: Api,
) -> None:
    # 2 @ 60,000 (limit, the book's asks are above: it rests): IM 12,000 + maker fee 24.
    legs = order(size="2", limit_price="60000", client_order_id="o-1")
    first = await check(trader, legs, reserve=True)
    assert first["decision"] == "accept" and first["reservation_id"]
    replay = await check(trader, legs, reserve=True)
    assert replay == first
    listed = await trader.ok("GET", "/v1/subaccounts/sub-cross/reservations")
    assert [r["status"] for r in listed["reservations"]] == ["active"]
    # The next check sees the reservation as filled: free collateral before is
    # 20,000 − 24 − 12,000 = 7,976, and another 2 (12,000 more) no longer fits.
    following = await check(trader, order(size="2", limit_price="60000"))
    assert following["before"]["free_collateral"] == "7976"
    assert following["before"]["reserved_initial_margin"] == "12000"
    assert codes(following) == ["INSUFFICIENT_MARGIN"]
    conflict = await trader.post(
        "/v1/pretrade/check",
        json={"subaccount_id": "sub-cross", "orders": [{**legs, "size": "3"}], "reserve": True},
    )
    assert conflict.status_code == 409
    await trader.ok("DELETE", f"/v1/reservations/{first['reservation_id']}")
    assert (await check(trader, order(size="2", limit_price="60000")))["decision"] == "accept"


async def test_fills_consume_a_reservation(trader: Api) -> None:
    reserved = await check(
        trader, order(size="2", limit_price="60000", client_order_id="o-9"), reserve=True
    )
    partial = fill(
        "f1", "buy", "0.5", "60000", client_order_id="o-9", ts=datetime.now(UTC).isoformat()
    )
    await trader.ok("POST", "/v1/fills", json={"fills": [partial]})
    [reservation] = (await trader.ok("GET", "/v1/subaccounts/sub-cross/reservations"))[
        "reservations"
    ]
    assert (reservation["status"], reservation["legs"][0]["size"]) == ("active", "1.5")
    rest = fill(
        "f2", "buy", "1.5", "60000", client_order_id="o-9", ts=datetime.now(UTC).isoformat()
    )
    await trader.ok("POST", "/v1/fills", json={"fills": [rest]})
    [reservation] = (await trader.ok("GET", "/v1/subaccounts/sub-cross/reservations"))[
        "reservations"
    ]
    assert reservation["status"] == "consumed"
    assert reservation["reservation_id"] == reserved["reservation_id"]


async def test_a_reservation_expires_with_its_ttl(trader: Api) -> None:
    await check(
        trader,
        order(size="3", limit_price="60000", client_order_id="t1"),
        reserve=True,
        reservation_ttl_s=1,
    )
    assert codes(await check(trader, order(size="1", limit_price="60000"))) == [
        "INSUFFICIENT_MARGIN"
    ]
    await asyncio.sleep(1.2)
    assert (await check(trader, order(size="1", limit_price="60000")))["decision"] == "accept"
    [reservation] = (await trader.ok("GET", "/v1/subaccounts/sub-cross/reservations"))[
        "reservations"
    ]
    assert reservation["status"] == "expired"


async def test_max_size_under_a_position_cap(trader: Api) -> None:
    await trader.ok(
        "PUT", "/v1/subaccounts/sub-cross/limits", json={"max_position_notional": "30000"}
    )
    body = {
        "subaccount_id": "sub-cross",
        "instrument": "BTC-PERP",
        "side": "buy",
        "type": "limit",
        "limit_price": "60000",
    }
    result = await trader.ok("POST", "/v1/pretrade/max-size", json=body)
    # 30,000 / 60,000 = 0.5 BTC exactly; 0.501 would be 30,060.
    assert (result["size"], result["binding"]) == ("0.5", "MAX_POSITION_NOTIONAL")


async def test_max_size_across_a_tier_boundary(admin: Api) -> None:
    await desk(admin)
    tiered = {
        "kind": "perpetual",
        "underlying": "XYZ",
        "tick_size": "1",
        "lot_size": "1",
        "margin_tiers": [
            {"notional_floor": "0", "initial_margin_fraction": "0.1"},
            {"notional_floor": "100000", "initial_margin_fraction": "0.2"},
        ],
    }
    await admin.ok("PUT", "/v1/instruments/XYZ-PERP", json=tiered)
    await deposit(admin, "sub-cross", "15000")
    await marks(admin, {"XYZ-PERP": "1000"})
    body = {
        "subaccount_id": "sub-cross",
        "instrument": "XYZ-PERP",
        "side": "buy",
        "type": "limit",
        "limit_price": "1000",
    }
    result = await admin.ok("POST", "/v1/pretrade/max-size", json=body)
    # IM(N) = 0.1 · 100,000 + 0.2 · (N − 100,000) ≤ 15,000 → N ≤ 125,000 → 125 lots of 1 @ 1,000.
    assert (result["size"], result["binding"]) == ("125", "INSUFFICIENT_MARGIN")
    assert result["after"]["free_collateral"] == "0"


async def test_unknown_subaccount_and_instrument_are_problems_not_rejects(trader: Api) -> None:
    missing = await trader.post(
        "/v1/pretrade/check", json={"subaccount_id": "nope", "orders": [order()]}
    )
    assert missing.status_code == 404
    unknown = await trader.post(
        "/v1/pretrade/check",
        json={"subaccount_id": "sub-cross", "orders": [order(instrument="NOPE")]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "orders[0].instrument"


async def test_the_margin_view_and_withdrawals_count_reservations(trader: Api) -> None:
    # Regression: GET …/margin answered 500 when a reservation was on an instrument the
    # subaccount held no position in, and withdrawals could take reserved collateral.
    reserved = await check(
        trader, order(size="2", limit_price="60000", client_order_id="v1"), reserve=True
    )
    assert reserved["decision"] == "accept"
    summary = (await trader.ok("GET", "/v1/subaccounts/sub-cross/margin"))["summary"]
    # Reserved long 2 @ 60,000: IM 12,000; maker fee 24 leaves E = 19,976; F = 7,976.
    assert (summary["reserved_initial_margin"], summary["free_collateral"]) == ("12000", "7976")
    transfer = {"transfer_id": "w1", "asset": "USDC", "amount": "7976.000001", "kind": "withdrawal"}
    refused = await trader.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    assert refused.status_code == 409
    transfer["amount"] = "7976"
    assert (
        await trader.post("/v1/subaccounts/sub-cross/transfers", json=transfer)
    ).status_code == 201


async def test_reservations_page_newest_first_with_a_cursor(trader: Api) -> None:
    ids = []
    for n in range(3):
        result = await check(trader, order(size="0.01", client_order_id=f"page-{n}"), reserve=True)
        ids.append(result["reservation_id"])
    url = "/v1/subaccounts/sub-cross/reservations"
    first = await trader.ok("GET", url, params={"limit": 2})
    assert [r["reservation_id"] for r in first["reservations"]] == [ids[2], ids[1]]
    second = await trader.ok("GET", url, params={"limit": 2, "cursor": first["next_cursor"]})
    assert [r["reservation_id"] for r in second["reservations"]] == [ids[0]]
    assert second["next_cursor"] is None
    bad = await trader.get(url, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_the_book_before_is_valued_at_the_marks_each_check_sees(trader: Api) -> None:
    """The evaluation of the book before a basket is kept between checks and patched when the
    marks move: 1 BTC long from 60,000, the mark at 60,000 then 61,000. By hand (5 % MM):
    before the move, PnL 0, MM 3,000, equity 20,000; after it, PnL 1,000, MM 3,050, equity
    21,000 — and back at 60,000, the first figures again."""
    await trader.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "1", "60000")]})
    expected = {
        "60000": ("0", "3000", "20000"),
        "61000": ("1000", "3050", "21000"),
    }
    for price in ("60000", "61000", "60000"):
        await marks(trader, {"BTC-PERP": price})
        before = (await check(trader, order(size="0.01")))["before"]
        pnl, maintenance, equity = expected[price]
        assert (before["unrealized_pnl"], before["maintenance_margin"], before["equity"]) == (
            pnl,
            maintenance,
            equity,
        ), price
