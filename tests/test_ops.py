"""Operations: health, readiness, metrics, request ids, and problem details for every error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from app.core.config import Settings
from app.main import create_app
from tests import services
from tests.conftest import ADMIN_KEY, Api
from tests.factories import BTC_PERP, deposit, desk, fill, marks


async def test_healthz_and_readyz_need_no_key(raw_client: httpx.AsyncClient) -> None:
    assert (await raw_client.get("/healthz")).json() == {"status": "ok"}
    ready = await raw_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "cache": "ok"}


async def test_metrics_expose_request_latency_by_route(admin: Api) -> None:
    await admin.get("/v1/assets")
    text = (await admin.client.get("/metrics")).text
    assert 'preflight_request_duration_seconds_count{method="GET",route="/v1/assets"' in text


async def test_request_id_is_echoed_or_made_up(raw_client: httpx.AsyncClient) -> None:
    echoed = await raw_client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    made = await raw_client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


async def test_framework_errors_are_problem_details(admin: Api) -> None:
    missing = await admin.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "NOT_FOUND"
    wrong_method = await admin.delete("/v1/assets")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"
    invalid = await admin.post("/v1/accounts", content=b"{not json")
    assert invalid.status_code == 422
    assert invalid.json()["code"] == "VALIDATION_ERROR"


async def test_missing_key_is_401_problem(raw_client: httpx.AsyncClient) -> None:
    response = await raw_client.get("/v1/assets")
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


async def test_checks_and_reads_past_the_in_flight_limit_are_refused_at_once(
    clean: None, settings: Settings
) -> None:
    """With ``max_in_flight = 1``: while one check is in the process (its body still arriving),
    a read and another check are answered 503 OVERLOADED with Retry-After; a write of record
    (here an account) is still admitted; the probes still answer; once the first finishes,
    the read succeeds."""
    app = create_app(settings.model_copy(update={"max_in_flight": 1}))
    admitted, release = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"subaccount_id": "sub-none", '
        admitted.set()  # the app asked for more of the body: it is inside, in flight
        await release.wait()
        yield b'"orders": [{"instrument": "BTC-PERP", "side": "buy", "size": "1", "type": "market"}]}'

    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    account = {"account_id": "acct-1", "name": "One"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pf") as client,
    ):
        first = asyncio.create_task(
            client.post("/v1/pretrade/check", content=slow_body(), headers=headers)
        )
        await asyncio.wait_for(admitted.wait(), 10)
        for refused in (
            await client.get("/v1/accounts", headers=headers),
            await client.post("/v1/pretrade/check", headers=headers, json={}),
        ):
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["code"] == "OVERLOADED"
        created = await client.post("/v1/accounts", json=account, headers=headers)
        assert created.status_code == 201, created.text
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert "preflight_requests_shed_total 2.0" in (await client.get("/metrics")).text

        release.set()
        assert (await first).status_code == 404  # no such subaccount: it was served
        listed = await client.get("/v1/accounts", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [a["account_id"] for a in listed.json()["accounts"]] == ["acct-1"]


async def test_no_free_database_connection_is_503_overloaded_not_500(
    clean: None, settings: Settings
) -> None:
    """A process whose every pooled connection stays busy past the pool timeout (5 s) answers
    503 OVERLOADED with Retry-After, and the requests holding the connections still finish.
    Here the pool has 1 + 1 overflow connections, and two fills hold both while they wait for
    the subaccount's row lock, which the test holds. (The pre-trade check has a pool of its own,
    as large as the requests the process admits, so admission control refuses before it can
    run dry.)"""
    app = create_app(settings.model_copy(update={"db_pool_size": 1}))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def fills(fill_id: str) -> dict[str, object]:
        return {"fills": [fill(fill_id, "buy", "0.1", "60000")]}

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pf") as client,
    ):
        admin = Api(client, ADMIN_KEY)
        await desk(admin)
        # The wait below outlasts the default 5 s freshness; staleness is not tested here.
        await admin.ok("PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, "stale_after_s": "60"})
        await deposit(admin, "sub-cross", "100000")
        await marks(admin, {"BTC-PERP": "60000"})
        holder = await asyncpg.connect(services.asyncpg_dsn(settings.database_url))
        try:
            locked = holder.transaction()
            await locked.start()
            await holder.execute(
                "SELECT 1 FROM subaccounts WHERE subaccount_id = 'sub-cross' FOR UPDATE"
            )
            waiting = [
                asyncio.create_task(client.post("/v1/fills", json=fills(f"f-{i}"), headers=headers))
                for i in range(2)
            ]
            for _ in range(500):  # both fills are queued on the row lock, holding a connection
                blocked = await holder.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if blocked == 2:
                    break
                await asyncio.sleep(0.02)
            assert blocked == 2
            refused = await client.get("/v1/accounts", headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["code"] == "OVERLOADED"
            await locked.rollback()
        finally:
            await holder.close()
        for response in await asyncio.gather(*waiting):
            assert response.status_code in (200, 201), response.text


async def test_metrics_show_the_age_of_each_mark_read(admin: Api) -> None:
    """A mark posted 3 s ago and read by a check shows an age of about 3 s when scraped."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    posted = datetime.now(UTC) - timedelta(seconds=3)
    await marks(admin, {"BTC-PERP": "60000"}, **{"BTC-PERP": {"ts": posted.isoformat()}})
    body = {
        "subaccount_id": "sub-cross",
        "orders": [{"instrument": "BTC-PERP", "side": "buy", "size": "0.01", "type": "market"}],
    }
    await admin.ok("POST", "/v1/pretrade/check", json=body)
    text = (await admin.client.get("/metrics")).text
    [line] = [
        x
        for x in text.splitlines()
        if x.startswith('preflight_mark_age_seconds{symbol="BTC-PERP"}')
    ]
    assert 3.0 <= float(line.split()[-1]) < 60.0
