"""Risk overview and stress, worked by hand (BTC-PERP: IMF 10 %, MMF 5 %, contract 1)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.factories import desk, marks


async def _subaccount(api: Api, subaccount_id: str, account_id: str = "acct-1") -> None:
    await api.ok(
        "POST",
        "/v1/subaccounts",
        json={"subaccount_id": subaccount_id, "account_id": account_id, "margin_mode": "cross"},
    )


async def _long(api: Api, subaccount_id: str, usdc: str, size: str, entry: str = "60000") -> None:
    snapshot = {
        "balances": {"USDC": usdc},
        "positions": [{"instrument": "BTC-PERP", "size": size, "entry_price": entry}],
    }
    await api.ok("PUT", f"/v1/subaccounts/{subaccount_id}/snapshot", json=snapshot)


async def test_overview_orders_by_risk_and_pages(admin: Api) -> None:
    await desk(admin)
    # Long 1 @ 60,000 at mark 60,000: MM = 3,000. Ratio MM / E with E = the balance.
    for name, usdc in (("a", "30000"), ("b", "6000"), ("c", "3500"), ("d", "-100")):
        await _subaccount(admin, f"risk-{name}")
        await _long(admin, f"risk-{name}", usdc, "1")
    await marks(admin, {"BTC-PERP": "60000"})
    first = await admin.ok("GET", "/v1/risk/overview", params={"limit": 2, "account_id": "acct-1"})
    # d: E = −100 ≤ 0 → top; c: 3,000 / 3,500 = 0.857; b: 0.5; a: 0.1; sub-cross is empty (0).
    assert [r["subaccount_id"] for r in first["subaccounts"]] == ["risk-d", "risk-c"]
    assert first["subaccounts"][1]["maintenance_margin_ratio"] == 3000 / 3500
    assert first["subaccounts"][0]["maintenance_margin_ratio"] is None
    second = await admin.ok(
        "GET",
        "/v1/risk/overview",
        params={"limit": 2, "account_id": "acct-1", "cursor": first["next_cursor"]},
    )
    assert [r["subaccount_id"] for r in second["subaccounts"]] == ["risk-b", "risk-a"]
    third = await admin.ok(
        "GET",
        "/v1/risk/overview",
        params={"limit": 2, "account_id": "acct-1", "cursor": second["next_cursor"]},
    )
    assert [r["subaccount_id"] for r in third["subaccounts"]] == ["sub-cross"]
    assert third["next_cursor"] is None
    at_risk = await admin.ok("GET", "/v1/risk/overview", params={"min_ratio": 0.5})
    assert [r["subaccount_id"] for r in at_risk["subaccounts"]] == ["risk-d", "risk-c", "risk-b"]
    bad = await admin.get("/v1/risk/overview", params={"cursor": "garbage"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "cursor")


async def test_overview_over_a_thousand_subaccounts(admin: Api) -> None:
    await desk(admin)
    for i in range(1000):
        await _subaccount(admin, f"bulk-{i:04d}")
    # Only some hold positions; ratios 3,000 / E for E = 4,000 + 10·i.
    for i in range(0, 1000, 100):
        await _long(admin, f"bulk-{i:04d}", str(4000 + 10 * i), "1")
    await marks(admin, {"BTC-PERP": "60000"})
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 300}
        if cursor:
            params["cursor"] = cursor
        page = await admin.ok("GET", "/v1/risk/overview", params=params)
        seen += page["subaccounts"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 1002  # 1,000 + sub-cross + other-sub
    assert len({r["subaccount_id"] for r in seen}) == 1002
    top = [r["subaccount_id"] for r in seen[:10]]
    assert top == [f"bulk-{i:04d}" for i in range(0, 1000, 100)]  # 3,000/4,000 first, then …
    ratios = [r["maintenance_margin_ratio"] for r in seen[:10]]
    assert ratios == sorted(ratios, reverse=True)


async def test_subaccount_stress_worked_by_hand(admin: Api) -> None:
    await desk(admin)
    await _long(admin, "sub-cross", "10000", "1")
    await marks(admin, {"BTC-PERP": "60000"})
    body = {
        "scenarios": [
            {"name": "crash", "shocks": {"BTC": -0.2}},
            {"name": "ETH only", "shocks": {"ETH": -0.5}},
        ]
    }
    result = await admin.ok("POST", "/v1/subaccounts/sub-cross/stress", json=body)
    crash, eth = result["scenarios"]
    # BTC −20 %: mark 48,000; E = 10,000 + (48,000 − 60,000) = −2,000; MM = 0.05 · 48,000 = 2,400;
    # shortfall = MM − E = 4,400; deficit = 2,000.
    assert (crash["equity"], crash["maintenance_margin"]) == ("-2000", "2400")
    assert (crash["shortfall"], crash["deficit"], crash["liquidatable"]) == ("4400", "2000", True)
    # ETH does not move this book: E = 10,000, MM = 3,000, ratio 0.3.
    assert (eth["equity"], eth["maintenance_margin"], eth["shortfall"]) == ("10000", "3000", "0")
    assert eth["maintenance_margin_ratio"] == 0.3
    grid = await admin.ok("POST", "/v1/subaccounts/sub-cross/stress", json={})
    # BTC alone at ±1/3, ±2/3, ±1, ±2 × its 10 % scan range (8), then all together at ±1 (2).
    assert len(grid["scenarios"]) == 10


async def test_book_stress_names_who_would_be_liquidated(admin: Api) -> None:
    await desk(admin)
    await _subaccount(admin, "thin")
    await _long(admin, "thin", "5000", "1")
    await _long(admin, "sub-cross", "50000", "1")
    await marks(admin, {"BTC-PERP": "60000"})
    result = await admin.ok(
        "POST", "/v1/risk/stress", json={"scenario": {"name": "-5%", "shocks": {"BTC": -0.05}}}
    )
    # −5 %: mark 57,000. thin: E = 5,000 − 3,000 = 2,000 ≤ MM 2,850 → shortfall 850.
    # sub-cross: E = 47,000, safe.
    assert [r["subaccount_id"] for r in result["liquidated"]] == ["thin"]
    assert (result["total_shortfall"], result["total_deficit"]) == ("850", "0")
    assert result["subaccounts"] == 3


async def test_margin_report_live_today_captured_for_a_past_day(admin: Api, app: Any) -> None:
    from datetime import UTC, date, datetime

    from app.risk import reports

    await desk(admin)
    await _long(admin, "sub-cross", "10000", "1")
    await marks(admin, {"BTC-PERP": "60000"})
    today = datetime.now(UTC).date().isoformat()
    live = await admin.ok("GET", "/v1/reports/margin", params={"date": today})
    by_id = {r["subaccount_id"]: r for r in live["subaccounts"]}
    assert live["live"] is True
    # E = 10,000; IM = 6,000; MM = 3,000.
    assert (by_id["sub-cross"]["equity"], by_id["sub-cross"]["initial_margin"]) == ("10000", "6000")
    csv_text = (
        await admin.get(
            "/v1/reports/margin", params={"date": today}, headers={"Accept": "text/csv"}
        )
    ).text
    header, *lines = csv_text.strip().split("\n")
    assert header.startswith("subaccount_id,account_id,margin_mode,equity,")
    assert any(line.startswith("sub-cross,acct-1,cross,10000,") for line in lines)
    runtime = app.state.runtime
    async with runtime.session_factory() as session, session.begin():
        assert await reports.capture(session, runtime, date(2026, 1, 2)) == 2
    captured = await admin.ok("GET", "/v1/reports/margin", params={"date": "2026-01-02"})
    assert captured["live"] is False
    assert {r["subaccount_id"]: r["maintenance_margin"] for r in captured["subaccounts"]}[
        "sub-cross"
    ] == "3000"
    missing = await admin.get("/v1/reports/margin", params={"date": "2025-01-01"})
    assert missing.status_code == 404
    future = await admin.get("/v1/reports/margin", params={"date": "2999-01-01"})
    assert (future.status_code, future.json()["errors"][0]["field"]) == (422, "date")
