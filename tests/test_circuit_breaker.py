"""The automatic circuit breaker (risk parameter ``auto_reduce_only``), worked by hand.

sub-cross holds long 1 BTC-PERP @ 60,000 and 10,000 USDC; BTC-PERP: IMF 10 %, MMF 5 %. At a
mark m: E = 10,000 + (m − 60,000) = m − 50,000, MM = 0.05 · m, ratio = MM / E. The breaker
here is ``{at: 0.85, release_below: 0.7}``:

    mark      E       MM      ratio
    54,000    4,000   2,700   0.675    below 0.7: released (or never set)
    53,500    3,500   2,675   0.7643   between: stays as it is
    53,000    3,000   2,650   0.8833   ≥ 0.85: reduce_only, source auto
    50,000    0       2,500   —        equity ≤ 0 with a position open: reduce_only
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.config import Settings
from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks
from tests.test_margin_calls import Receiver, _api_with_webhook

BREAKER = {"at": 0.85, "release_below": 0.7}


async def _long_one_btc(api: Api, breaker: dict[str, float] | None = BREAKER) -> None:
    await desk(api)
    snapshot = {
        "balances": {"USDC": "10000"},
        "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
    }
    await api.ok("PUT", "/v1/subaccounts/sub-cross/snapshot", json=snapshot)
    await api.ok("PUT", "/v1/risk/parameters", json={"auto_reduce_only": breaker})


async def _mark(api: Api, price: str) -> None:
    """Marks and a fresh book around ``price`` (bid 10 below, ask 10 above)."""
    await marks(api, {"BTC-PERP": price})
    book = {
        "bids": [[str(int(price) - 10), "5"]],
        "asks": [[str(int(price) + 10), "5"]],
        "ts": datetime.now(UTC).isoformat(),
    }
    await api.ok("PUT", "/v1/books/BTC-PERP", json=book)


async def _states(api: Api) -> list[tuple[str, str | None, str, str]]:
    """``(scope, id, state, source)`` as ``GET /v1/trading-state`` lists them (it sweeps the
    marks posted before it first, like the margin calls)."""
    listed = (await api.ok("GET", "/v1/trading-state"))["trading_states"]
    return [(s["scope"], s["id"], s["state"], s["source"]) for s in listed]


async def _check(api: Api, side: str, price: str) -> list[str]:
    """The reason codes of a 0.1 BTC-PERP limit order at ``price`` (empty: accepted)."""
    order = {
        "instrument": "BTC-PERP",
        "side": side,
        "size": "0.1",
        "type": "limit",
        "limit_price": price,
    }
    result = await api.ok(
        "POST", "/v1/pretrade/check", json={"subaccount_id": "sub-cross", "orders": [order]}
    )
    codes = [reason["code"] for reason in result["reasons"]]
    assert (result["decision"] == "accept") == (codes == [])
    return codes


async def _auto_audit(api: Api) -> list[dict[str, Any]]:
    page = await api.ok(
        "GET",
        "/v1/audit",
        params={"kind": "trading_state.set", "subaccount_id": "sub-cross", "limit": 100},
    )
    return [e for e in page["entries"] if e["payload"].get("source") == "auto"]


AUTO = ("subaccount", "sub-cross", "reduce_only", "auto")


async def test_a_mark_move_sets_reduce_only_and_a_lower_ratio_releases_it(admin: Api) -> None:
    """0.675 → nothing; 0.8833 ≥ 0.85 → reduce_only (a buy adds risk: REDUCE_ONLY; a sell of
    0.1 reduces the long: accepted); 0.7643 stays; 0.675 < 0.7 releases it."""
    await _long_one_btc(admin)
    await _mark(admin, "54000")
    assert await _states(admin) == []

    await _mark(admin, "53000")
    [listed] = (await admin.ok("GET", "/v1/trading-state"))["trading_states"]
    assert (listed["scope"], listed["id"], listed["state"], listed["source"]) == AUTO
    assert "auto_reduce_only" in listed["reason"]
    assert "REDUCE_ONLY" in await _check(admin, "buy", "53000")
    assert await _check(admin, "sell", "53000") == []

    await _mark(admin, "53500")  # 0.7643: between release_below and at, still held
    assert await _states(admin) == [AUTO]
    assert "REDUCE_ONLY" in await _check(admin, "buy", "53500")

    await _mark(admin, "54000")  # 0.675 < 0.7: released
    assert await _states(admin) == []
    assert "REDUCE_ONLY" not in await _check(admin, "buy", "54000")

    set_, released = await _auto_audit(admin)
    assert set_["actor_key_id"] is None and set_["account_id"] == "acct-1"
    assert (set_["payload"]["state"], released["payload"]["state"]) == ("reduce_only", "active")
    assert set_["payload"]["ratio"] == pytest.approx(2650 / 3000)
    assert released["payload"]["ratio"] == pytest.approx(2700 / 4000)


async def test_equity_at_zero_with_a_position_open_sets_reduce_only(admin: Api) -> None:
    """Mark 50,000: E = 0, MM = 2,500 — no ratio, but a position open: reduce_only."""
    await _long_one_btc(admin)
    await _mark(admin, "50000")
    [listed] = (await admin.ok("GET", "/v1/trading-state"))["trading_states"]
    assert (listed["state"], listed["source"]) == ("reduce_only", "auto")
    assert "equity" in listed["reason"]
    [entry] = await _auto_audit(admin)
    assert entry["payload"]["ratio"] is None


async def test_a_fill_sets_it_and_a_deposit_releases_it(admin: Api) -> None:
    """At 53,500 (0.7643, never past 0.85: nothing) a fill buys 0.2 more @ 53,500 with no fee:
    long 1.2, E still 3,500, MM = 0.05 · 1.2 · 53,500 = 3,210, ratio 0.9171 ≥ 0.85 → set in
    the fill's transaction. A deposit of 1,500: E = 5,000, ratio 0.642 < 0.7 → released in the
    transfer's."""
    await _long_one_btc(admin)
    await _mark(admin, "53500")
    assert await _states(admin) == []
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "0.2", "53500")]})
    assert await _states(admin) == [AUTO]
    await deposit(admin, "sub-cross", "1500")
    assert await _states(admin) == []
    set_, released = await _auto_audit(admin)
    assert set_["payload"]["ratio"] == pytest.approx(3210 / 3500)
    assert released["payload"]["ratio"] == pytest.approx(3210 / 5000)


async def test_a_manual_state_and_the_automatic_one_stand_apart(admin: Api) -> None:
    """Both on sub-cross: the stricter governs the check; setting or clearing the manual one
    leaves the automatic one, and the breaker's release leaves the manual one."""
    await _long_one_btc(admin)
    await _mark(admin, "53000")  # 0.8833: auto reduce_only
    assert await _states(admin) == [AUTO]
    manual = {"scope": "subaccount", "id": "sub-cross", "reason": "desk review"}

    await admin.ok("PUT", "/v1/trading-state", json={**manual, "state": "halted"})
    assert await _states(admin) == [AUTO, ("subaccount", "sub-cross", "halted", "manual")]
    assert await _check(admin, "sell", "53000") == ["HALTED"]  # halted > reduce_only

    await admin.ok("PUT", "/v1/trading-state", json={**manual, "state": "active"})
    assert await _states(admin) == [AUTO]  # clearing the manual one leaves the automatic one
    assert "REDUCE_ONLY" in await _check(admin, "buy", "53000")
    assert await _check(admin, "sell", "53000") == []

    await admin.ok("PUT", "/v1/trading-state", json={**manual, "state": "reduce_only"})
    await _mark(admin, "54000")  # 0.675: the breaker releases its own state only
    assert await _states(admin) == [("subaccount", "sub-cross", "reduce_only", "manual")]
    assert "REDUCE_ONLY" in await _check(admin, "buy", "54000")


async def test_turning_the_breaker_off_releases_its_states(admin: Api) -> None:
    await _long_one_btc(admin)
    await _mark(admin, "53000")
    assert await _states(admin) == [AUTO]
    await admin.ok("PUT", "/v1/risk/parameters", json={"auto_reduce_only": None})
    assert await _states(admin) == []
    set_, released = await _auto_audit(admin)
    assert (set_["payload"]["state"], released["payload"]["state"]) == ("reduce_only", "active")
    assert "off" in released["payload"]["reason"]


@pytest.mark.parametrize(
    ("breaker", "field"),
    [
        ({"at": 0.9, "release_below": 0.9}, "auto_reduce_only.release_below"),
        ({"at": 0.9, "release_below": 1.2}, "auto_reduce_only.release_below"),
        ({"at": 0.9, "release_below": 0}, "auto_reduce_only.release_below"),
        ({"at": 0.9, "release_below": -0.5}, "auto_reduce_only.release_below"),
        ({"at": 0, "release_below": 0.5}, "auto_reduce_only.at"),
        ({"at": "high", "release_below": 0.5}, "auto_reduce_only.at"),
        ({"at": 0.9}, "auto_reduce_only.release_below"),
        ({"at": 0.9, "release_below": 0.5, "hold": 1}, "auto_reduce_only.hold"),
        (0.9, "auto_reduce_only"),
    ],
)
async def test_the_parameters_refuse_a_breaker_that_cannot_release(
    admin: Api, breaker: Any, field: str
) -> None:
    """0 < release_below < at, else 422 naming the field (and nothing stored)."""
    assert (await admin.ok("GET", "/v1/risk/parameters"))["auto_reduce_only"] is None
    answer = await admin.put("/v1/risk/parameters", json={"auto_reduce_only": breaker})
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert (await admin.ok("GET", "/v1/risk/parameters"))["auto_reduce_only"] is None
    stored = await admin.ok("PUT", "/v1/risk/parameters", json={"auto_reduce_only": BREAKER})
    assert stored["auto_reduce_only"] == BREAKER


async def test_the_webhook_receives_the_set_and_the_release(admin: Api, settings: Settings) -> None:
    """53,000 sets it (ratio 0.8833, also a margin-call warning ≥ 0.8); a deposit of 1,000
    (E = 4,000, ratio 2,650 / 4,000 = 0.6625 < 0.7) releases it (and resolves the warning)."""
    receiver = Receiver()
    async with receiver as url:
        async for api in _api_with_webhook(settings, url):
            await _long_one_btc(api)
            await _mark(api, "53000")
            assert await _states(api) == [AUTO]
            await deposit(api, "sub-cross", "1000")
            assert await _states(api) == []
            events = await receiver.wait_for(4)
    mine = [e for e in events if e["event"].startswith("trading_state.")]
    assert [e["event"] for e in mine] == [
        "trading_state.auto_set",
        "trading_state.auto_released",
    ]
    set_, released = (e["data"] for e in mine)
    assert (set_["scope"], set_["id"], set_["state"], set_["source"]) == AUTO
    assert set_["account_id"] == "acct-1"
    assert set_["ratio"] == pytest.approx(2650 / 3000)
    assert (released["state"], released["ratio"]) == ("active", pytest.approx(2650 / 4000))
