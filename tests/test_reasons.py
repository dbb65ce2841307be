"""Reasons a desk can act on (api.md, Pre-trade check): every reason of a numeric rule carries
``value`` (what the basket would make the measured quantity) and ``limit`` (what the rule
allows) — money and sizes as decimal strings, ratios and counts as numbers — and
``INSUFFICIENT_MARGIN`` carries ``shortfall``, the smallest deposit that lets the basket pass.

By hand, as tests/test_pretrade.py: BTC-PERP IM 10 %, taker 0.05 %, maker 0.02 %, lot 0.001,
tick 0.5, band 5 %; mark 60,000; asks 60,010 ×1, 60,020 ×1, 60,040 ×2; 20,000 USDC.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks
from tests.test_pretrade import _book, check, order

SUB, ACCT = "/v1/subaccounts/sub-cross/limits", "/v1/accounts/acct-1/limits"


@pytest.fixture
async def trader(admin: Api) -> Api:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000"})
    await _book(admin)
    return admin


def _only(result: dict[str, Any]) -> dict[str, Any]:
    assert result["decision"] == "reject" and len(result["reasons"]) == 1, result["reasons"]
    reason: dict[str, Any] = result["reasons"][0]
    return reason


@pytest.mark.parametrize(
    ("limits", "orders", "code", "value", "limit"),
    [
        (None, [order(size="0.0015", limit_price="60000")], "LOT_SIZE", "0.0015", "0.001"),
        (None, [order(size="0.1", limit_price="60000.3")], "TICK_SIZE", "60000.3", "0.5"),
        # |63,500 − 60,000| / 60,000 = 0.058333… against the 0.05 band.
        (None, [order(size="0.1", limit_price="63500")], "PRICE_BAND", 3500 / 60000, 0.05),
        # 0.1 filled at 60,010: 6,001.
        ((SUB, {"max_order_notional": "5000"}), [order(size="0.1")], "MAX_ORDER_NOTIONAL",
         "6001", "5000"),
        # Long 1 marked at 60,000.
        ((SUB, {"max_position_notional": "50000"}), [order(size="1")], "MAX_POSITION_NOTIONAL",
         "60000", "50000"),
        ((SUB, {"max_underlying_notional": "50000"}), [order(size="1")],
         "MAX_UNDERLYING_NOTIONAL", "60000", "50000"),
        ((SUB, {"max_gross_notional": "50000"}), [order(size="1")], "MAX_GROSS_NOTIONAL",
         "60000", "50000"),
        ((ACCT, {"max_gross_notional": "50000"}), [order(size="1")], "ACCOUNT_LIMIT",
         "60000", "50000"),
        # 60,000 / (20,000 − 30.005 fee − 10 unrealised at 60,010 vs 60,000) = 3.00601…
        ((SUB, {"max_leverage": "2"}), [order(size="1")], "MAX_LEVERAGE",
         60000 / 19959.995, 2.0),
    ],
)  # fmt: skip
async def test_each_numeric_rule_says_by_how_much(
    trader: Api,
    limits: tuple[str, dict[str, Any]] | None,
    orders: list[dict[str, Any]],
    code: str,
    value: str | float,
    limit: str | float,
) -> None:
    if limits is not None:
        await trader.ok("PUT", limits[0], json=limits[1])
    reason = _only(await check(trader, *orders))
    assert reason["code"] == code
    if isinstance(value, float):
        assert isinstance(reason["value"], float) and isinstance(reason["limit"], float)
        assert (reason["value"], reason["limit"]) == (pytest.approx(value), pytest.approx(limit))
    else:
        assert (reason["value"], reason["limit"]) == (value, limit)
    assert reason["shortfall"] is None


async def test_counts_are_numbers(trader: Api) -> None:
    await trader.ok("PUT", SUB, json={"max_open_orders": 1})
    resting = order(size="0.1", limit_price="60000")
    await check(trader, {**resting, "client_order_id": "r1"}, reserve=True)
    second = _only(await check(trader, {**resting, "client_order_id": "r2"}, reserve=True))
    assert (second["code"], second["value"], second["limit"]) == ("MAX_OPEN_ORDERS", 2, 1)
    await trader.ok("PUT", SUB, json={"max_order_rate": 2})
    # r1 and r2's check were counted this second (r2 was rejected: taken back); r1 + this = 2,
    # so one more what-if passes, the next makes 3 > 2.
    await check(trader, resting)
    rate = _only(await check(trader, resting))
    assert (rate["code"], rate["value"], rate["limit"]) == ("ORDER_RATE", 3, 2)


async def test_the_daily_loss_says_how_much_was_lost(trader: Api) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).isoformat()
    fills = [fill("l1", "buy", "1", "60500", ts=today), fill("l2", "sell", "1", "60000", ts=today)]
    await trader.ok("POST", "/v1/fills", json={"fills": fills})
    await trader.ok("PUT", SUB, json={"max_daily_loss": "100"})
    # Realised today 1 · (60,000 − 60,500) = −500; the order rests at the mark (no open PnL).
    loss = _only(await check(trader, order(size="0.1", limit_price="60000")))
    assert (loss["code"], loss["value"], loss["limit"]) == ("LOSS_LIMIT", "500", "100")


async def test_insufficient_margin_names_the_deposit_that_lets_the_basket_pass(
    trader: Api,
) -> None:
    """3.4 resting at 60,000: notional 204,000, IM 20,400; maker fee 0.0002 · 204,000 = 40.8;
    equity after 20,000 − 40.8 = 19,959.2; short by 20,400 − 19,959.2 = 440.8."""
    basket = order(size="3.4", limit_price="60000")
    reason = _only(await check(trader, basket))
    assert reason["code"] == "INSUFFICIENT_MARGIN"
    assert (reason["value"], reason["limit"], reason["shortfall"]) == ("20400", "19959.2", "440.8")
    # One unit of the settlement asset's precision (6 places) less than the shortfall: still
    # short, by exactly that unit; then that unit: accepted.
    await deposit(trader, "sub-cross", "440.799999")
    almost = _only(await check(trader, basket))
    assert (almost["code"], almost["shortfall"]) == ("INSUFFICIENT_MARGIN", "0.000001")
    await deposit(trader, "sub-cross", "0.000001")
    assert (await check(trader, basket))["decision"] == "accept"


async def test_isolated_shortfall_counts_the_allocation_and_the_fee(admin: Api) -> None:
    """Isolated, 1,000 free. A market buy of 0.2 fills at 60,010: fee 0.0005 · 12,002 = 6.001.
    The allocation is valued at the fill price (app/accounts/isolated.py, isolated_allocation): IM_i
    10 % · 0.2 · 60,010 = 1,200.2 and u_i = 0 there, so 1,200.2 moves in, plus the fee:
    1,206.201 against 1,000 free — short by 206.201."""
    await desk(admin, modes=("isolated",))
    await deposit(admin, "sub-isolated", "1000")
    await marks(admin, {"BTC-PERP": "60000"})
    await _book(admin)
    basket = order(size="0.2")
    reason = _only(await check(admin, basket, subaccount="sub-isolated"))
    assert reason["code"] == "INSUFFICIENT_MARGIN"
    assert (reason["value"], reason["limit"], reason["shortfall"]) == (
        "1206.201",
        "1000",
        "206.201",
    )
    await deposit(admin, "sub-isolated", "206.201")
    assert (await check(admin, basket, subaccount="sub-isolated"))["decision"] == "accept"
