"""Per-symbol caps (issue 13, api.md, limits): ``max_position_notional`` and
``max_underlying_notional`` as ``{value?, warn_at?, by_symbol?: {SYMBOL: value | {value,
warn_at}}}`` — a symbol's own entry replaces ``value`` for it, a symbol with neither is uncapped,
and each symbol past its ``warn_at`` has its own ``limit`` margin call.

By hand, as tests/test_pretrade.py: BTC-PERP IM 10 %, taker 0.05 %, mark 60,000, asks
60,010 ×1, 60,020 ×1, 60,040 ×2; 20,000 USDC on ``sub-cross``. ETH-PERP (IM 10 %, lot 0.01,
tick 0.01) is marked at 3,000 with no book: a limit order at 3,000 fills at its limit, and its
position is valued at the mark. Position notional = |q| · k · mark (k = 1).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import deposit, desk, marks
from tests.test_pretrade import _book, check, codes, order

SUB, ACCT = "/v1/subaccounts/sub-cross/limits", "/v1/accounts/acct-1/limits"


def eth(size: str) -> dict[str, Any]:
    return order(size=size, instrument="ETH-PERP", limit_price="3000")


@pytest.fixture
async def trader(admin: Api) -> Api:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000", "ETH-PERP": "3000"})
    await _book(admin)
    return admin


def _reasons(result: dict[str, Any]) -> list[tuple[str, int | None, str, str]]:
    return [(r["code"], r["order_index"], r["value"], r["limit"]) for r in result["reasons"]]


async def test_each_symbol_is_capped_by_its_own_number(trader: Api) -> None:
    """BTC-PERP capped at 50,000 and ETH-PERP at 10,000 on the same subaccount."""
    await trader.ok(
        "PUT",
        SUB,
        json={"max_position_notional": {"by_symbol": {"BTC-PERP": "50000", "ETH-PERP": 10000}}},
    )
    # Long 1 BTC marked at 60,000 > 50,000.
    btc = await check(trader, order(size="1"))
    assert _reasons(btc) == [("MAX_POSITION_NOTIONAL", 0, "60000", "50000")]
    # Long 4 ETH: 4 · 3,000 = 12,000 > 10,000 — though far under BTC's 50,000.
    assert _reasons(await check(trader, eth("4"))) == [
        ("MAX_POSITION_NOTIONAL", 0, "12000", "10000")
    ]
    # 0.5 BTC = 30,000 ≤ 50,000 and 3 ETH = 9,000 ≤ 10,000: both pass.
    assert (await check(trader, order(size="0.5")))["decision"] == "accept"
    assert (await check(trader, eth("3")))["decision"] == "accept"
    # In one basket, only the leg past its own cap is named: BTC (index 0), not ETH's 9,000.
    both = await check(trader, order(size="1"), eth("3"))
    assert _reasons(both) == [("MAX_POSITION_NOTIONAL", 0, "60000", "50000")]
    both = await check(trader, order(size="0.5"), eth("4"))
    assert _reasons(both) == [("MAX_POSITION_NOTIONAL", 1, "12000", "10000")]


async def test_a_symbols_own_entry_replaces_value(trader: Api) -> None:
    await trader.ok(
        "PUT",
        SUB,
        json={"max_position_notional": {"value": "10000", "by_symbol": {"BTC-PERP": "100000"}}},
    )
    # BTC: 60,000 ≤ its own 100,000, though over the 10,000 every other symbol gets.
    assert (await check(trader, order(size="1")))["decision"] == "accept"
    # ETH has no entry: value applies, 12,000 > 10,000.
    assert _reasons(await check(trader, eth("4"))) == [
        ("MAX_POSITION_NOTIONAL", 0, "12000", "10000")
    ]


async def test_a_symbol_with_neither_is_uncapped(trader: Api) -> None:
    await trader.ok("PUT", SUB, json={"max_position_notional": {"by_symbol": {"BTC-PERP": 50000}}})
    # 50 ETH at 3,000 = 150,000, uncapped: IM 15,000 and a 75 fee fit 20,000.
    result = await check(trader, eth("50"))
    assert (result["decision"], codes(result)) == ("accept", [])
    assert codes(await check(trader, order(size="1"))) == ["MAX_POSITION_NOTIONAL"]


async def test_underlying_caps_by_underlying(trader: Api) -> None:
    await trader.ok(
        "PUT",
        SUB,
        json={"max_underlying_notional": {"value": "10000", "by_symbol": {"BTC": "50000"}}},
    )
    # Net BTC 60,000 > BTC's own 50,000; the underlying reason names no order.
    assert _reasons(await check(trader, order(size="1"))) == [
        ("MAX_UNDERLYING_NOTIONAL", None, "60000", "50000")
    ]
    assert (await check(trader, order(size="0.8")))["decision"] == "accept"  # 48,000
    # Net ETH 12,000 > value 10,000 (ETH has no entry).
    assert _reasons(await check(trader, eth("4"))) == [
        ("MAX_UNDERLYING_NOTIONAL", None, "12000", "10000")
    ]
    # Only BTC capped: ETH is free.
    await trader.ok("PUT", SUB, json={"max_underlying_notional": {"by_symbol": {"BTC": "50000"}}})
    assert (await check(trader, eth("4")))["decision"] == "accept"


async def test_account_caps_by_symbol_sum_over_subaccounts(trader: Api) -> None:
    """``sub-b`` of the same account holds 1 BTC-PERP (60,000 at the mark)."""
    await trader.ok(
        "POST",
        "/v1/subaccounts",
        json={"subaccount_id": "sub-b", "account_id": "acct-1", "margin_mode": "cross"},
    )
    snapshot = {
        "balances": {"USDC": "20000"},
        "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
    }
    await trader.ok("PUT", "/v1/subaccounts/sub-b/snapshot", json=snapshot)
    await trader.ok(
        "PUT",
        ACCT,
        json={
            "max_position_notional": {"by_symbol": {"BTC-PERP": "100000"}},
            "max_underlying_notional": {"by_symbol": {"ETH": "10000"}},
        },
    )
    # 0.5 more BTC: 30,000 + sub-b's 60,000 = 90,000 ≤ 100,000.
    assert (await check(trader, order(size="0.5")))["decision"] == "accept"
    # 1 more: 60,000 + 60,000 = 120,000 > 100,000 — though this subaccount alone has 60,000.
    assert _reasons(await check(trader, order(size="1"))) == [
        ("ACCOUNT_LIMIT", 0, "120000", "100000")
    ]
    # ETH-PERP has no position cap at the account, but net ETH 12,000 > ETH's 10,000.
    assert _reasons(await check(trader, eth("4"))) == [("ACCOUNT_LIMIT", None, "12000", "10000")]
    assert (await check(trader, eth("3")))["decision"] == "accept"  # 9,000


async def test_the_shape_round_trips_through_get(trader: Api) -> None:
    """A bare number in by_symbol takes the limit's warn_at; an instrument not listed yet
    (SMALL-PERP) is stored, so a desk may cap it before it trades."""
    limits = {
        "max_position_notional": {
            "value": "1000000",
            "warn_at": "0.9",
            "by_symbol": {
                "BTC-PERP": "5000000",
                "SMALL-PERP": {"value": 200000, "warn_at": "0.5"},
            },
        },
        "max_underlying_notional": {"by_symbol": {"BTC": 7000000}},
        "max_gross_notional": "9000000",
    }
    expected = {
        "max_position_notional": {
            "value": "1000000",
            "warn_at": "0.9",
            "by_symbol": {
                "BTC-PERP": {"value": "5000000", "warn_at": "0.9"},
                "SMALL-PERP": {"value": "200000", "warn_at": "0.5"},
            },
        },
        "max_underlying_notional": {
            "value": None,
            "warn_at": "0.8",
            "by_symbol": {"BTC": {"value": "7000000", "warn_at": "0.8"}},
        },
        "max_gross_notional": {"value": "9000000", "warn_at": "0.8"},
    }
    for url, read in ((SUB, "/v1/subaccounts/sub-cross"), (ACCT, "/v1/accounts/acct-1")):
        put = await trader.ok("PUT", url, json=limits)
        got = await trader.ok("GET", read)
        for body in (put, got):
            assert {k: body["limits"][k] for k in expected} == expected
        # What GET answers is accepted back and stores the same (absent limits, null in the
        # answer, left out: a subaccount has no strategy_limits field to send).
        sent = {k: v for k, v in got["limits"].items() if v is not None}
        again = await trader.ok("PUT", url, json=sent)
        assert again["limits"] == got["limits"]
    # A plain cap keeps its shape, with no by_symbol.
    plain = await trader.ok("PUT", SUB, json={"max_position_notional": "300000"})
    assert plain["limits"]["max_position_notional"] == {
        "value": "300000",
        "warn_at": "0.8",
        "by_symbol": None,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_position_notional": {"by_symbol": {"BTC PERP": "1"}}},
         "max_position_notional.by_symbol.BTC PERP"),
        ({"max_position_notional": {"by_symbol": {"-BTC": "1"}}},
         "max_position_notional.by_symbol.-BTC"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": "-5"}}},
         "max_position_notional.by_symbol.BTC-PERP.value"),
        ({"max_underlying_notional": {"by_symbol": {"BTC": "0"}}},
         "max_underlying_notional.by_symbol.BTC.value"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": "abc"}}},
         "max_position_notional.by_symbol.BTC-PERP.value"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": True}}},
         "max_position_notional.by_symbol.BTC-PERP.value"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": {"value": "1", "warn_at": "1.5"}}}},
         "max_position_notional.by_symbol.BTC-PERP.warn_at"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": {"warn_at": "0.5"}}}},
         "max_position_notional.by_symbol.BTC-PERP.value"),
        ({"max_position_notional": {"by_symbol": {"BTC-PERP": {"value": "1", "cap": "2"}}}},
         "max_position_notional.by_symbol.BTC-PERP.cap"),
        ({"max_position_notional": {"by_symbol": ["BTC-PERP"]}},
         "max_position_notional.by_symbol"),
        # Capping nothing is refused, not stored as a silent "no cap".
        ({"max_position_notional": {}}, "max_position_notional.value"),
        ({"max_position_notional": {"warn_at": "0.5", "by_symbol": {}}},
         "max_position_notional.value"),
        # by_symbol belongs to the two per-symbol limits only.
        ({"max_gross_notional": {"value": "1", "by_symbol": {"BTC-PERP": "1"}}},
         "max_gross_notional.by_symbol"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("url", [SUB, ACCT])
async def test_bad_caps_are_a_422_naming_the_field(
    admin: Api, url: str, body: dict[str, Any], field: str
) -> None:
    await desk(admin)
    await admin.ok("PUT", url, json={"max_position_notional": "300000"})
    response = await admin.put(url, json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.json()
    # Nothing changed.
    read = "/v1/subaccounts/sub-cross" if url == SUB else "/v1/accounts/acct-1"
    limits = (await admin.ok("GET", read))["limits"]
    assert limits["max_position_notional"]["value"] == "300000"


async def test_too_many_symbols_is_a_422(admin: Api) -> None:
    await desk(admin)
    many = {f"S{i}": "1" for i in range(1001)}
    response = await admin.put(SUB, json={"max_position_notional": {"by_symbol": many}})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["max_position_notional.by_symbol"]


async def _open_calls(api: Api) -> dict[str, dict[str, Any]]:
    calls = (await api.ok("GET", "/v1/margin-calls"))["margin_calls"]
    assert all(c["level"] == "limit" for c in calls)
    return {c["subject"]: c for c in calls if c["status"] == "open"}


async def test_each_symbol_past_warn_at_has_its_own_call(admin: Api) -> None:
    """Caps: position BTC-PERP 70,000 (warn 0.8 → 56,000), ETH-PERP 40,000 (warn 0.9 →
    36,000); net underlying ETH 44,000 (warn 0.8 → 35,200), every other underlying 1,000,000.
    Long 1 BTC-PERP and 10 ETH-PERP on 100,000 USDC (margin levels stay far away)."""
    await desk(admin)
    await marks(admin, {"BTC-PERP": "60000", "ETH-PERP": "3000"})
    await admin.ok(
        "PUT",
        SUB,
        json={
            "max_position_notional": {
                "by_symbol": {
                    "BTC-PERP": {"value": "70000", "warn_at": "0.8"},
                    "ETH-PERP": {"value": "40000", "warn_at": "0.9"},
                }
            },
            "max_underlying_notional": {
                "value": "1000000",
                "by_symbol": {"ETH": {"value": "44000", "warn_at": "0.8"}},
            },
        },
    )
    snapshot = {
        "balances": {"USDC": "100000"},
        "positions": [
            {"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"},
            {"instrument": "ETH-PERP", "size": "10", "entry_price": "3000"},
        ],
    }
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/snapshot", json=snapshot)
    # BTC-PERP 60,000 / 70,000 = 0.857 ≥ 0.8; ETH-PERP 30,000 / 40,000 = 0.75 < 0.9;
    # net ETH 30,000 / 44,000 = 0.68 < 0.8; net BTC 60,000 / 1,000,000 = 0.06.
    calls = await _open_calls(admin)
    assert set(calls) == {"max_position_notional:BTC-PERP"}
    btc = calls["max_position_notional:BTC-PERP"]
    assert btc["ratio"] == pytest.approx(60000 / 70000)

    await marks(admin, {"ETH-PERP": "3700"})
    # ETH-PERP 37,000 / 40,000 = 0.925 ≥ 0.9; net ETH 37,000 / 44,000 = 0.841 ≥ 0.8.
    calls = await _open_calls(admin)
    assert set(calls) == {
        "max_position_notional:BTC-PERP",
        "max_position_notional:ETH-PERP",
        "max_underlying_notional:ETH",
    }
    assert calls["max_position_notional:BTC-PERP"]["id"] == btc["id"]  # not raised twice
    assert calls["max_position_notional:ETH-PERP"]["ratio"] == pytest.approx(37000 / 40000)
    assert calls["max_underlying_notional:ETH"]["ratio"] == pytest.approx(37000 / 44000)

    await marks(admin, {"BTC-PERP": "55000"})
    # BTC-PERP 55,000 / 70,000 = 0.786 < 0.8: its call alone resolves.
    assert set(await _open_calls(admin)) == {
        "max_position_notional:ETH-PERP",
        "max_underlying_notional:ETH",
    }
    await marks(admin, {"ETH-PERP": "3550"})
    # ETH-PERP 35,500 / 40,000 = 0.8875 < 0.9 resolves; net ETH 35,500 / 44,000 = 0.807 ≥ 0.8
    # stays open.
    assert set(await _open_calls(admin)) == {"max_underlying_notional:ETH"}
    resolved = {
        c["subject"]: c
        for c in (await admin.ok("GET", "/v1/margin-calls"))["margin_calls"]
        if c["status"] == "resolved"
    }
    assert set(resolved) == {"max_position_notional:BTC-PERP", "max_position_notional:ETH-PERP"}
    assert resolved["max_position_notional:BTC-PERP"]["id"] == btc["id"]


async def test_a_long_symbol_fits_the_calls_subject(admin: Api) -> None:
    """A 64-character instrument: ``max_position_notional:`` + 64 = 86 characters."""
    await desk(admin)
    symbol = "L" * 64
    instrument = await admin.ok("GET", "/v1/instruments/BTC-PERP")
    body = {k: instrument[k] for k in ("kind", "underlying", "contract_size", "tick_size",
                                       "lot_size", "margin_tiers", "taker_fee_rate",
                                       "maker_fee_rate", "funding_interval_s")}  # fmt: skip
    await admin.ok("PUT", f"/v1/instruments/{symbol}", json=body)
    await marks(admin, {symbol: "60000"})
    await admin.ok("PUT", SUB, json={"max_position_notional": {"by_symbol": {symbol: "70000"}}})
    snapshot = {
        "balances": {"USDC": "100000"},
        "positions": [{"instrument": symbol, "size": "1", "entry_price": "60000"}],
    }
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/snapshot", json=snapshot)
    assert set(await _open_calls(admin)) == {f"max_position_notional:{symbol}"}
