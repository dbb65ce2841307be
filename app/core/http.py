"""The HTTP edge: problem-details answers for every error, request ids, access logs, metrics."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.db import BROKEN_CONNECTION, UNREACHABLE_SQLSTATES
from app.core.errors import PreflightError
from app.core.metrics import Metrics

log = logging.getLogger("preflight.http")

_M = TypeVar("_M", bound=BaseModel)
_NAMED_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)
PROBLEM_TYPE_BASE = "https://preflight.dev/problems/"
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    503: "UNAVAILABLE",
}


class FieldError(BaseModel):
    field: str = Field(description="The request field at fault, e.g. ``fills[3].size``")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details with a machine ``code``: the body of every error."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="e.g. VALIDATION_ERROR, NOT_FOUND, CONFLICT, UNAVAILABLE")
    errors: list[FieldError] | None = Field(
        None, description="Validation errors only: each bad field and what is wrong with it"
    )


_PROBLEM_DESCRIPTIONS = {
    400: "The body could not be decoded (e.g. it is not UTF-8)",
    401: "Missing or invalid API key",
    403: "The key's role may not do this",
    404: "Not found, or outside the key's account scope (not revealed)",
    409: "Conflicts with the current state: an idempotency id reused with other content, "
    "a rule of this resource, or a concurrent write (retry)",
    422: "Invalid input: ``errors`` names each bad field",
    503: "PostgreSQL is unreachable (UNAVAILABLE) or the process is overloaded (OVERLOADED): "
    "nothing was written; retry after ``Retry-After`` seconds",
}


# --- a body parsed by hand ---------------------------------------------------------------------
# FastAPI's body parameter costs the hot path a dependency solve and a Python-object detour;
# the check parses its own body with pydantic's JSON parser and answers every bad body exactly
# as FastAPI would (the same problem details, the same statuses).

_BODY_MODELS: list[type[BaseModel]] = []
"""Models of bodies parsed by hand: their schemas are added to the OpenAPI components."""


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model``, parsed by ``json_body``: the
    request body FastAPI would have documented for a ``model`` parameter."""
    _BODY_MODELS.append(model)
    return {
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
            "required": True,
        }
    }


def with_body_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the schemas of bodies parsed by hand (and their parts)."""
    _, top = models_json_schema(
        [(model, "validation") for model in _BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    return spec


class RequestResponseRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` and returns the ``Response`` itself
    (FastAPI's custom route class hook): no dependency solve, no response-model pass. The
    route is documented as usual; errors raised reach the app's handlers as from any route."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


class DirectRoutes:
    """Pure ASGI: a request for one of ``routes`` goes straight to its endpoint, past the
    router, FastAPI's request handling and the exception middleware — on the hot path those
    layers cost a check more CPU than its own parsing. The routes stay ordinary routes of the
    app (documented, matched the same way); an error an endpoint raises is answered by the
    app's own handlers, exactly as the exception middleware would answer it, and anything
    they leave (the catch-all's 500) goes on to the server-error middleware as before."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], RequestResponseRoute] = {}
        for route in routes:
            if not isinstance(route, RequestResponseRoute):
                raise TypeError(
                    f"{route!r}: only a RequestResponseRoute's endpoint takes a Request"
                )
            self.routes.update({(method, route.path): route for method in route.methods or ()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = _handler_of(request.app, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_of(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's handler for ``exc`` as the exception middleware finds it: by the exception's
    classes in order, the catch-all excepted (it belongs to the server-error middleware)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None


def _is_json(content_type: str) -> bool:
    # FastAPI's rule (strict content type, its default): application/json or any
    # application/*+json; a body without the header is not read as JSON.
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = main.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def json_body(request: Request, model: type[_M]) -> _M:
    """The request's body as ``model``, refused as FastAPI refuses a bad ``model`` parameter:
    422 for a missing, non-JSON, malformed or invalid body (each field named), 400 for bytes
    that are not UTF-8."""
    raw = await request.body()
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    if not _is_json(request.headers.get("content-type", "")):
        wrong = {
            "type": "model_attributes_type",
            "loc": ("body",),
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": None,
        }
        raise RequestValidationError([wrong])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # Asked only of a refused body, so a good one is not decoded twice.
        try:
            raw.decode()
        except UnicodeDecodeError:
            raise StarletteHTTPException(400, "There was an error parsing the body") from None
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each answered as problem details.

    FastAPI files a response ``model`` under the route's own media type (``application/json``);
    the body is sent as ``application/problem+json``, which is listed with the same schema."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "model": Problem,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        if status == 503:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            }
        responses[status] = response
    return responses


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + code.lower().replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


def field_path(location: tuple[int | str, ...] | list[int | str]) -> str:
    """``("body", "fills", 0, "size")`` → ``"fills[0].size"``; pydantic's own markers (a dict
    key's ``[key]``, a validator's ``function-after[…]``) are dropped."""
    path = ""
    for part in location:
        if part in ("body", "query", "path", "header") and not path:
            continue
        if isinstance(part, str) and ("[" in part or "(" in part):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        field = field_path(error["loc"])
        message = str(error["msg"])
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "json_invalid":
            field, message = "body", "body is not valid JSON"
        elif error["type"] == "value_error":
            # A check across fields says which field it is about: "bids: the book is crossed".
            message = message.removeprefix("Value error, ")
            named = _NAMED_MESSAGE.match(message)
            if named:
                prefix = "" if field == "body" else field + "."
                field, message = prefix + named.group(1), named.group(2)
        if {"field": field, "message": message} not in errors:
            errors.append({"field": field, "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "VALIDATION_ERROR", "Invalid request", detail, errors=errors)


async def _preflight_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PreflightError)
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return problem(exc.status, exc.code, exc.title, exc.detail, headers, **exc.extra)


def _allowed_methods(request: Request) -> str:
    """Every method the path supports. Starlette's 405 names only the methods of the first
    route whose path matched, but FastAPI has one route per method (RFC 9110 §15.5.6: the
    ``Allow`` of a 405 lists all of them). Asks the router, method by method."""
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    detail = str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem(exc.status_code, code, detail, detail, headers)


# 53300 too_many_connections: the server has no slot for a new connection; retry later.
_NO_CONNECTION_SLOT = ("53300",)


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, *BROKEN_CONNECTION)):
        return True
    if isinstance(exc, asyncpg.PostgresError):  # the check's bare driver (core/db.py, HotStore)
        return str(exc.sqlstate or "").startswith(UNREACHABLE_SQLSTATES + _NO_CONNECTION_SLOT)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(UNREACHABLE_SQLSTATES):
            return True
    return False


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    metrics: Metrics = request.app.state.runtime.metrics
    if isinstance(exc, IntegrityError | asyncpg.IntegrityConstraintViolationError):
        # Two requests raced for the same identifier; the loser may retry and be replayed.
        return problem(409, "CONFLICT", "Conflict", "a concurrent write conflicted; retry")
    if _is_unreachable(exc):
        metrics.dependency_errors.labels("postgresql").inc()
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        return problem(
            503,
            "UNAVAILABLE",
            "Service unavailable",
            "the database is unreachable",
            {"Retry-After": "1"},
        )
    raise exc


def overloaded(detail: str) -> JSONResponse:
    """503 ``OVERLOADED`` with ``Retry-After``: the process refused work it could not serve in
    time, and wrote nothing."""
    return problem(503, "OVERLOADED", "Service overloaded", detail, {"Retry-After": "1"})


async def _no_free_connection(request: Request, exc: Exception) -> JSONResponse:
    """Every pooled connection stayed busy for the pool's timeout: the process is overloaded,
    not broken. Nothing was written (the request never reached the database)."""
    request.app.state.runtime.metrics.requests_shed.inc()
    return overloaded("no database connection became free in time; retry")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if _is_unreachable(exc):
        return await _database_error(request, exc)
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "INTERNAL_ERROR", "Internal error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PreflightError, _preflight_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(asyncpg.InterfaceError, _database_error)
    app.add_exception_handler(asyncpg.InternalClientError, _database_error)
    # A refused or timed-out connection to PostgreSQL surfaces as a bare OSError (TimeoutError is
    # one). Answered here, not by the catch-all below: Starlette re-raises whatever reaches that
    # one after answering, and uvicorn then closes the client's keep-alive connection.
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(PoolTimeout, _no_free_connection)
    app.add_exception_handler(Exception, _unexpected_error)


class RequestContextMiddleware:
    """Gives each request an id (echoing a client's ``X-Request-ID``), logs it, times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The histogram's child per (method, route, status): prometheus_client's ``labels``
        # takes a lock and builds its key on every call.
        self._latency: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
                break
        # 128 random bits as 32 hex digits, uuid4().hex's form without building a UUID.
        request_id = request_id or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            key = (scope["method"], template, status)
            latency = self._latency.get(key)
            if latency is None:
                latency = self._latency[key] = self.metrics.request_latency.labels(
                    scope["method"], template, str(status)
                )
            latency.observe(elapsed)
            if template not in ("/healthz", "/metrics") and log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
