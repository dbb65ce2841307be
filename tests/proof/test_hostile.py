"""Proof 1, hostile input: Schemathesis over ``openapi/openapi.json`` against a real server
process with the admin key — every operation, ``scale(ci=10, full=100)`` examples each — answers
no request with a server error and every response conforms to the committed schema (status code
documented, content type documented, body and headers valid against it).

The server runs on the test run's PostgreSQL and Redis, emptied first, and a realistic desk is
seeded through the API (reference data, accounts in all three modes, deposits, positions, fresh
marks, a book, limits, a leverage, a trading state, a reservation, a trader key, an open margin
call). Schemathesis' dictionaries put those real ids into generated requests (half the time in
paths and queries, so the 404s run too; mostly in bodies) along with ordinary and extreme-but-
valid decimals and timestamps, so requests reach past validation into the handlers and the
margin engine; the rest is Schemathesis' own: boundary values, wrong types, missing and unknown
fields, bad JSON, undocumented methods.

Figures: operations tested, test cases generated, requests the server answered (counted by the
server itself, from ``/metrics``), server errors (also from ``/metrics``, so a 5xx Schemathesis
did not attribute is still counted) and schema violations. Below, each bug Schemathesis found
has a regression test reproducing the exact failing request in process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.core.deserialization import DeserializationContext
from schemathesis.core.transport import Response as SchemathesisResponse

from app.core.config import Settings
from tests.conftest import Api, empty_everything
from tests.factories import BTC_PERP, ETH_PERP, deposit, desk, fill, marks
from tests.proof.conftest import Figures, scale
from tests.servers import ADMIN_KEY, ROOT, ServerProcess, server_env, serving

PROOF = "1 hostile input"

EXAMPLES = scale(ci=10, full=100)
SEED = int(os.environ.get("PREFLIGHT_PROOF_SEED", "20260601"))
RUN_DEADLINE_S = scale(ci=300, full=3600)  # a hung run fails rather than hangs CI
SPEC = ROOT / "openapi" / "openapi.json"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

# Every check Schemathesis has, less these, each inappropriate for a reason of the contract:
EXCLUDED_CHECKS = {
    # "Schema-valid request rejected": it expects 2xx for any body the schema admits, but api.md
    # makes schema-valid bodies invalid by rule: naming an unknown instrument, asset or account
    # is a 422 ("an unknown subaccount or instrument is a 404/422 problem"); decimals travel as
    # strings the schema cannot bound ("0" and "abc" are strings; a size must be > 0); and some
    # rules are about the state or the clock (a mark dated in the future, a crossed book, tier
    # floors ascending, a leverage above the first tier's maximum). Schema-invalid input is
    # still checked, by negative_data_rejection.
    "positive_data_acceptance",
    # Needs two keys with different rights over the same object; proof 6 (access) does that.
    "object_level_authorization",
}
# What counts as a schema violation (the rest are a server error or a rejected bad input).
SCHEMA_CHECKS = tuple(f"ST1{n:02}" for n in range(3, 12))  # ST103-ST111

SUBACCOUNTS = ("sub-isolated", "sub-cross", "sub-portfolio", "other-sub", "thin-sub")


# --- run inside the Schemathesis process (SCHEMATHESIS_HOOKS=tests.proof.test_hostile) ---------


@schemathesis.deserializer("application/x-ndjson")
def audit_export_lines(ctx: DeserializationContext, response: SchemathesisResponse) -> Any:
    """``GET /v1/audit/export`` streams one audit entry per line; its schema describes a line.
    Every line is checked against that schema here (a bad one fails the run, naming the line)
    and the first is handed back for Schemathesis' own check; an empty export has nothing to
    check."""
    entries = [json.loads(line) for line in response.content.splitlines() if line.strip()]
    if not entries:
        raise NotImplementedError("an empty export: no line to validate")
    documented = ctx.operation.responses.find_by_status_code(response.status_code)
    if documented is not None:
        resolved = documented.get_schema("application/x-ndjson")
        if resolved.schema is not None:
            validator = documented.get_validator(resolved.media_type, resolved.schema)
            for number, entry in enumerate(entries, 1):
                for error in validator.iter_errors(entry):
                    raise ValueError(f"line {number} breaks the schema: {error}")
    return entries[0]


# --- the desk ---------------------------------------------------------------------------------


async def seed_desk(url: str) -> dict[str, list[str]]:
    """A realistic desk through the API, so that generated ids can name real objects: the
    factories' desk (three modes), ETH as collateral, a future, deposits, marks that stay fresh
    for the run, a book, positions, limits, a chosen leverage, a trading state, a reservation,
    a trader key and an open margin call. Returns the ids of each kind."""
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        api = Api(client, ADMIN_KEY)
        await desk(api, modes=("isolated", "cross", "portfolio"))
        long_lived = {"stale_after_s": "3600", "max_twap_deviation": "0.5"}
        await api.ok("PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, **long_lived})
        await api.ok("PUT", "/v1/instruments/ETH-PERP", json={**ETH_PERP, **long_lived})
        expiry = (datetime.now(UTC) + timedelta(days=90)).isoformat()
        future = {**BTC_PERP, **long_lived, "kind": "future", "expiry": expiry}
        del future["funding_interval_s"]
        await api.ok("PUT", "/v1/instruments/BTC-FUT", json=future)
        await api.ok(
            "PUT", "/v1/assets/ETH", json={"collateral_weight": "0.8", "underlying": "ETH"}
        )
        await api.ok(
            "POST",
            "/v1/subaccounts",
            json={"subaccount_id": "thin-sub", "account_id": "acct-2", "margin_mode": "cross"},
        )
        prices = {"BTC-PERP": "60000", "ETH-PERP": "3000", "BTC-FUT": "60500"}
        await marks(api, {**prices, "BTC": "60000", "ETH": "3000"})
        for subaccount in SUBACCOUNTS[:4]:
            await deposit(api, subaccount, "250000")
        await deposit(api, "sub-portfolio", "2", asset="BTC")
        await deposit(api, "thin-sub", "500")
        await api.ok(
            "PUT",
            "/v1/books/BTC-PERP",
            json={
                "bids": [["59999.5", "2"], ["59990", "5"]],
                "asks": [["60000.5", "2"], ["60010", "5"]],
                "ts": datetime.now(UTC).isoformat(),
            },
        )
        await api.ok(
            "POST",
            "/v1/fills",
            json={
                "fills": [
                    fill("f-1", "buy", "1.5", "60000", subaccount_id="sub-cross"),
                    fill("f-2", "sell", "10", "3000", subaccount_id="sub-cross", instrument="ETH-PERP"),
                    fill("f-3", "buy", "0.5", "60000", subaccount_id="sub-isolated"),
                    fill("f-4", "buy", "1", "60500", subaccount_id="sub-portfolio", instrument="BTC-FUT"),
                    fill("f-5", "sell", "1", "60000", subaccount_id="sub-portfolio"),
                    # 0.15 BTC on 500 USDC: MM 0.05 · 9,000 = 450 = 90 % of equity → a call.
                    fill("f-6", "buy", "0.15", "60000", subaccount_id="thin-sub"),
                ]
            },
        )  # fmt: skip
        await api.ok("PUT", "/v1/accounts/acct-1/limits", json={"max_gross_notional": "5000000"})
        await api.ok(
            "PUT",
            "/v1/subaccounts/sub-cross/limits",
            json={
                "max_order_notional": {"value": "1000000", "warn_at": "0.9"},
                "max_open_orders": 50,
            },
        )
        await api.ok(
            "PUT",
            "/v1/subaccounts/sub-cross/leverage",
            json={"instrument": "BTC-PERP", "leverage": "5"},
        )
        await api.ok(
            "PUT",
            "/v1/trading-state",
            json={"scope": "instrument", "id": "BTC-FUT", "state": "reduce_only", "reason": "roll"},
        )
        check = await api.ok(
            "POST",
            "/v1/pretrade/check",
            json={
                "subaccount_id": "sub-cross",
                "orders": [
                    {"client_order_id": "o-1", "instrument": "BTC-PERP", "side": "buy",
                     "size": "0.1", "type": "limit", "limit_price": "60000"}
                ],
                "reserve": True,
                "reservation_ttl_s": 86400,
            },
        )  # fmt: skip
        assert check["decision"] == "accept", check
        key = await api.ok("POST", "/v1/api-keys", json={"role": "trader", "accounts": ["acct-1"]})
        calls = (await api.ok("GET", "/v1/margin-calls"))["margin_calls"]
        assert calls, "the thin subaccount should have raised a margin call"
        return {
            "accounts": ["acct-1", "acct-2"],
            "subaccounts": list(SUBACCOUNTS),
            "symbols": ["USDC", "BTC", "ETH", "BTC-PERP", "ETH-PERP", "BTC-FUT"],
            "instruments": ["BTC-PERP", "ETH-PERP", "BTC-FUT"],
            "assets": ["USDC", "BTC", "ETH"],
            "key_ids": [key["key_id"]],
            "call_ids": [c["id"] for c in calls],
            "reservation_ids": [check["reservation_id"]],
        }


# Where each kind of real id may go: path and query parameters, and body fields. Half the time
# a generated id in a path or query is replaced by a real one, so both the 404s and the handlers
# behind them run; in a body, where a basket of orders or fills needs every id right to get
# past validation, 85 % of the time.
ID_BINDINGS = {
    "accounts": ["path.account_id", "query.account_id", "body.account_id"],
    "subaccounts": [
        "path.subaccount_id",
        "query.subaccount_id",
        "body.subaccount_id",
        "body.to_subaccount_id",
        "body.fills[*].subaccount_id",
    ],
    "symbols": ["path.symbol", "body.marks[*].symbol"],
    "instruments": [
        "body.instrument",
        "body.orders[*].instrument",
        "body.fills[*].instrument",
        "body.positions[*].instrument",
    ],
    "assets": ["body.asset", "body.fills[*].fee_asset"],
    "key_ids": ["path.key_id"],
    "call_ids": ["path.call_id"],
    "reservation_ids": ["path.reservation_id"],
    "dates": ["query.date"],
}

# The committed schema admits any string for a decimal ("0", "-1" and "abc" included) and any
# date-time, so most generated orders, fills, marks and transfers stop at validation. These
# values — ordinary ones, and the extremes the contract allows (18 digits either side of the
# point) — replace a generated one 85 % of the time, so the engine behind the check, the fills
# and the margin views is fuzzed too.
SIZES = ["0.001", "0.01", "0.1", "1", "2.5", "10", "0.000000000000000001", "999999999999999999"]
PRICES = ["0.5", "3000", "59999.5", "60000", "60000.5", "60010", "0.000000000000000001",
          "999999999999999999", "123456789012345678.123456789012345678"]  # fmt: skip
VALUE_BINDINGS = {
    "sizes": ["body.orders[*].size", "body.fills[*].size", "body.positions[*].size"],
    "prices": [
        "body.orders[*].limit_price",
        "body.limit_price",
        "body.fills[*].price",
        "body.marks[*].price",
        "body.positions[*].entry_price",
    ],
    "amounts": ["body.amount", "body.fills[*].fee", "body.positions[*].isolated_margin"],
    "timestamps": ["body.ts", "body.fills[*].ts", "body.marks[*].ts"],
    "leverages": ["body.leverage"],
    "steps": ["body.tick_size", "body.lot_size", "body.contract_size"],
}


def dictionaries(ids: dict[str, list[str]], now: datetime) -> dict[str, list[str]]:
    """The seeded ids and the realistic values, by dictionary name."""
    return {
        **ids,
        "dates": [now.date().isoformat(), (now - timedelta(days=1)).date().isoformat()],
        "sizes": SIZES,
        "prices": PRICES,
        "amounts": ["0", "1", "100", "250000", "-0.5", "0.000000000000000001"],
        "timestamps": [
            (now - timedelta(seconds=1)).isoformat(),
            (now - timedelta(days=1)).isoformat(),
            "2026-01-01T00:00:00Z",
        ],
        "leverages": ["1", "2", "5", "10", "10.5"],
        "steps": ["0.001", "0.01", "0.5", "1"],
    }


def config_toml(values: dict[str, list[str]]) -> str:
    """A schemathesis.toml whose dictionaries hold ``values``, bound to the parameters and
    body fields above."""
    # No state carried between runs (Schemathesis' request cache and Hypothesis' example
    # database): the same seed sends the same requests every time.
    lines = ["[cache]", "enabled = false", "", "[generation]", 'database = "none"', ""]
    for name, entries in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]
    lines.append("[parameters]")
    for bindings in (ID_BINDINGS, VALUE_BINDINGS):
        for name, keys in bindings.items():
            for key in keys:
                probability = 0.5 if key.startswith(("path.", "query.")) else 0.85
                binding = f'{{ dictionary = "{name}", probability = {probability} }}'
                lines.append(f'"{key}" = {binding}')
    return "\n".join(lines) + "\n"


# --- figures from the server itself --------------------------------------------------------------


async def answered(url: str) -> tuple[int, int]:
    """(requests answered, of which 5xx) as the server's own latency histogram counts them,
    ``/metrics`` itself left out."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        text = (await client.get(f"{url}/metrics")).text
    total = errors = 0
    for family in text_string_to_metric_families(text):
        if family.name != "preflight_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels["route"] != "/metrics":
                total += int(sample.value)
                errors += int(sample.value) if sample.labels["status"].startswith("5") else 0
    return total, errors


# --- the proof ---------------------------------------------------------------------------------


@pytest.fixture
async def hostile_server(
    settings: Settings, postgres_url: str, redis_url: str
) -> AsyncIterator[ServerProcess]:
    """A server process on the run's PostgreSQL and Redis, emptied first."""
    await empty_everything(settings)
    with serving(server_env(postgres_url, redis_url)) as server:
        yield server


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    hostile_server: ServerProcess, figures: Figures, tmp_path: Path
) -> None:
    """Every operation of the committed spec, fuzzed with the admin key: 0 failures of any
    check (5xx, undocumented status or content type, body or headers off the schema, bad input
    accepted, ...), and the server's own count of 5xx answers is 0."""
    url = hostile_server.url
    ids = await seed_desk(url)
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_toml(dictionaries(ids, datetime.now(UTC))))
    report = tmp_path / "report.json"
    output = tmp_path / "output.txt"
    before, _ = await answered(url)
    checks = ",".join(sorted(EXCLUDED_CHECKS))
    argv = [
        str(SCHEMATHESIS), "--no-color", "--config-file", str(config),
        "run", str(SPEC), "--url", url,
        "--header", f"Authorization: Bearer {ADMIN_KEY}",
        "--checks", "all", "--exclude-checks", checks,
        "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--request-timeout", "30", "--suppress-health-check", "all",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.proof.test_hostile", "PYTHONPATH": str(ROOT)}
    with output.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
        try:
            returncode = await asyncio.wait_for(process.wait(), RUN_DEADLINE_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    after, server_errors = await answered(url)
    text = output.read_text(errors="replace")
    tail = "\n".join(text.splitlines()[-150:])
    assert report.exists(), f"Schemathesis wrote no report (exit {returncode}):\n{tail}"
    result = json.loads(report.read_text())

    failures = {f["code"]: f["count"] for f in result["failures"]}
    schema_violations = sum(n for code, n in failures.items() if code in SCHEMA_CHECKS)
    figures.record(
        "operations tested", result["operations"]["tested"], result["operations"]["total"]
    )
    figures.record("examples per operation (max)", EXAMPLES, 100)
    figures.record("test cases generated", result["test_cases"]["generated"])
    figures.record("requests answered", after - before)
    figures.record("server errors", server_errors, 0)
    figures.record("schema violations", schema_violations, 0)
    figures.record("failures of any check", sum(failures.values()), 0)

    summary = f"Schemathesis exit {returncode}, failures {failures}:\n{tail}"
    assert result["errors"] == [], summary
    assert failures == {}, summary
    assert returncode == 0, summary
    assert result["operations"]["tested"] == result["operations"]["total"] > 50, summary
    assert server_errors == 0, f"{server_errors} 5xx answers:\n{hostile_server.output()}"


# --- regressions: each bug Schemathesis found, as the exact request that failed ---------------


async def test_405_lists_every_method_of_the_path_in_allow(admin: Api) -> None:
    """``OPTIONS /v1/accounts`` answered 405 with ``Allow: POST`` though GET is served too:
    Starlette names only the first route that matched the path, and FastAPI has one route per
    method. RFC 9110 §15.5.6: the 405's ``Allow`` lists every method the resource supports."""
    response = await admin.request("OPTIONS", "/v1/accounts")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    response = await admin.request("DELETE", "/v1/subaccounts/sub-cross")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "PATCH"}


async def test_a_timestamp_out_of_range_in_utc_is_a_422_not_a_500(admin: Api) -> None:
    """``PUT /v1/books/W`` with ``ts: 0001-01-01T00:01:00+01:00`` answered 500: in UTC that
    instant is in year 0, and converting it raised OverflowError out of the validator."""
    for ts in ("0001-01-01T00:01:00+01:00", "9999-12-31T23:59:59-01:00"):
        response = await admin.put("/v1/books/W", json={"bids": [], "asks": [], "ts": ts})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "ts"


async def test_a_timestamp_is_rfc3339_never_unix_seconds(admin: Api) -> None:
    """``GET /v1/audit?until=0.5`` answered 200: the timestamp parser took ``0.5`` as Unix
    seconds (1970-01-01T00:00:00.5Z). api.md: timestamps are RFC 3339 strings, as the schema
    says (``format: date-time``); a number is refused in bodies too."""
    for path in ("/v1/audit?until=0.5", "/v1/audit/export?since=1700000000"):
        response = await admin.get(path)
        assert response.status_code == 422, f"{path}: {response.text}"
        assert response.json()["errors"][0]["field"] in ("since", "until")
    await desk(admin)
    mark = {"symbol": "BTC-PERP", "price": "60000", "source": "venue", "ts": 1767225600}
    response = await admin.post("/v1/marks", json={"marks": [mark]})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "marks[0].ts"


async def test_a_stress_shock_is_a_number_not_a_boolean(admin: Api) -> None:
    """``POST /v1/risk/stress`` with ``shocks: {"0": false}`` answered 200, the boolean taken as
    a move of 0: lax float parsing. The schema says number; so does the app now (and a
    numeric string is refused the same way)."""
    await desk(admin)
    for shock in (False, "0.1"):
        response = await admin.post(
            "/v1/risk/stress", json={"scenario": {"name": "x", "shocks": {"BTC": shock}}}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "scenario.shocks.BTC"
    ok = await admin.post(
        "/v1/risk/stress", json={"scenario": {"name": "x", "shocks": {"BTC": -1}}}
    )
    assert ok.status_code == 200, ok.text


async def test_booleans_and_counts_are_json_booleans_and_integers(admin: Api) -> None:
    """Lax parsing took ``"reserve": "yes"`` as true and ``"max_open_orders": true`` as a cap of
    one order; the schema says boolean and integer. Each is now a 422 naming the field."""
    await desk(admin)
    order = {"instrument": "BTC-PERP", "side": "buy", "size": "0.1", "type": "market"}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/pretrade/check",
         {"subaccount_id": "sub-cross", "orders": [order], "reserve": "yes"}, "reserve"),
        ("POST", "/v1/pretrade/check",
         {"subaccount_id": "sub-cross", "orders": [order], "reservation_ttl_s": "60"},
         "reservation_ttl_s"),
        ("POST", "/v1/pretrade/check",
         {"subaccount_id": "sub-cross", "orders": [{**order, "reduce_only": 1}]},
         "orders[0].reduce_only"),
        ("PUT", "/v1/subaccounts/sub-cross/limits", {"max_open_orders": True}, "max_open_orders.value"),
        ("PUT", "/v1/subaccounts/sub-cross/limits", {"max_order_rate": {"value": "5"}},
         "max_order_rate.value"),
        ("PUT", "/v1/assets/ETH", {"collateral_weight": "0.8", "is_settlement": "no"}, "is_settlement"),
        ("PUT", "/v1/instruments/BTC-PERP", {**BTC_PERP, "funding_interval_s": "3600"},
         "funding_interval_s"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        response = await admin.request(method, path, json=body)
        assert response.status_code == 422, f"{method} {path} {body}: {response.text}"
        assert field in [e["field"] for e in response.json()["errors"]], response.text


def test_every_error_the_spec_documents_is_problem_details() -> None:
    """The committed spec documented only 200/201 and FastAPI's 422 (``HTTPValidationError``,
    ``application/json``) while every error is ``application/problem+json``: Schemathesis found
    undocumented 400/401/403/404/409 and content types. Every operation under /v1 now
    documents 401, 403 and 503, every documented error is a ``Problem``, and 503 promises
    ``Retry-After``."""
    spec = json.loads(SPEC.read_text())
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path.startswith("/v1/"):
                assert {"401", "403", "503"} <= responses.keys(), f"{method} {path}"
                assert "Retry-After" in responses["503"]["headers"], f"{method} {path}"
            for status, response in responses.items():
                if status.startswith("4") or (status == "503" and path.startswith("/v1/")):
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, f"{method} {path}"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_an_order_at_the_contract_s_extremes_is_judged_not_a_500(admin: Api) -> None:
    """``POST /v1/pretrade/check`` with sizes and prices at the contract's limits (18 digits
    either side of the point) answered 500: the after-trade free collateral, −1.2e35 or so,
    went through ``Decimal.quantize`` in the default 28-digit context (InvalidOperation,
    app/engine/rounding.py). The check must judge it — a reject for margin — and the summary
    must hold exactly: free collateral = equity − initial margin, to the last digit.

    The basket from the failing run, on the factories' desk with 500 USDC: buy 999,999,999,
    999,999,999 ETH-PERP at 123,456,789,012,345,678.123456789012345678 is a notional of about
    1.2e35, so the IM alone (10 %) dwarfs any equity: INSUFFICIENT_MARGIN."""
    await desk(admin)
    await deposit(admin, "sub-cross", "500")
    await marks(admin, {"BTC-PERP": "60000", "ETH-PERP": "3000"})
    body = {
        "subaccount_id": "sub-cross",
        "reserve": True,
        "orders": [
            {"instrument": "BTC-PERP", "side": "sell", "size": "0.001", "type": "limit",
             "limit_price": "999999999999999999"},
            {"instrument": "ETH-PERP", "side": "buy", "size": "999999999999999999",
             "type": "limit", "limit_price": "123456789012345678.123456789012345678"},
        ],
    }  # fmt: skip
    response = await admin.post("/v1/pretrade/check", json=body)
    assert response.status_code == 200, response.text
    check = response.json()
    assert check["decision"] == "reject"
    assert "INSUFFICIENT_MARGIN" in {r["code"] for r in check["reasons"]}
    after = check["after"]
    with localcontext(prec=100):
        exact = Decimal(after["equity"]) - Decimal(after["initial_margin"])
    assert Decimal(after["free_collateral"]) == exact, after


async def test_a_nul_character_in_free_text_is_a_422_not_a_500(admin: Api) -> None:
    """``PUT /v1/trading-state`` with a ``reason`` holding U+0000 answered 500: PostgreSQL text
    cannot store NUL, and the INSERT failed. Every free-text field (an account's name, a
    trading state's reason, a key's label, a stress scenario's name, the audit ``kind``
    filter) refuses it up front, naming the field; nothing is written."""
    await desk(admin)
    cases = [
        ("PUT", "/v1/trading-state", b'{"scope": "global", "state": "halted", "reason": "a\\u0000"}',
         "reason"),
        ("POST", "/v1/accounts", b'{"account_id": "acct-9", "name": "x\\u0000y"}', "name"),
        ("POST", "/v1/api-keys", b'{"role": "auditor", "label": "\\u0000"}', "label"),
        ("POST", "/v1/risk/stress", b'{"scenario": {"name": "\\u0000", "shocks": {}}}',
         "scenario.name"),
    ]  # fmt: skip
    for method, path, raw, field in cases:
        headers = {"content-type": "application/json"}
        response = await admin.request(method, path, content=raw, headers=headers)
        assert response.status_code == 422, f"{method} {path}: {response.text}"
        assert response.json()["errors"][0]["field"] == field
    response = await admin.get("/v1/audit?kind=%00")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "kind"
    assert (await admin.get("/v1/trading-state")).json()["trading_states"] == []
    assert [a["account_id"] for a in (await admin.get("/v1/accounts")).json()["accounts"]] == [
        "acct-1",
        "acct-2",
    ]
