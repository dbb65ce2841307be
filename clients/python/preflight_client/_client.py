"""``Client`` and ``AsyncClient``: one typed method per operation (``_operations.py``) over
httpx, answers decoded into the models, error answers raised as ``errors``, and retries only
where a retry cannot do a thing twice.

A request is sent again, at most ``RetryPolicy.attempts`` times in all, when
- the server answered 503 with ``Retry-After`` (it wrote nothing): after that many seconds, or
  not at all if that is longer than ``max_wait_s``;
- the connection failed before the request was sent;
- the answer was lost (a timeout, a dropped connection) — only for an operation that changes
  nothing, or for a write whose body carries its idempotency ids (fills, transfers, and checks
  whose every order has a ``client_order_id``): the server answers a replay with the first
  result.
Any other write is sent once: its error is the caller's to judge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from preflight_client import models
from preflight_client._base import Operation
from preflight_client._operations import AsyncOperations, SyncOperations
from preflight_client.errors import Unavailable, error_from

__all__ = ["AsyncClient", "Client", "RetryPolicy"]

T = TypeVar("T")
USER_AGENT = "preflight-client/0.1.0"
# Raised before a byte of the request left: sending again cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Sends of one call in all, the first included (1: never retry)."""
    max_wait_s: float = 30.0
    """A longer ``Retry-After`` is not waited for: ``Unavailable`` is raised at once."""
    backoff_s: float = 0.2
    """The wait after a failed connection or a lost answer; doubles with each attempt."""


@dataclass(frozen=True)
class _Again:
    """Send the request again after ``wait`` seconds."""

    wait: float


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):  # a datetime too
        return value.isoformat()
    return str(value)


def _replayable(op: Operation[object], body: BaseModel | None) -> bool:
    """Whether sending this request again cannot change anything twice."""
    if op.retry == "read":
        return True
    if op.retry != "replay":
        return False
    if isinstance(body, models.CheckIn):  # a check without an order id is a new check
        return all(order.client_order_id is not None for order in body.orders)
    return True


class _Calls:
    """What both clients share: the request of a call, and the decision after each try."""

    def __init__(
        self, api_key: str | None, retry: RetryPolicy | None, headers: dict[str, str] | None
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        op: Operation[T],
        path: dict[str, str] | None,
        query: dict[str, object] | None,
        body: BaseModel | None,
    ) -> httpx.Request:
        url = op.path.format(**{k: quote(str(v), safe="") for k, v in (path or {}).items()})
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        # One id for the call and all its retries: the server's logs tie them together.
        headers = {**self.headers, "X-Request-ID": uuid.uuid4().hex}
        content = None
        if body is not None:
            # Only what the caller set (and the ids filled in for it): a PATCH changes only that.
            content = body.model_dump_json(exclude_unset=True)
            headers["Content-Type"] = "application/json"
        return http.build_request(op.method, url, params=params, headers=headers, content=content)

    def wait_after_error(self, exc: httpx.TransportError, attempt: int, safe: bool) -> float | None:
        """Seconds to wait before sending again after a failed send, or None: raise it."""
        if attempt >= self.retry.attempts or not (safe or isinstance(exc, _NOT_SENT)):
            return None
        return float(self.retry.backoff_s * 2 ** (attempt - 1))

    def answer(
        self, op: Operation[T], response: httpx.Response, attempt: int, safe: bool
    ) -> T | _Again:
        """The decoded answer, or when to send again; raises an error answer not to retry."""
        if response.status_code in op.answers:
            return op.decode(response)
        error = error_from(response)
        if (
            isinstance(error, Unavailable)
            and error.retry_after is not None
            and error.retry_after <= self.retry.max_wait_s
            and attempt < self.retry.attempts
            and safe
        ):
            return _Again(error.retry_after)
        raise error


class Client(SyncOperations):
    """Preflight over HTTP, synchronously: ``with Client(url, key) as pf: pf.check(...)``.

    ``transport`` (an httpx transport) replaces the network, e.g. to reach a WSGI app."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._calls = _Calls(api_key, retry, headers)
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def _call(
        self,
        op: Operation[T],
        *,
        path: dict[str, str] | None = None,
        query: dict[str, object] | None = None,
        body: BaseModel | None = None,
    ) -> T:
        request = self._calls.request(self._http, op, path, query, body)
        safe = _replayable(op, body)
        attempt = 1
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                wait = self._calls.wait_after_error(exc, attempt, safe)
                if wait is None:
                    raise
            else:
                answer = self._calls.answer(op, response, attempt, safe)
                if not isinstance(answer, _Again):
                    return answer
                wait = answer.wait
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(AsyncOperations):
    """Preflight over HTTP, for asyncio: ``async with AsyncClient(url, key) as pf:
    await pf.check(...)``. ``transport`` replaces the network, e.g.
    ``httpx.ASGITransport(app)`` to reach an app in the same process."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._calls = _Calls(api_key, retry, headers)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def _call(
        self,
        op: Operation[T],
        *,
        path: dict[str, str] | None = None,
        query: dict[str, object] | None = None,
        body: BaseModel | None = None,
    ) -> T:
        request = self._calls.request(self._http, op, path, query, body)
        safe = _replayable(op, body)
        attempt = 1
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                wait = self._calls.wait_after_error(exc, attempt, safe)
                if wait is None:
                    raise
            else:
                answer = self._calls.answer(op, response, attempt, safe)
                if not isinstance(answer, _Again):
                    return answer
                wait = answer.wait
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
