"""Admission control: a bounded number of API requests in flight per process.

A check costs milliseconds of CPU. When more arrive than the process can serve, an unbounded
queue makes every answer late, then every client time out; a desk's OMS is better served by an
immediate 503 it can retry (or route around) than by a correct answer after its own deadline.
So past ``max_in_flight`` concurrent ``/v1`` requests a process answers checks and reads at
once with a 503 problem (``OVERLOADED``, ``Retry-After: 1``) and does no work, writes nothing.

Only those are shed. Writes of record (fills, transfers, snapshots, marks, books, reference
data) are always admitted: refusing a fill or a mark under load would make every later check
wrong or stale, which is worse than a slow answer. Probes (``/healthz``, ``/readyz``,
``/metrics``) are never refused: an overloaded process is alive.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.http import overloaded
from app.core.metrics import Metrics


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, max_in_flight: int, metrics: Metrics) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.metrics = metrics
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        sheddable = scope["method"] == "GET" or scope["path"].startswith("/v1/pretrade/")
        if sheddable and self.in_flight >= self.max_in_flight:
            self.metrics.requests_shed.inc()
            response = overloaded(
                f"more than {self.max_in_flight} requests in flight in this process; retry"
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
