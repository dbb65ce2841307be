"""Liveness, readiness and metrics: no key needed."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from app.core.cache import CacheUnavailable
from app.core.deps import RuntimeDep
from app.core.runtime import Runtime

router = APIRouter(tags=["operations"])
READY_TIMEOUT_S = 2.0
"""How long ``/readyz`` waits for PostgreSQL before calling it unavailable."""


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    cache: Literal["ok", "degraded", "in-process"]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


_probes: set[asyncio.Task[None]] = set()


def _forget(task: asyncio.Task[None]) -> None:
    _probes.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a failed probe is an answer, not an unhandled error


async def _database_answers(runtime: Runtime) -> bool:
    """``SELECT 1`` within ``READY_TIMEOUT_S``. A hung PostgreSQL would otherwise hold the probe
    for the driver's 30-s statement timeout; a probe that overruns is cancelled and left to
    clean up its connection in the background while readiness answers at once."""

    async def probe() -> None:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    task = asyncio.ensure_future(probe())
    _probes.add(task)  # a strong reference until it is done
    task.add_done_callback(_forget)
    done, _ = await asyncio.wait({task}, timeout=READY_TIMEOUT_S)
    if not done:
        task.cancel()
        return False
    return not task.cancelled() and task.exception() is None


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep, response: Response) -> Readiness:
    """503 only when the database is unreachable; a cache outage is ``degraded`` because checks
    keep answering from the marks persisted in the database."""
    database: Literal["ok", "unavailable"] = (
        "ok" if await _database_answers(runtime) else "unavailable"
    )
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
