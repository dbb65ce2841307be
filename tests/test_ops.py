"""Operations: health, readiness, metrics, request ids, and problem details for every error."""

from __future__ import annotations

import httpx

from tests.conftest import Api


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
