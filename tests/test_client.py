"""The typed Python client (clients/python, ``preflight_client``) against the real app: typed
answers, error answers as typed exceptions, automatic idempotency ids that make a retried write
count once, retries only where they are safe — and a failing test when the client and
openapi/openapi.json drift apart.

The async client talks to the in-process app through ``httpx.ASGITransport``, the sync client
to a real server process; the 503s come from a small local HTTP app that answers them (a real
peer, not a stand-in for Preflight)."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from preflight_client import (
    AsyncClient,
    Client,
    NotFound,
    Overloaded,
    PreflightError,
    RetryPolicy,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    models,
)
from preflight_client._operations import OPERATIONS
from pydantic import BaseModel, RootModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from tests.conftest import Api
from tests.factories import deposit, desk, marks
from tests.servers import ADMIN_KEY, server_env, serving
from tests.test_pretrade import _book

ROOT = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "clients/python/generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()


def _buy(size: str, **extra: Any) -> models.OrderIn:
    return models.OrderIn(instrument="BTC-PERP", side="buy", size=size, type="limit", **extra)


async def _count(settings: Settings, table: str) -> int:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return int(
                (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            )
    finally:
        await engine.dispose()


class LoseFirstAnswer(httpx.AsyncBaseTransport):
    """The network between client and app: the first request to ``path`` reaches the app and
    is answered, but the answer is lost on the way back (a read timeout)."""

    def __init__(self, app: FastAPI, path: str) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.path = path
        self.sent: list[bytes] = []
        self.lost: httpx.Response | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != self.path:
            return response
        self.sent.append(request.content)
        if self.lost is None:
            await response.aread()
            self.lost = response
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.fixture
async def trader(admin: Api) -> Api:
    """A funded cross subaccount (20,000 USDC), fresh marks at 60,000, a fresh book."""
    await desk(admin)
    await deposit(admin, "sub-cross", "20000")
    await marks(admin, {"BTC-PERP": "60000"})
    await _book(admin)
    return admin


@pytest.fixture
async def preflight(app: FastAPI, trader: Api) -> AsyncIterator[AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient("http://preflight", ADMIN_KEY, transport=transport) as client:
        yield client


# --- typed answers and errors ------------------------------------------------------------------


async def test_a_check_answers_a_typed_model_with_its_reasons(preflight: AsyncClient) -> None:
    """As test_reasons: 3.4 resting at 60,000 needs IM 20,400 against equity 19,959.2."""
    basket = models.CheckIn(subaccount_id="sub-cross", orders=[_buy("3.4", limit_price="60000")])
    answer = await preflight.check(basket)
    assert isinstance(answer, models.CheckOut)
    assert answer.decision == "reject"
    [reason] = answer.reasons
    assert reason.code == "INSUFFICIENT_MARGIN"
    assert (reason.value, reason.limit, reason.shortfall) == (
        Decimal("20400"),
        Decimal("19959.2"),
        Decimal("440.8"),
    )
    assert isinstance(answer.before.equity, Decimal)
    assert isinstance(answer.executions[0], models.ExecutionOut)

    # The order got an id when it was built: the same basket again replays the first answer.
    assert basket.orders[0].client_order_id
    assert (await preflight.check(basket)).check_id == answer.check_id

    # A deposit of the shortfall (its transfer_id filled in) lets a new basket of it pass.
    assert reason.shortfall is not None
    moved = await preflight.record_transfer(
        "sub-cross", models.TransferIn(asset="USDC", amount=reason.shortfall, kind="deposit")
    )
    assert moved.amount == Decimal("440.8") and moved.transfer_id
    again = models.CheckIn(subaccount_id="sub-cross", orders=[_buy("3.4", limit_price="60000")])
    assert (await preflight.check(again)).decision == "accept"


async def test_an_invalid_request_raises_validation_failed_with_each_field(
    preflight: AsyncClient,
) -> None:
    basket = models.CheckIn(
        subaccount_id="sub-cross",
        orders=[_buy("-1", limit_price="60000"), _buy("1", limit_price="60000", reduce_only=True)],
        reservation_ttl_s=0,
    )
    with pytest.raises(ValidationFailed) as raised:
        await preflight.check(basket)
    error = raised.value
    assert (error.status, error.code) == (422, "VALIDATION_ERROR")
    assert {"orders[0].size", "reservation_ttl_s"} <= set(error.messages())
    assert all(isinstance(e, models.FieldError) and e.message for e in error.errors)
    assert error.request_id
    assert isinstance(error, PreflightError)


async def test_other_errors_raise_their_own_types(app: FastAPI, preflight: AsyncClient) -> None:
    with pytest.raises(NotFound) as missing:
        await preflight.get_subaccount("no-such-sub")
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient("http://preflight", "pf_wrong", transport=transport) as stranger:
        with pytest.raises(Unauthorized) as refused:
            await stranger.list_accounts()
    assert refused.value.code == "UNAUTHORIZED"


async def test_a_patch_sends_only_the_fields_set(preflight: AsyncClient) -> None:
    before = await preflight.get_subaccount("sub-cross")
    after = await preflight.update_subaccount("sub-cross", models.SubaccountPatch(strategy="basis"))
    assert after.strategy == "basis"
    assert after.margin_mode == before.margin_mode


# --- idempotent retries ------------------------------------------------------------------------


async def test_a_fill_whose_answer_was_lost_is_retried_and_recorded_once(
    app: FastAPI, trader: Api, settings: Settings
) -> None:
    network = LoseFirstAnswer(app, "/v1/fills")
    fill = models.FillIn(
        subaccount_id="sub-cross",
        instrument="BTC-PERP",
        side="buy",
        size="0.5",
        price="60000",
        fee="1.5",
        ts="2026-01-01T00:00:00Z",
    )
    async with AsyncClient("http://preflight", ADMIN_KEY, transport=network) as preflight:
        answer = await preflight.record_fills(models.FillsIn(fills=[fill]))
        positions = await preflight.get_positions("sub-cross")
    assert len(network.sent) == 2 and network.sent[0] == network.sent[1]
    assert [f.fill_id for f in answer.fills] == [fill.fill_id]
    assert [(p.instrument, p.size) for p in positions.positions] == [("BTC-PERP", Decimal("0.5"))]
    assert await _count(settings, "fills") == 1


async def test_a_check_whose_answer_was_lost_is_replayed(app: FastAPI, trader: Api) -> None:
    network = LoseFirstAnswer(app, "/v1/pretrade/check")
    basket = models.CheckIn(
        subaccount_id="sub-cross", orders=[_buy("0.1", limit_price="60000")], reserve=True
    )
    async with AsyncClient("http://preflight", ADMIN_KEY, transport=network) as preflight:
        answer = await preflight.check(basket)
        reservations = await preflight.list_reservations("sub-cross")
    assert network.lost is not None and len(network.sent) == 2
    assert answer.check_id == network.lost.json()["check_id"]
    assert [r.reservation_id for r in reservations.reservations] == [answer.reservation_id]


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v1/accounts", lambda pf: pf.create_account(models.AccountIn(account_id="a", name="A"))),
        # A check whose order has no id is a new check each time it is sent.
        (
            "/v1/pretrade/check",
            lambda pf: pf.check(
                models.CheckIn(subaccount_id="sub-cross", orders=[_buy("0.1", limit_price="60000", client_order_id=None)])
            ),
        ),
    ],
)  # fmt: skip
async def test_a_write_without_an_id_is_not_sent_again(
    app: FastAPI, trader: Api, path: str, call: Callable[[AsyncClient], Any]
) -> None:
    network = LoseFirstAnswer(app, path)
    async with AsyncClient("http://preflight", ADMIN_KEY, transport=network) as preflight:
        with pytest.raises(httpx.ReadTimeout):
            await call(preflight)
    assert len(network.sent) == 1


# --- 503 with Retry-After ----------------------------------------------------------------------


class Busy:
    """A small HTTP app (ASGI and WSGI) that answers its first ``busy`` requests 503
    ``OVERLOADED`` with ``Retry-After``, as Preflight does when overloaded, then 200."""

    def __init__(self, busy: int, retry_after: str = "0") -> None:
        self.busy = busy
        self.retry_after = retry_after
        self.requests = 0

    def _answer(self) -> tuple[int, list[tuple[str, str]], bytes]:
        self.requests += 1
        if self.requests > self.busy:
            return 200, [("content-type", "application/json")], b'{"status": "ok"}'
        problem = {
            "type": "https://preflight.dev/problems/overloaded",
            "title": "Service overloaded",
            "status": 503,
            "detail": "retry",
            "code": "OVERLOADED",
        }
        headers = [("content-type", "application/problem+json"), ("retry-after", self.retry_after)]
        return 503, headers, json.dumps(problem).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status, headers, body = self._answer()
        raw = [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def wsgi(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        status, headers, body = self._answer()
        start_response(f"{status} {'OK' if status == 200 else 'Service Unavailable'}", headers)
        return [body]


def _busy_client(peer: Busy, attempts: int = 3, max_wait_s: float = 30.0) -> AsyncClient:
    retry = RetryPolicy(attempts=attempts, max_wait_s=max_wait_s, backoff_s=0)
    return AsyncClient("http://busy", "k", retry=retry, transport=httpx.ASGITransport(app=peer))


async def test_a_503_is_retried_after_its_retry_after() -> None:
    peer = Busy(busy=1, retry_after="1")
    started = time.monotonic()
    async with _busy_client(peer) as client:
        assert (await client.healthz()).status == "ok"
    assert peer.requests == 2
    assert time.monotonic() - started >= 1.0


async def test_503s_beyond_the_attempts_raise_overloaded() -> None:
    peer = Busy(busy=10)
    async with _busy_client(peer, attempts=3) as client:
        with pytest.raises(Overloaded) as raised:
            await client.list_marks()
    assert peer.requests == 3
    assert (raised.value.code, raised.value.retry_after) == ("OVERLOADED", 0)
    assert isinstance(raised.value, Unavailable)


async def test_a_retry_after_longer_than_the_wait_allowed_is_raised_at_once() -> None:
    peer = Busy(busy=1, retry_after="120")
    async with _busy_client(peer, max_wait_s=5) as client:
        with pytest.raises(Unavailable) as raised:
            await client.healthz()
    assert (peer.requests, raised.value.retry_after) == (1, 120)


@pytest.mark.parametrize(
    ("call", "sent"),
    [
        (lambda pf: pf.record_fills(models.FillsIn(fills=[models.FillIn(
            subaccount_id="s", instrument="BTC-PERP", side="buy", size="1", price="1", fee="0",
            ts="2026-01-01T00:00:00Z")])), 3),
        (lambda pf: pf.record_transfer("s", models.TransferIn(asset="USDC", amount="1", kind="deposit")), 3),
        (lambda pf: pf.max_size(models.MaxSizeIn(subaccount_id="s", instrument="BTC-PERP", side="buy", type="market")), 3),
        (lambda pf: pf.create_account(models.AccountIn(account_id="a", name="A")), 1),
        (lambda pf: pf.put_book("BTC-PERP", models.BookIn(bids=[], asks=[], ts="2026-01-01T00:00:00Z")), 1),
    ],
)  # fmt: skip
async def test_on_a_503_only_reads_and_replayable_writes_are_sent_again(
    call: Callable[[AsyncClient], Any], sent: int
) -> None:
    peer = Busy(busy=10)
    async with _busy_client(peer, attempts=3) as client:
        with pytest.raises(Unavailable):
            await call(client)
    assert peer.requests == sent


def test_the_sync_client_retries_a_503_too() -> None:
    peer = Busy(busy=2)
    retry = RetryPolicy(attempts=3, backoff_s=0)
    with Client("http://busy", retry=retry, transport=httpx.WSGITransport(app=peer.wsgi)) as c:
        assert c.healthz().status == "ok"
    assert peer.requests == 3


# --- the sync client against a server process --------------------------------------------------


async def test_the_sync_client_against_a_server_process(
    trader: Api, postgres_url: str, redis_url: str
) -> None:
    with (
        serving(server_env(postgres_url, redis_url)) as server,
        Client(server.url, ADMIN_KEY) as preflight,
    ):
        assert preflight.readyz().status == "ready"
        answer = preflight.check(
            models.CheckIn(subaccount_id="sub-cross", orders=[_buy("3.4", limit_price="60000")])
        )
        assert [r.code for r in answer.reasons] == ["INSUFFICIENT_MARGIN"]
        fills = models.FillsIn(
            fills=[
                models.FillIn(
                    subaccount_id="sub-cross",
                    instrument="BTC-PERP",
                    side="sell",
                    size="0.2",
                    price="60000",
                    fee="0",
                    ts="2026-01-01T00:00:00Z",
                )
            ]
        )
        first = preflight.record_fills(fills)
        assert preflight.record_fills(fills) == first  # a replay: the first answer
        [position] = preflight.get_positions("sub-cross").positions
        assert position.size == Decimal("-0.2")
        with pytest.raises(ValidationFailed) as raised:
            preflight.set_leverage(
                "sub-cross", models.LeverageIn(instrument="BTC-PERP", leverage=0)
            )
        assert "leverage" in raised.value.messages()


# --- drift between the client and the spec -----------------------------------------------------


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return f"list[{_hint_name(typing.get_args(hint)[0])}]"
    return str(getattr(hint, "__name__", hint))


def drift(spec: dict[str, Any]) -> list[str]:
    """How the client differs from ``spec``: operations without a method (or with the wrong
    parameters, body or answer), schemas without a model or with other fields."""
    found: list[str] = []
    schemas: dict[str, Any] = spec["components"]["schemas"]
    ops = {(op.method, op.path): op for op in OPERATIONS}
    wanted = {(m.upper(), p) for p, methods in spec["paths"].items() for m in methods}
    found += [f"the client has {m} {p}, the spec does not" for m, p in sorted(ops.keys() - wanted)]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            op = ops.get((method.upper(), path))
            if op is None:
                found.append(f"no client method for {method.upper()} {path}")
                continue
            params = operation.get("parameters", [])
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            # The answer's model (JSON, or NDJSON lines), or text when it names none; a CSV
            # it may also send is not the client's (it asks for JSON).
            spec_answers = {
                next(
                    (
                        content[kind]["schema"]["$ref"].rsplit("/", 1)[1]
                        for kind in ("application/json", "application/x-ndjson")
                        if kind in content
                    ),
                    "str",
                )
                for status, response in operation["responses"].items()
                if status.startswith("2")
                for content in [response.get("content") or {}]
            }
            for client in (Client, AsyncClient):
                where = f"{client.__name__}.{op.name} ({method.upper()} {path})"
                function = getattr(client, op.name)
                signature = inspect.signature(function)
                hints = typing.get_type_hints(function)
                positional = [
                    name
                    for name, p in signature.parameters.items()
                    if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "body")
                ]
                keywords = {
                    name: p.default is p.empty
                    for name, p in signature.parameters.items()
                    if p.kind is p.KEYWORD_ONLY
                }
                if positional != [p["name"] for p in params if p["in"] == "path"]:
                    found.append(f"{where}: path parameters {positional}")
                query = {p["name"]: p.get("required", False) for p in params if p["in"] == "query"}
                if keywords != query:
                    found.append(f"{where}: query parameters {keywords}, the spec {query}")
                if body is None:
                    if "body" in hints:
                        found.append(f"{where}: takes a body the spec does not")
                else:
                    spec_body = body["schema"]["$ref"].rsplit("/", 1)[1]
                    if _hint_name(hints.get("body")) != spec_body:
                        found.append(f"{where}: body {hints.get('body')}, the spec {spec_body}")
                answer = _hint_name(hints["return"]).removeprefix("list[").removesuffix("]")
                if spec_answers != {answer}:
                    found.append(f"{where}: answers {answer}, the spec {spec_answers}")

    auto_ids = GENERATE.AUTO_IDS
    names = set(models.__all__)
    found += [f"model {n} has no schema" for n in sorted(names - schemas.keys())]
    for name, schema in schemas.items():
        model = getattr(models, name, None) if name in names else None
        if model is None:
            found.append(f"schema {name} has no model")
        elif "enum" in schema:
            if list(typing.get_args(model)) != schema["enum"]:
                found.append(f"{name}: values {typing.get_args(model)}, the spec {schema['enum']}")
        elif "properties" not in schema:
            if not issubclass(model, RootModel):
                found.append(f"{name}: a free-form object in the spec")
        else:
            assert issubclass(model, BaseModel)
            fields = model.model_fields
            if set(fields) != set(schema["properties"]):
                found.append(
                    f"{name}: fields {sorted(fields)}, the spec {sorted(schema['properties'])}"
                )
            required = {f for f, info in fields.items() if info.is_required()}
            # The ids the client fills in are required by the server, never of the caller.
            spec_required = set(schema.get("required", [])) - set(auto_ids.get(name, ()))
            if required != spec_required:
                found.append(
                    f"{name}: requires {sorted(required)}, the spec {sorted(spec_required)}"
                )
    return found


def test_the_client_matches_the_spec() -> None:
    assert drift(SPEC) == []


def test_a_spec_that_drifts_from_the_client_is_noticed() -> None:
    changed = copy.deepcopy(SPEC)
    changed["paths"]["/v1/fills"]["delete"] = changed["paths"]["/v1/fills"]["post"]
    schemas = changed["components"]["schemas"]
    schemas["CheckIn"]["properties"]["note"] = {"type": "string"}
    schemas["CheckIn"]["required"].append("note")
    schemas["FillOut"]["required"].remove("fee")
    del schemas["FillOut"]["properties"]["fee"]
    changed["paths"]["/v1/marks"]["get"]["parameters"] = [
        {"in": "query", "name": "symbol", "required": False, "schema": {"type": "string"}}
    ]
    assert drift(changed) == [
        "no client method for DELETE /v1/fills",
        "Client.list_marks (GET /v1/marks): query parameters {}, the spec {'symbol': False}",
        "AsyncClient.list_marks (GET /v1/marks): query parameters {}, the spec {'symbol': False}",
        "CheckIn: fields ['orders', 'reservation_ttl_s', 'reserve', 'subaccount_id'], the spec "
        "['note', 'orders', 'reservation_ttl_s', 'reserve', 'subaccount_id']",
        "CheckIn: requires ['orders', 'subaccount_id'], the spec ['note', 'orders', "
        "'subaccount_id']",
        "FillOut: fields ['client_order_id', 'entry_price', 'fee', 'fee_asset', 'fill_id', "
        "'instrument', 'position_size', 'price', 'realized_pnl', 'side', 'size', "
        "'subaccount_id', 'ts'], the spec ['client_order_id', 'entry_price', 'fee_asset', "
        "'fill_id', 'instrument', 'position_size', 'price', 'realized_pnl', 'side', 'size', "
        "'subaccount_id', 'ts']",
        "FillOut: requires ['client_order_id', 'entry_price', 'fee', 'fee_asset', 'fill_id', "
        "'instrument', 'position_size', 'price', 'realized_pnl', 'side', 'size', "
        "'subaccount_id', 'ts'], the spec ['client_order_id', 'entry_price', 'fee_asset', "
        "'fill_id', 'instrument', 'position_size', 'price', 'realized_pnl', 'side', 'size', "
        "'subaccount_id', 'ts']",
    ]


def test_the_generated_files_are_what_the_spec_gives() -> None:
    """The models' types too: regenerate with ``.venv/bin/python clients/python/generate.py``."""
    for path, expected in GENERATE.render(SPEC).items():
        assert path.read_text() == expected, f"{path.name} is stale: run clients/python/generate.py"
