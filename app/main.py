"""The application factory: nothing is built at import time; tests pass their own settings."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import background
from app.accounts.keys_router import router as keys_router
from app.accounts.router import router as accounts_router
from app.audit.router import router as audit_router
from app.core.admission import AdmissionMiddleware
from app.core.apidocs import install_api_docs
from app.core.config import Settings, background_in_process
from app.core.http import (
    DirectRoutes,
    RequestContextMiddleware,
    install_error_handlers,
    with_body_schemas,
)
from app.core.logging import configure_logging
from app.core.metrics import Metrics
from app.core.ops import router as ops_router
from app.core.types import exact_decimal_arithmetic
from app.instruments.router import router as instruments_router
from app.marketdata.router import feed_router
from app.marketdata.router import router as marketdata_router
from app.pretrade.router import check_router
from app.pretrade.router import router as pretrade_router
from app.risk.account_router import router as risk_account_router
from app.risk.router import router as risk_router
from app.ui.router import create_router as create_ui_router
from app.wiring import open_runtime

API_VERSION = "0.1.0"


GC_THRESHOLDS = (10_000, 20, 20)
"""Allocations between young collections, and young/middle collections between older ones."""


def quiet_garbage_collector() -> None:
    """Keep the cyclic garbage collector out of the checks' tail latency. Its full pass walks
    every object the process holds: ~100 ms here once the libraries, the resident state and
    the caches are loaded, every few hundred checks at Python's default thresholds (700, 10,
    10) — the p99 of the check. What is loaded at start-up is never garbage, so it is frozen
    out of every pass; the thresholds make young passes rarer (reference counting frees almost
    everything a request makes) and full passes rarer still."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(settings: Settings | None = None) -> FastAPI:
    exact_decimal_arithmetic()
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, metrics) as runtime:
            app.state.runtime = runtime
            if background_in_process(settings):
                workers = background.tasks(runtime)
            else:  # a process of its own does it, off this one's event loop and CPU
                workers = [asyncio.create_task(background.supervise(settings))]
            if settings.demo_feed:
                from app.demo import feed_forever

                workers.append(asyncio.create_task(feed_forever(runtime)))
            quiet_garbage_collector()
            try:
                yield
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    app = FastAPI(
        title="Preflight",
        version=API_VERSION,
        summary="Pre-trade margin checks for crypto-derivatives desks trading with cross-margin",
        lifespan=lifespan,
        docs_url=None,  # install_api_docs serves both with the app's own assets
        redoc_url=None,
    )
    install_error_handlers(app)
    generated_openapi = app.openapi
    app.openapi = lambda: with_body_schemas(generated_openapi())  # type: ignore[method-assign]
    # Innermost: the check and the mark post go from admission straight to their endpoints.
    app.add_middleware(DirectRoutes, routes=[*check_router.routes, *feed_router.routes])
    # Inside the request-context middleware (added after it, so outer): a refused request
    # still gets its id, its log line and its latency metric.
    app.add_middleware(AdmissionMiddleware, max_in_flight=settings.max_in_flight, metrics=metrics)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    for router in (
        check_router,
        pretrade_router,
        ops_router,
        keys_router,
        instruments_router,
        accounts_router,
        risk_account_router,
        feed_router,
        marketdata_router,
        risk_router,
        audit_router,
    ):
        app.include_router(router)
    install_api_docs(app)
    app.include_router(create_ui_router())  # the risk page: /ui, / redirects there
    return app
