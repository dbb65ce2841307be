"""What one pre-trade check costs in round trips (issue 10), counted, not timed: a warm check
asks PostgreSQL once whether what the process holds is current, asks Redis once for marks,
books and the order-rate window, and writes its record in one statement. A change that adds a
read to the hot path fails here. And the order-rate cap holds under concurrency: counting and
admitting is one atomic step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Api
from tests.factories import deposit, desk, marks
from tests.test_pretrade import _book, check, codes, order


def _counters(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith(("preflight_db_statements_total", "preflight_cache_round_trips_total")):
            name, value = line.split()
            values[name] = float(value)
    return values


async def _metrics(api: Api) -> dict[str, float]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    return _counters(response.text)


async def _cost(api: Api, **body: Any) -> tuple[dict[str, Any], float, float]:
    """One check's answer, statements sent to PostgreSQL, round trips to Redis."""
    before = await _metrics(api)
    result = await check(api, order(size="0.01"), **body)
    after = await _metrics(api)
    statements = "preflight_db_statements_total"
    trips = "preflight_cache_round_trips_total"
    return result, after[statements] - before[statements], after[trips] - before[trips]


@pytest.fixture
async def trader(admin: Api) -> Api:
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000"})
    await _book(admin)
    return admin


async def test_a_warm_check_reads_postgresql_once_and_redis_once(trader: Api) -> None:
    await check(trader, order(size="0.01"))  # the first loads the subaccount into the process
    result, statements, round_trips = await _cost(trader)
    assert result["decision"] == "accept"
    # The versions (one statement), then the check's record (one statement); nothing else.
    assert statements == 2
    # Marks, the book and the order-rate window in one pipeline.
    assert round_trips == 1


async def test_a_write_in_between_costs_one_reload(trader: Api) -> None:
    await check(trader, order(size="0.01"))
    await deposit(trader, "sub-cross", "100")  # bumps the subaccount's version
    result, statements, round_trips = await _cost(trader)
    # Versions, the subaccount's state in one statement (it moved), the record.
    assert statements == 3 and round_trips == 1
    # ... and the reload is what the answer is made of: 20,000 + 100 deposited.
    assert result["before"]["collateral_value"] == "20100"


async def test_a_warm_reserving_check_costs_what_a_check_costs(trader: Api) -> None:
    await check(trader, order(size="0.01"))
    for held in (1, 2):
        result, statements, round_trips = await _cost(trader, reserve=True)
        assert result["decision"] == "accept" and result["reservation_id"] is not None
        # Each reservation of 0.01 BTC holds its IM, 10 % · 0.01 · 60,000 (the mark) = 60:
        # the second check counts the first's, kept without a reload.
        assert result["after"]["reserved_initial_margin"] == str(60 * held)
        # The versions, then the record, written only if the subaccount's token is still the
        # one the check was judged at (and answering its new one): no transaction, no lock.
        # The second loads nothing: the state with the first's reservation was kept under
        # the token its write gave the subaccount.
        assert statements == 2 and round_trips == 1


async def test_concurrent_checks_never_pass_the_order_rate_cap_together(trader: Api) -> None:
    await trader.ok(
        "PUT", "/v1/subaccounts/sub-cross/limits", json={"max_order_rate": {"value": 5}}
    )
    results = await asyncio.gather(*(check(trader, order(size="0.01")) for _ in range(20)))
    accepted = [r for r in results if r["decision"] == "accept"]
    # 20 single-order checks inside one second against a cap of 5 orders per second: exactly
    # five fit, however the twenty interleave; the other fifteen are refused for the rate.
    assert len(accepted) == 5
    assert all(codes(r) == ["ORDER_RATE"] for r in results if r["decision"] == "reject")
