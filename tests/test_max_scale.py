"""``POST /v1/pretrade/max-scale`` worked by hand (api.md, Pre-trade check; issue 13).

The basket: buy 2 BTC-PERP limit 60,000 and sell 40 ETH-PERP limit 3,000 — long BTC against
short ETH, 120,000 of notional each side at scale 1. Both limits sit inside their books (best
ask 60,010; best bid 2,999), so both rest whole and count as filled at their limits, at the
marks (60,000 and 3,000): no unrealised PnL; maker fee 0.02 % of notional. IM 10 % of each
leg's notional (cross margin, no netting across underlyings); 20,000 USDC.

Lots: BTC 0.001, ETH 0.01. At scale ``s`` BTC holds ``floor(2000·s)`` lots and ETH
``floor(4000·s)``, so the basket changes at the steps ``s = k / 4000``, where ETH gains a lot
at every ``k`` and BTC at every even one: BTC ``floor(k/2) · 0.001``, ETH ``k · 0.01``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from app.pretrade import scaling
from tests.conftest import Api
from tests.factories import deposit, desk, marks
from tests.test_pretrade import _book, check, codes

MAX_SCALE = "/v1/pretrade/max-scale"


@pytest.fixture
async def trader(admin: Api) -> Api:
    """tests/test_pretrade.py's trader, and an ETH-PERP mark of 3,000 with a fresh book."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000", "ETH-PERP": "3000"})
    await _book(admin)
    now = datetime.now(UTC).isoformat()
    eth_book = {"bids": [["2999", "1000"]], "asks": [["3001", "1000"]], "ts": now}
    await admin.ok("PUT", "/v1/books/ETH-PERP", json=eth_book)
    return admin


def legs(btc: str = "2", eth: str = "40") -> list[dict[str, Any]]:
    return [
        {"instrument": "BTC-PERP", "side": "buy", "size": btc, "type": "limit",
         "limit_price": "60000"},
        {"instrument": "ETH-PERP", "side": "sell", "size": eth, "type": "limit",
         "limit_price": "3000"},
    ]  # fmt: skip


async def max_scale(api: Api, subaccount: str = "sub-cross", **extra: Any) -> Any:
    body = {"subaccount_id": subaccount, "orders": legs(), **extra}
    return await api.ok("POST", MAX_SCALE, json=body)


def sizes(result: dict[str, Any]) -> list[str]:
    return [leg["size"] for leg in result["orders"]]


async def test_a_hedge_scales_until_margin_binds_and_the_check_agrees(trader: Api) -> None:
    """Notional at step k: N = 60,000 · floor(k/2)/1000 + 3,000 · k/100 = 60·floor(k/2) + 30k.
    It passes while IM + fees ≤ equity: 0.1·N ≤ 20,000 − 0.0002·N, i.e. N ≤ 199,600.798….

    - k = 3326 (even, m = 1663): N = 120·1663 = 199,560 — passes;
    - k = 3327 (odd): N = 120·1663 + 30 = 199,590 — passes (ETH alone gained a lot);
    - k = 3328: N = 120·1664 = 199,680 — fails (both legs gain a lot).

    So scale = 3327/4000 = 0.83175: BTC 1.663, ETH 33.27. There IM = 19,959, fees 39.918,
    equity 19,960.082, free collateral 1.082. At 0.832 (BTC 1.664, ETH 33.28): IM 19,968,
    fees 39.936, equity 19,960.064 — short by 7.936."""
    result = await max_scale(trader)
    assert (result["scale"], sizes(result)) == ("0.83175", ["1.663", "33.27"])
    assert [leg["order_index"] for leg in result["orders"]] == [0, 1]
    assert result["binding"] == "INSUFFICIENT_MARGIN"
    [reason] = result["reasons"]
    assert (reason["value"], reason["limit"], reason["shortfall"]) == (
        "19968",
        "19960.064",
        "7.936",
    )
    after = result["after"]
    assert (after["initial_margin"], after["equity"], after["free_collateral"]) == (
        "19959",
        "19960.082",
        "1.082",
    )

    # The check accepts the basket at the answer and rejects it one step up, for that reason.
    at = await check(trader, *legs("1.663", "33.27"))
    assert at["decision"] == "accept"
    assert at["after"]["free_collateral"] == after["free_collateral"]
    above = await check(trader, *legs("1.664", "33.28"))
    assert codes(above) == ["INSUFFICIENT_MARGIN"]
    assert above["reasons"] == result["reasons"]

    # Sent back as max_scale, the answer passes whole.
    again = await max_scale(trader, max_scale=result["scale"])
    assert (again["scale"], again["binding"], again["reasons"]) == ("0.83175", None, [])


async def test_max_scale_itself_passes_so_nothing_binds(trader: Api) -> None:
    """At 0.5: BTC 1, ETH 20; N = 120,000, IM 12,000 + fees 24 ≤ 20,000 − 24."""
    result = await max_scale(trader, max_scale="0.5")
    assert (result["scale"], sizes(result), result["binding"], result["reasons"]) == (
        "0.5",
        ["1", "20"],
        None,
        [],
    )
    assert (result["after"]["initial_margin"], result["after"]["equity"]) == ("12000", "19976")


async def test_a_position_cap_binds_before_margin(trader: Api) -> None:
    """max_position_notional 30,000 per instrument: ETH 3,000 · k/100 ≤ 30,000 → k ≤ 1000, and
    BTC 60,000 · floor(k/2)/1000 ≤ 30,000 → k ≤ 1001. So k = 1000: scale 0.25, BTC 0.5 and
    ETH 10 (30,000 each, at the cap). The next step, 0.25025, gives ETH alone one more lot:
    10.01 · 3,000 = 30,030 > 30,000 — leg 1 binds (margin there: IM 6,003, far from 20,000)."""
    await trader.ok(
        "PUT", "/v1/subaccounts/sub-cross/limits", json={"max_position_notional": "30000"}
    )
    result = await max_scale(trader)
    assert (result["scale"], sizes(result), result["binding"]) == (
        "0.25",
        ["0.5", "10"],
        "MAX_POSITION_NOTIONAL",
    )
    [reason] = result["reasons"]
    assert (reason["order_index"], reason["value"], reason["limit"]) == (1, "30030", "30000")
    assert (await check(trader, *legs("0.5", "10")))["decision"] == "accept"
    assert codes(await check(trader, *legs("0.5", "10.01"))) == ["MAX_POSITION_NOTIONAL"]


async def test_nothing_fits_without_collateral(trader: Api) -> None:
    """other-sub holds nothing. The least basket with every leg a lot is at
    s = max(0.001/2, 0.01/40) = 0.0005: BTC 0.001, ETH 0.02; N = 60 + 60 = 120, IM 12,
    fees 0.024, equity −0.024 — short by 12.024. So scale 0, every leg 0."""
    result = await max_scale(trader, subaccount="other-sub")
    assert (result["scale"], sizes(result), result["binding"]) == (
        "0",
        ["0", "0"],
        "INSUFFICIENT_MARGIN",
    )
    assert result["reasons"][0]["shortfall"] == "12.024"
    assert result["after"]["equity"] == "0"
    assert codes(await check(trader, *legs("0.001", "0.02"), subaccount="other-sub")) == [
        "INSUFFICIENT_MARGIN"
    ]


async def test_a_max_scale_that_leaves_a_leg_without_a_lot_fits_nothing(trader: Api) -> None:
    """At 0.0004 BTC would be 2 · 0.0004 = 0.0008 < one lot of 0.001 (ETH 0.016 holds one):
    a spread without its BTC leg is not the hedge asked for, so nothing fits."""
    result = await max_scale(trader, max_scale="0.0004")
    assert (result["scale"], sizes(result), result["binding"]) == ("0", ["0", "0"], "LOT_SIZE")
    [reason] = result["reasons"]
    assert (reason["order_index"], reason["value"], reason["limit"]) == (0, "0.0008", "0.001")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_scale": "0"}, "max_scale"),
        ({"max_scale": "1001"}, "max_scale"),
        ({"orders": []}, "orders"),
        ({"reserve": True}, "reserve"),
        ({"orders": [{**legs()[0], "size": "0"}]}, "orders[0].size"),
        ({"orders": [{**legs()[0], "limit_price": None}]}, "orders[0].limit_price"),
    ],
)
async def test_bad_requests_name_the_field(trader: Api, change: dict[str, Any], field: str) -> None:
    body = {"subaccount_id": "sub-cross", "orders": legs(), **change}
    response = await trader.post(MAX_SCALE, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_unknown_subaccount_and_instrument_are_problems(trader: Api) -> None:
    missing = await trader.post(MAX_SCALE, json={"subaccount_id": "nope", "orders": legs()})
    assert missing.status_code == 404
    unknown = [legs()[0], {**legs()[1], "instrument": "NOPE"}]
    response = await trader.post(MAX_SCALE, json={"subaccount_id": "sub-cross", "orders": unknown})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "orders[1].instrument"


# --- the search alone (app/pretrade/scaling.py) -----------------------------------------------


def test_a_step_without_a_finite_decimal_is_reported_by_its_shortest_decimal() -> None:
    """One leg of 3 with lot 1: steps at n/3. The answer 1/3 (one lot) lies below the next
    step 2/3; 0.4 is the decimal with the fewest places in [1/3, 2/3) and gives floor(1.2) = 1
    lot, the same basket."""
    assert scaling.as_decimal(Fraction(1, 3), Fraction(2, 3)) == Decimal("0.4")
    # A step with a finite expansion is reported as itself.
    assert scaling.as_decimal(Fraction(3327, 4000), Fraction(3328, 4000)) == Decimal("0.83175")


def test_the_search_finds_the_highest_passing_stretch_the_ladder_sees() -> None:
    """One leg of 100, lot 1: step k at s = k/100, k = 1…100. The check is made to pass only
    on 3…5 and 40…70 (a reducing basket under water: too small fails, too big flips). Plain
    bisection from [1, 100] could end at 5; the ladder probes from the top and brackets the
    upper stretch, so the answer is 70 with 71 failing."""
    ray = scaling.Ray.of([Decimal(100)], [Decimal(1)])
    seen: list[int] = []

    def passes(lots: scaling.Lots) -> bool:
        seen.append(lots[0])
        return 3 <= lots[0] <= 5 or 40 <= lots[0] <= 70

    found = scaling.search(ray, Fraction(1), passes)
    assert (found.answer, found.step) == (Fraction(70, 100), Fraction(71, 100))
    assert len(seen) <= 12, seen
