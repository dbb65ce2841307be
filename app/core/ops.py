"""Liveness, readiness and metrics: no key needed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from app.core.cache import CacheUnavailable
from app.core.deps import RuntimeDep

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    cache: Literal["ok", "degraded", "in-process"]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep, response: Response) -> Readiness:
    """503 only when the database is unreachable; a cache outage is ``degraded`` because checks
    keep answering from the marks persisted in the database."""
    database: Literal["ok", "unavailable"] = "ok"
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        database = "unavailable"
    cache: Literal["ok", "degraded", "in-process"] = "ok" if runtime.cache_shared else "in-process"
    try:
        await runtime.cache.ping()
    except CacheUnavailable:
        cache = "degraded"
    if database == "unavailable":
        response.status_code = 503
        return Readiness(status="unavailable", database=database, cache=cache)
    return Readiness(
        status="degraded" if cache == "degraded" else "ready", database=database, cache=cache
    )


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
