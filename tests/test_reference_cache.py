"""Reference data (instruments, assets, risk parameters) is cached in each process, and a change
made through any process is seen by the very next request of every other (app/core/reference.py).

Two real server processes on one database. By hand (BTC-PERP, contract size 1, IM 10 %, no
book posted, so a limit order fills at its limit price 60,000):

- buy 0.1 at 60,000: notional 6,000; taker fee 0.0005 · 6,000 = 3; IM 600.
- with taker fee 0.001: fee 6.   With a 20 % initial margin tier: IM 1,200.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.conftest import Api
from tests.factories import BTC_PERP, deposit, desk, fill, marks

ORDER = {"instrument": "BTC-PERP", "side": "buy", "size": "0.1", "type": "limit",
         "limit_price": "60000"}  # fmt: skip


async def _check(api: Api, order: dict[str, Any] = ORDER) -> dict[str, Any]:
    body: dict[str, Any] = await api.ok(
        "POST", "/v1/pretrade/check", json={"subaccount_id": "sub-cross", "orders": [order]}
    )
    return body


async def test_an_instrument_changed_on_one_process_is_used_by_the_next_check_on_the_other(
    apis: tuple[Api, Api],
) -> None:
    a, b = apis
    await desk(a)
    await deposit(a, "sub-cross", "10000")
    await marks(a, {"BTC-PERP": "60000"})
    first = await _check(b)  # B has now loaded and cached the reference data
    assert Decimal(first["executions"][0]["fee"]) == 3
    assert Decimal(first["after"]["initial_margin"]) == 600

    await a.ok(
        "PUT",
        "/v1/instruments/BTC-PERP",
        json={
            **BTC_PERP,
            "taker_fee_rate": "0.001",
            "margin_tiers": [{"notional_floor": "0", "initial_margin_fraction": "0.2"}],
        },
    )
    second = await _check(b)
    assert Decimal(second["executions"][0]["fee"]) == 6
    assert Decimal(second["after"]["initial_margin"]) == 1200


async def test_a_tier_change_reprices_the_book_before_the_basket_at_once(
    apis: tuple[Api, Api],
) -> None:
    """A held position of 1 BTC at the mark 60,000: IM 10 % · 60,000 = 6,000 before the basket;
    after the tier moves to 20 %, 12,000 — though the subaccount itself has not changed."""
    a, b = apis
    await desk(a)
    await deposit(a, "sub-cross", "20000")
    await a.ok("POST", "/v1/fills", json={"fills": [fill("held-1", "buy", "1", "60000")]})
    await marks(a, {"BTC-PERP": "60000"})
    for _ in range(2):  # B keeps what it computed of this state
        assert Decimal((await _check(b))["before"]["initial_margin"]) == 6000

    await a.ok(
        "PUT",
        "/v1/instruments/BTC-PERP",
        json={
            **BTC_PERP,
            "margin_tiers": [{"notional_floor": "0", "initial_margin_fraction": "0.2"}],
        },
    )
    assert Decimal((await _check(b))["before"]["initial_margin"]) == 12000


async def test_an_instrument_created_on_one_process_is_known_at_once_to_the_other(
    apis: tuple[Api, Api],
) -> None:
    a, b = apis
    await desk(a)
    await deposit(a, "sub-cross", "10000")
    sol = {**ORDER, "instrument": "SOL-PERP", "size": "1", "limit_price": "150"}
    unknown = await b.post(
        "/v1/pretrade/check", json={"subaccount_id": "sub-cross", "orders": [sol]}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "orders[0].instrument"

    await a.ok("PUT", "/v1/instruments/SOL-PERP", json={**BTC_PERP, "underlying": "SOL"})
    await marks(a, {"SOL-PERP": "150"})
    known = await _check(b, sol)
    # 1 · 150 = 150 notional: fee 0.0005 · 150 = 0.075, IM 15.
    assert Decimal(known["executions"][0]["fee"]) == Decimal("0.075")
    assert Decimal(known["after"]["initial_margin"]) == 15


async def test_risk_parameters_put_on_one_process_apply_at_once_on_the_other(
    apis: tuple[Api, Api],
) -> None:
    """A market order with no book fills at the mark moved by ``default_slippage`` against the
    taker: 60,000 · (1 + s). With s = 0.01 → 60,600; notional 0.1 · 60,600 = 6,060, fee 3.03."""
    a, b = apis
    await desk(a)
    await deposit(a, "sub-cross", "10000")
    await marks(a, {"BTC-PERP": "60000"})
    market = {"instrument": "BTC-PERP", "side": "buy", "size": "0.1", "type": "market"}
    await _check(b, market)
    parameters = await a.ok("GET", "/v1/risk/parameters")
    await a.ok("PUT", "/v1/risk/parameters", json={**parameters, "default_slippage": 0.01})
    after = await _check(b, market)
    assert Decimal(after["executions"][0]["avg_price"]) == 60600
    assert Decimal(after["executions"][0]["fee"]) == Decimal("3.03")
