"""Today's loss (``max_daily_loss``, api.md) counts the unrealised PnL change since the day
opened — the end-of-day capture taken just after midnight UTC — not the whole of today's
unrealised PnL, so a position carried over midnight counts only its move since.

By hand: long 1 BTC-PERP bought yesterday at 60,500. At the capture the mark is 60,000:
unrealised −500. Today the mark is 59,800: unrealised −700, a change of −200 since the day
opened; nothing realised today. A buy of 0.1 at 59,800 (no book: it fills at its limit, at the
mark) adds no unrealised PnL. Today's loss: 200 (it was counted as 700).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from app.risk import reports
from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks
from tests.test_pretrade import check, codes, order

BUY = order(size="0.1", limit_price="59800")


async def _capture_yesterday(app: FastAPI) -> None:
    runtime = app.state.runtime
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    async with runtime.session_factory() as session, session.begin():
        await reports.capture(session, runtime, yesterday)


async def test_todays_loss_counts_the_move_since_the_day_opened(admin: Api, app: FastAPI) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    carried = fill("carried", "buy", "1", "60500", ts=yesterday)
    await admin.ok("POST", "/v1/fills", json={"fills": [carried]})
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_daily_loss": "300"})
    await marks(admin, {"BTC-PERP": "60000"})
    await _capture_yesterday(app)
    await marks(admin, {"BTC-PERP": "59800"})

    assert (await check(admin, BUY))["decision"] == "accept"  # 200 ≤ 300
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_daily_loss": "100"})
    reason = (await check(admin, BUY))["reasons"][0]
    assert (reason["code"], reason["value"], reason["limit"]) == ("LOSS_LIMIT", "200", "100")


async def test_without_a_capture_the_whole_unrealised_pnl_counts_until_one_lands(
    admin: Api, app: FastAPI
) -> None:
    """No capture of yesterday: today's loss counts all of the unrealised PnL (towards caution).
    When the capture lands, the very next check counts 200 — the process held the state loaded
    before it (the capture renews the subaccount's version)."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    carried = fill("carried", "buy", "1", "60500", ts=yesterday)
    await admin.ok("POST", "/v1/fills", json={"fills": [carried]})
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_daily_loss": "300"})
    await marks(admin, {"BTC-PERP": "60000"})
    # At the mark 60,000, no capture: −500 carried, +0.1 · (60,000 − 59,800) = +20 on the buy.
    before = await check(admin, BUY)
    assert codes(before) == ["LOSS_LIMIT"] and before["reasons"][0]["value"] == "480"
    await _capture_yesterday(app)
    await marks(admin, {"BTC-PERP": "59800"})
    assert (await check(admin, BUY))["decision"] == "accept"
