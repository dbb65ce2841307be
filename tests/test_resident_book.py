"""The whole-book views answer from the resident book (app/risk/resident.py): a write through
another server process is seen by the very next overview here, and an unchanged book is not
read again.

By hand (BTC-PERP: contract 1, MMF 5 %, mark 60,000): long 1 BTC-PERP @ 60,000 with 10,000 USDC
has equity 10,000 and MM 3,000; a deposit of 5,000 through the other process makes equity 15,000.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ADMIN_KEY, Api
from tests.factories import deposit, desk, marks
from tests.servers import server_env, serving


@pytest.fixture(scope="module")
def other_server(postgres_url: str, redis_url: str) -> Iterator[str]:
    with serving(server_env(postgres_url, redis_url)) as server:
        yield server.url


@pytest.fixture
async def other(admin: Api, other_server: str) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=other_server, timeout=30) as client:
        yield Api(client, ADMIN_KEY)


async def _book(api: Api) -> None:
    await desk(api)
    await marks(api, {"BTC-PERP": "60000"})
    for name in ("sub-a", "sub-b"):
        await api.ok(
            "POST",
            "/v1/subaccounts",
            json={"subaccount_id": name, "account_id": "acct-1", "margin_mode": "cross"},
        )
        await api.ok(
            "PUT",
            f"/v1/subaccounts/{name}/snapshot",
            json={
                "balances": {"USDC": "10000"},
                "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
            },
        )


async def _overview(api: Api) -> dict[str, dict[str, Any]]:
    body = await api.ok("GET", "/v1/risk/overview", params={"limit": 100})
    return {row["subaccount_id"]: row for row in body["subaccounts"]}


def _loaded(app: FastAPI) -> int:
    book = app.state.runtime.book
    assert book is not None
    loaded: int = book.loaded
    return loaded


async def test_a_write_through_another_process_is_in_the_next_overview(
    admin: Api, other: Api
) -> None:
    await _book(admin)
    before = await _overview(admin)
    assert Decimal(before["sub-a"]["equity"]) == 10000
    assert Decimal(before["sub-a"]["maintenance_margin"]) == 3000

    await deposit(other, "sub-a", "5000")
    after = await _overview(admin)
    assert Decimal(after["sub-a"]["equity"]) == 15000
    assert Decimal(after["sub-b"]["equity"]) == 10000

    await other.ok(
        "PUT",
        "/v1/subaccounts/sub-b/snapshot",
        json={"balances": {"USDC": "7000"}, "positions": []},
    )
    stressed = await admin.ok(
        "POST",
        "/v1/risk/stress",
        json={"scenario": {"name": "crash", "shocks": {"BTC": -0.5}}},
    )
    # sub-a: 15,000 − 30,000 of loss is under water; sub-b now holds nothing.
    assert [row["subaccount_id"] for row in stressed["liquidated"]] == ["sub-a"]


async def test_an_unchanged_book_is_not_read_again(app: FastAPI, admin: Api, other: Api) -> None:
    await _book(admin)
    first = await _overview(admin)
    loaded = _loaded(app)
    assert await _overview(admin) == first
    await admin.ok(
        "POST", "/v1/risk/stress", json={"scenario": {"name": "flat", "shocks": {"BTC": 0}}}
    )
    assert _loaded(app) == loaded

    await deposit(other, "sub-b", "1000")
    assert Decimal((await _overview(admin))["sub-b"]["equity"]) == 11000
    assert _loaded(app) == loaded + 1
