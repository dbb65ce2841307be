"""Delivering the outbox: POST each event as JSON to the configured webhook; a 2xx marks it
delivered, anything else retries after ``webhook_backoff_s · 2^(attempts−1)`` (at most five
minutes). Several processes may run the worker: PostgreSQL hands each event to one of them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx

from app.core.runtime import Runtime
from app.core.types import format_timestamp, utcnow
from app.risk import repository

log = logging.getLogger("preflight.webhooks")
MAX_BACKOFF_S = 300.0


def backoff(attempts: int, base_s: float) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempts - 1)))


async def deliver_due(
    runtime: Runtime, client: httpx.AsyncClient, url: str, batch: int = 20
) -> int:
    """One pass over the due events; the number handled (delivered or rescheduled)."""
    async with runtime.session_factory() as session, session.begin():
        events = await repository.due_events(session, utcnow(), batch)
        for event in events:
            body = {
                "id": event.id,
                "event": event.event,
                "created_at": format_timestamp(event.created_at),
                "data": event.payload,
            }
            try:
                response = await client.post(url, json=body)
                ok, error = response.is_success, f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
            event.attempts += 1
            if ok:
                event.delivered_at = utcnow()
            else:
                event.last_error = error
                event.next_attempt_at = utcnow() + backoff(
                    event.attempts, runtime.settings.webhook_backoff_s
                )
                log.warning("webhook delivery failed", extra={"event_id": event.id, "error": error})
        return len(events)


async def deliver_forever(runtime: Runtime, url: str, idle_s: float = 0.2) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            try:
                handled = await deliver_due(runtime, client, url)
            except Exception:  # the database may be away; try again shortly
                log.exception("webhook worker pass failed")
                handled = 0
            if not handled:
                await asyncio.sleep(idle_s)
