"""Reservations across server processes (api.md, Pre-trade check: "Two concurrent reserving
checks can never both pass where only one fits — across server processes").

Two real ``uvicorn`` processes serve the same PostgreSQL database and Redis; the tests talk to
them over loopback HTTP, alternating between the two, and seed through the API as admin.

The numbers, by hand (BTC-PERP: one tier, IMF 10 %, contract size 1, taker fee 0.0005):

- No book is posted, so a limit order is assumed filled at its limit price; the limit is the
  mark, 60,000, so the unrealised PnL of a reserved order is 0.
- One order of s = 0.1: notional 0.1 · 60,000 = 6,000; IM = 0.10 · 6,000 = 600;
  fee = 0.0005 · 6,000 = 3 (a reservation counts its fee as paid, conservatively).
  Each accepted reserving check therefore uses 600 + 3 = 603 of free collateral.
- Deposit D = 6,300 USDC, no positions: free collateral = 6,300.
  After n reservations: F(n) = 6,300 − 603·n.  F(10) = 270 ≥ 0,  F(11) = −333 < 0.
  So exactly K = 10 orders fit, and the 11th is rejected with INSUFFICIENT_MARGIN.
- Every accepted check reports ``after.free_collateral`` = F(n) for its own n: if the checks
  are serialised, the K accepted answers are exactly {F(1), …, F(10)}, each once.

Proof 2 (issue 6) repeats the burst for rounds: 64 concurrent reserving checks, alternating
between the two servers, exactly K = 10 accepted, reserved IM 10 · 600 = 6,000 and free collateral
F(10) = 270 on both servers; then every reservation is released (DELETE /v1/reservations/{id}),
both servers are back at reserved IM 0 and free collateral F(0) = 6,300, and the next round starts.
An over-commit is a round with more than K accepted, or a negative free collateral seen anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.factories import BTC_PERP, deposit, desk, marks
from tests.proof.conftest import Figures, scale
from tests.servers import ADMIN_KEY, server_env, serving

PROOF = "2 concurrency"
REQUEST_TIMEOUT_S = 60.0
ROUNDS = scale(ci=3, full=1000)

PRICE = Decimal("60000")
SIZE = Decimal("0.1")
DEPOSIT = Decimal("6300")
PER_ORDER = SIZE * PRICE * Decimal("0.1") + SIZE * PRICE * Decimal("0.0005")  # 600 + 3
K = 10
assert K * PER_ORDER <= DEPOSIT < (K + 1) * PER_ORDER  # exactly K fit
BURST = 64


@pytest.fixture(scope="module")
def servers(postgres_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """Two server processes on the test run's PostgreSQL database and Redis: (url_a, url_b)."""
    # Every one of the 64 concurrent checks must be judged: with the default in-flight limit
    # (32 per process) a burst split evenly fits exactly, and any uneven moment would shed one
    # with 503 OVERLOADED. Shedding is proven in tests/test_ops.py; here it only adds noise.
    env = server_env(postgres_url, redis_url, PREFLIGHT_MAX_IN_FLIGHT="128")
    with serving(env) as a, serving(env) as b:
        yield a.url, b.url
        # Captured, so shown only when a test of this module failed: a 500's traceback.
        print(f"--- server A log tail ---\n{a.output()}\n--- server B log tail ---\n{b.output()}")


# --- helpers -------------------------------------------------------------------------------


def _order(coid: str | None, size: Decimal = SIZE) -> dict[str, Any]:
    order: dict[str, Any] = {
        "instrument": "BTC-PERP",
        "side": "buy",
        "size": str(size),
        "type": "limit",
        "limit_price": str(PRICE),
    }
    if coid is not None:
        order["client_order_id"] = coid
    return order


async def _reserve(api: Api, coid: str) -> httpx.Response:
    return await api.post(
        "/v1/pretrade/check",
        json={
            "subaccount_id": "sub-cross",
            "orders": [_order(coid)],
            "reserve": True,
            "reservation_ttl_s": 600,  # no reservation expires during the test
        },
    )


async def _probe(api: Api) -> dict[str, Any]:
    """A non-reserving check of one lot: its ``before`` is the subaccount with every active
    reservation counted, as this server sees it."""
    body: dict[str, Any] = await api.ok(
        "POST",
        "/v1/pretrade/check",
        json={"subaccount_id": "sub-cross", "orders": [_order(None, Decimal("0.001"))]},
    )
    return body


async def _seed(api: Api) -> None:
    await desk(api)
    # Staleness is not what is tested here: a wider window keeps a slow run from turning
    # INSUFFICIENT_MARGIN rejects into STALE_MARK ones (marks are still refreshed just before
    # each burst).
    await api.ok("PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, "stale_after_s": "60"})
    await deposit(api, "sub-cross", str(DEPOSIT))
    await marks(api, {"BTC-PERP": str(PRICE)})


async def _active(api: Api) -> list[dict[str, Any]]:
    body = await api.ok("GET", "/v1/subaccounts/sub-cross/reservations")
    return [r for r in body["reservations"] if r["status"] == "active"]


def _reserved_use(reservations: list[dict[str, Any]]) -> Decimal:
    """IM + fee the reservations hold, from their legs (IMF 10 %, taker fee 0.0005)."""
    total = Decimal(0)
    for reservation in reservations:
        for leg in reservation["legs"]:
            notional = Decimal(leg["size"]) * Decimal(leg["price"])
            total += notional * Decimal("0.1") + notional * Decimal("0.0005")
    return total


def _free_after(n: int) -> Decimal:
    return DEPOSIT - PER_ORDER * n


async def _assert_reserved(api: Api, n: int) -> None:
    """This server counts n reservations, in a check's ``before`` and in GET …/margin alike:
    reserved IM 600·n, free collateral F(n) ≥ 0."""
    before = (await _probe(api))["before"]
    summary = (await api.ok("GET", "/v1/subaccounts/sub-cross/margin"))["summary"]
    for view in (before, summary):
        assert Decimal(view["reserved_initial_margin"]) == 600 * n, view
        assert Decimal(view["free_collateral"]) == _free_after(n), view
        assert Decimal(view["free_collateral"]) >= 0, view


async def _burst(apis: tuple[Api, Api], prefix: str, count: int) -> list[httpx.Response]:
    """``count`` concurrent reserving checks, alternating between the two servers."""
    return list(
        await asyncio.gather(*(_reserve(apis[i % 2], f"{prefix}-{i}") for i in range(count)))
    )


def _split(responses: list[httpx.Response]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: len(responses)}, (
        statuses,
        [r.text for r in responses if r.status_code != 200][:3],
    )
    bodies = [r.json() for r in responses]
    accepted = [b for b in bodies if b["decision"] == "accept"]
    rejected = [b for b in bodies if b["decision"] == "reject"]
    assert len(accepted) + len(rejected) == len(bodies)
    return accepted, rejected


@contextlib.asynccontextmanager
async def _clients(urls: tuple[str, str]) -> Any:
    # Idle connections are dropped after 1 s, well before the server's 5 s keep-alive timeout:
    # a request never races the server closing an idle connection under it ("Server disconnected
    # without sending a response"), which a slow round used to meet.
    limits = httpx.Limits(
        max_connections=BURST, max_keepalive_connections=BURST, keepalive_expiry=1.0
    )
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=REQUEST_TIMEOUT_S, limits=limits) as a,
        httpx.AsyncClient(base_url=urls[1], timeout=REQUEST_TIMEOUT_S, limits=limits) as b,
    ):
        yield Api(a, ADMIN_KEY), Api(b, ADMIN_KEY)


# --- tests -----------------------------------------------------------------------------------


async def test_concurrent_reserving_checks_on_two_servers_never_overcommit(
    clean: None, servers: tuple[str, str]
) -> None:
    async with _clients(servers) as (a, b):
        await _seed(a)
        await marks(b, {"BTC-PERP": str(PRICE)})  # fresh right before the burst

        accepted, rejected = _split(await _burst((a, b), "burst", BURST))

        # Exactly K of 64 fit; every other one is refused for margin alone.
        assert len(accepted) == K, [x["after"]["free_collateral"] for x in accepted]
        assert len(rejected) == BURST - K
        for body in rejected:
            assert [r["code"] for r in body["reasons"]] == ["INSUFFICIENT_MARGIN"], body["reasons"]
            assert body["reservation_id"] is None
            # A reject saw all K reservations: F(K) − 603 = −333 after its own order.
            assert Decimal(body["after"]["free_collateral"]) == _free_after(K + 1), body
            assert Decimal(body["before"]["reserved_initial_margin"]) == 600 * K
        # Serialised: the n-th accepted check saw n − 1 reservations, for n = 1 … K.
        assert sorted(Decimal(x["after"]["free_collateral"]) for x in accepted) == sorted(
            _free_after(n) for n in range(1, K + 1)
        )
        assert all(x["reservation_id"] for x in accepted)

        # Both servers list the same K active reservations: the accepted ones, no others.
        for api in (a, b):
            active = await _active(api)
            assert {r["reservation_id"] for r in active} == {x["reservation_id"] for x in accepted}
            assert _reserved_use(active) == K * PER_ORDER <= DEPOSIT
        # And both count them, in a check and in the margin view: reserved IM = 10 · 600,
        # free collateral = F(10) = 270 ≥ 0.
        for api in (a, b):
            await _assert_reserved(api, K)


async def test_reservation_acknowledged_on_one_server_is_seen_by_the_other_and_release_frees_one(
    clean: None, servers: tuple[str, str]
) -> None:
    async with _clients(servers) as (a, b):
        await _seed(b)
        ids = []
        # Sequential, alternating: each check starts after the previous one was acknowledged
        # by the other server, and must count it.
        for n in range(K):
            here, there = (a, b) if n % 2 == 0 else (b, a)
            before = (await _probe(here))["before"]
            assert Decimal(before["reserved_initial_margin"]) == 600 * n
            assert Decimal(before["free_collateral"]) == _free_after(n)
            response = await _reserve(here, f"seq-{n}")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["decision"] == "accept", body["reasons"]
            assert Decimal(body["after"]["free_collateral"]) == _free_after(n + 1)
            ids.append(body["reservation_id"])
            # Seen on the other server as soon as it was acknowledged here.
            seen = {r["reservation_id"] for r in await _active(there)}
            assert body["reservation_id"] in seen
        # Full: an 11th on either server is refused.
        for n, api in enumerate((a, b)):
            response = await _reserve(api, f"full-{n}")
            assert response.json()["decision"] == "reject"
            assert [r["code"] for r in response.json()["reasons"]] == ["INSUFFICIENT_MARGIN"]

        # Release, on B, a reservation made on A.
        released = await b.ok("DELETE", f"/v1/reservations/{ids[0]}")
        assert released["status"] == "released"
        before = (await _probe(a))["before"]
        assert Decimal(before["reserved_initial_margin"]) == 600 * (K - 1)
        assert Decimal(before["free_collateral"]) == _free_after(K - 1)

        # Exactly one more fits, even when 16 race for it on both servers.
        await marks(a, {"BTC-PERP": str(PRICE)})
        accepted, rejected = _split(await _burst((a, b), "again", 16))
        assert len(accepted) == 1
        assert Decimal(accepted[0]["after"]["free_collateral"]) == _free_after(K)
        for body in rejected:
            assert [r["code"] for r in body["reasons"]] == ["INSUFFICIENT_MARGIN"]
        for api in (a, b):
            active = await _active(api)
            assert len(active) == K
            assert ids[0] not in {r["reservation_id"] for r in active}
            assert _reserved_use(active) == K * PER_ORDER <= DEPOSIT
            await _assert_reserved(api, K)


async def test_withdrawal_cannot_take_reserved_collateral(
    clean: None, servers: tuple[str, str]
) -> None:
    """With K reservations holding 6,030 of 6,300, only 270 is free: withdrawing 300 would leave
    the reservations uncovered (free collateral −30), so it is refused like any withdrawal
    above ``withdrawable`` (409 INSUFFICIENT_MARGIN), and nothing moves."""
    async with _clients(servers) as (a, b):
        await _seed(a)
        accepted, _ = _split(await _burst((a, b), "w", K))
        assert len(accepted) == K
        response = await b.post(
            "/v1/subaccounts/sub-cross/transfers",
            json={"transfer_id": "w-300", "asset": "USDC", "amount": "300", "kind": "withdrawal"},
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "INSUFFICIENT_MARGIN"
        balances = await a.ok("GET", "/v1/subaccounts/sub-cross/balances")
        assert Decimal(balances["balances"]["USDC"]) == DEPOSIT  # nothing moved
        await _assert_reserved(a, K)
        # Exactly the free 270 may leave; then nothing is free.
        response = await a.post(
            "/v1/subaccounts/sub-cross/transfers",
            json={"transfer_id": "w-270", "asset": "USDC", "amount": "270", "kind": "withdrawal"},
        )
        assert response.status_code == 201, response.text
        summary = (await b.ok("GET", "/v1/subaccounts/sub-cross/margin"))["summary"]
        assert Decimal(summary["free_collateral"]) == 0
        assert Decimal(summary["reserved_initial_margin"]) == 600 * K


# --- proof 2: rounds -------------------------------------------------------------------------


async def _timed_reserve(api: Api, coid: str, latencies: list[float]) -> httpx.Response:
    started = time.perf_counter()
    response = await _reserve(api, coid)
    latencies.append(time.perf_counter() - started)
    return response


async def _views(api: Api) -> list[dict[str, Any]]:
    """What this server reports for the subaccount: a check's ``before`` and GET …/margin."""
    before = (await _probe(api))["before"]
    summary = (await api.ok("GET", "/v1/subaccounts/sub-cross/margin"))["summary"]
    return [before, summary]


async def _assert_empty(api: Api) -> None:
    """Nothing reserved on this server: no active reservation, reserved IM 0, F(0) = 6,300."""
    assert await _active(api) == []
    for view in await _views(api):
        assert Decimal(view["reserved_initial_margin"]) == 0, view
        assert Decimal(view["free_collateral"]) == DEPOSIT, view


def _percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def test_rounds_of_concurrent_reserving_checks_never_overcommit(
    clean: None, servers: tuple[str, str], figures: Figures
) -> None:
    """Proof 2: ROUNDS rounds of 64 concurrent reserving checks over both servers. Every round
    exactly K = 10 are accepted, with after-free-collateral {F(1), …, F(10)} (serialised), and
    both servers then count reserved IM 6,000 and free collateral F(10) = 270; releasing them all
    brings both back to 0 and 6,300. Over-commits over all rounds: 0."""
    rounds_done = sent = overcommits = 0
    latencies: list[float] = []
    busy_s = 0.0
    try:
        async with _clients(servers) as apis:
            await _seed(apis[0])
            for n in range(ROUNDS):
                await marks(apis[n % 2], {"BTC-PERP": str(PRICE)})  # fresh for this round
                for api in apis:
                    await _assert_empty(api)

                started = time.perf_counter()
                sent += BURST
                responses = await asyncio.gather(
                    *(_timed_reserve(apis[i % 2], f"r{n}-{i}", latencies) for i in range(BURST))
                )
                busy_s += time.perf_counter() - started
                accepted, rejected = _split(list(responses))
                views = [view for api in apis for view in await _views(api)]
                free_seen = [Decimal(x["after"]["free_collateral"]) for x in accepted]
                free_seen += [Decimal(view["free_collateral"]) for view in views]
                if len(accepted) > K or min(free_seen) < 0:
                    overcommits += 1

                assert len(accepted) == K, (n, free_seen)
                assert sorted(Decimal(x["after"]["free_collateral"]) for x in accepted) == sorted(
                    _free_after(i) for i in range(1, K + 1)
                ), n
                for body in rejected:
                    assert [r["code"] for r in body["reasons"]] == ["INSUFFICIENT_MARGIN"], body
                    assert body["reservation_id"] is None
                for view in views:  # both servers, check and margin view: 10 · 600 and 270
                    assert Decimal(view["reserved_initial_margin"]) == 600 * K, (n, view)
                    assert Decimal(view["free_collateral"]) == _free_after(K), (n, view)
                ids = {x["reservation_id"] for x in accepted}
                for api in apis:
                    assert {r["reservation_id"] for r in await _active(api)} == ids, n

                # Release every reservation, alternating servers; the next round starts empty.
                released = await asyncio.gather(
                    *(
                        apis[i % 2].ok("DELETE", f"/v1/reservations/{reservation_id}")
                        for i, reservation_id in enumerate(sorted(ids))
                    )
                )
                assert [r["status"] for r in released] == ["released"] * K
                rounds_done += 1
            for api in apis:
                await _assert_empty(api)
    finally:
        figures.record("rounds (64 concurrent clients, 2 servers)", rounds_done, ROUNDS)
        figures.record("reserving checks sent", sent)
        figures.record("over-commits", overcommits, 0)
        if latencies:
            figures.record("reserving checks/s (both servers)", f"{len(latencies) / busy_s:.1f}")
            figures.record(
                "reserving check p50 / p99 (ms)",
                f"{_percentile(latencies, 0.5) * 1000:.0f} / "
                f"{_percentile(latencies, 0.99) * 1000:.0f}",
            )
    assert overcommits == 0
