"""Option instruments in the reference data (api.md, reference data; margin.md, options): a type,
a strike and an expiry, no margin tiers and no funding; refused bodies write nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
from fastapi import FastAPI

from tests.conftest import Api
from tests.factories import BTC_PERP, desk

SYMBOL = "BTC-20270326-70000-C"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_days(days: float) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(days=days))


def option(**changes: Any) -> dict[str, Any]:
    """A BTC call struck at 70000 expiring in 30 days; ``None`` in ``changes`` drops a field."""
    body: dict[str, Any] = {
        "kind": "option",
        "underlying": "BTC",
        "option_type": "call",
        "strike": "70000",
        "expiry": in_days(30),
        "contract_size": "1",
        "tick_size": "5",
        "lot_size": "0.01",
        "taker_fee_rate": "0.0003",
        "maker_fee_rate": "0.0003",
        "price_band": "0.5",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def field_of(response: Any) -> str:
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    return str(errors[0]["field"])


async def test_an_option_is_created_and_read_back_with_its_terms(admin: Api) -> None:
    body = option(strike=70000.5, option_type="put")
    created = await admin.put(f"/v1/instruments/{SYMBOL}", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["strike"] == "70000.5"
    read = await admin.ok("GET", f"/v1/instruments/{SYMBOL}")
    assert read["kind"] == "option"
    assert read["underlying"] == "BTC"
    assert (read["option_type"], read["strike"]) == ("put", "70000.5")
    assert datetime.fromisoformat(read["expiry"]) == datetime.fromisoformat(body["expiry"])
    assert read["margin_tiers"] == []
    assert read["max_leverage"] is None
    assert read["funding_interval_s"] is None
    listed = await admin.ok("GET", "/v1/instruments")
    assert [(i["symbol"], i["strike"]) for i in listed["instruments"]] == [(SYMBOL, "70000.5")]


async def test_a_perpetual_reads_back_without_option_terms(admin: Api) -> None:
    await admin.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP)
    read = await admin.ok("GET", "/v1/instruments/BTC-PERP")
    assert (read["option_type"], read["strike"], read["max_leverage"]) == (None, None, "10")


@pytest.mark.parametrize("tiers", [[], None], ids=["empty", "null"])
async def test_an_option_may_name_its_tiers_as_empty_or_null(
    admin: Api, tiers: list[Any] | None
) -> None:
    body = {**option(), "margin_tiers": tiers}
    assert (await admin.put(f"/v1/instruments/{SYMBOL}", json=body)).status_code == 201
    assert (await admin.ok("GET", f"/v1/instruments/{SYMBOL}"))["margin_tiers"] == []


BTC_FUTURE = {
    **{k: v for k, v in BTC_PERP.items() if k != "funding_interval_s"},
    "kind": "future",
    "expiry": in_days(90),
}
ONE_TIER = [{"notional_floor": "0", "initial_margin_fraction": "0.1"}]
REFUSED: list[tuple[str, str, dict[str, Any], str]] = [
    # (case, symbol, body, the field the 422 names)
    ("strike missing", SYMBOL, option(strike=None), "strike"),
    ("strike 0", SYMBOL, option(strike="0"), "strike"),
    ("strike negative", SYMBOL, option(strike=-1), "strike"),
    ("option_type missing", SYMBOL, option(option_type=None), "option_type"),
    ("option_type unknown", SYMBOL, option(option_type="straddle"), "option_type"),
    ("expiry missing", SYMBOL, option(expiry=None), "expiry"),
    ("margin_tiers given", SYMBOL, option(margin_tiers=ONE_TIER), "margin_tiers"),
    ("funding_interval_s given", SYMBOL, option(funding_interval_s=3600), "funding_interval_s"),
    ("option_type on a perpetual", "BTC-PERP", {**BTC_PERP, "option_type": "call"}, "option_type"),
    ("strike on a perpetual", "BTC-PERP", {**BTC_PERP, "strike": "70000"}, "strike"),
    ("strike on a future", "BTC-FUT", {**BTC_FUTURE, "strike": "70000"}, "strike"),
    ("perpetual without tiers", "BTC-PERP", {**BTC_PERP, "margin_tiers": []}, "margin_tiers"),
]


@pytest.mark.parametrize(
    ("symbol", "body", "field"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_each_rule_is_a_422_naming_the_field_and_writes_nothing(
    admin: Api, symbol: str, body: dict[str, Any], field: str
) -> None:
    assert field_of(await admin.put(f"/v1/instruments/{symbol}", json=body)) == field
    assert (await admin.get(f"/v1/instruments/{symbol}")).status_code == 404
    assert (await admin.ok("GET", "/v1/instruments"))["instruments"] == []


async def test_an_option_is_created_with_an_expiry_ahead(admin: Api) -> None:
    past = option(expiry=in_days(-1))
    assert field_of(await admin.put(f"/v1/instruments/{SYMBOL}", json=past)) == "expiry"
    assert (await admin.get(f"/v1/instruments/{SYMBOL}")).status_code == 404
    # A perpetual turned into an option is created as an option: its expiry must be ahead too.
    await admin.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP)
    assert field_of(await admin.put("/v1/instruments/BTC-PERP", json=past)) == "expiry"
    assert (await admin.ok("GET", "/v1/instruments/BTC-PERP"))["kind"] == "perpetual"


async def test_an_existing_option_keeps_its_expiry_once_past(admin: Api) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    body = option(expiry=rfc3339(soon))
    assert (await admin.put(f"/v1/instruments/{SYMBOL}", json=body)).status_code == 201
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    # The same expiry, now past, may stay on an update (here a new fee).
    kept = await admin.put(f"/v1/instruments/{SYMBOL}", json={**body, "taker_fee_rate": "0.0004"})
    assert kept.status_code == 200, kept.text
    assert kept.json()["taker_fee_rate"] == "0.0004"
    # Moving it to another past time is refused, and the option is unchanged.
    moved = {**body, "expiry": rfc3339(soon - timedelta(days=1)), "taker_fee_rate": "0.0005"}
    assert field_of(await admin.put(f"/v1/instruments/{SYMBOL}", json=moved)) == "expiry"
    read = await admin.ok("GET", f"/v1/instruments/{SYMBOL}")
    assert datetime.fromisoformat(read["expiry"]) == soon
    assert read["taker_fee_rate"] == "0.0004"


async def test_chosen_leverage_does_not_apply_to_an_option(admin: Api) -> None:
    await desk(admin)
    await admin.ok("PUT", f"/v1/instruments/{SYMBOL}", json=option())
    response = await admin.put(
        "/v1/subaccounts/sub-cross/leverage", json={"instrument": SYMBOL, "leverage": 2}
    )
    assert field_of(response) == "instrument"
    assert (await admin.ok("GET", "/v1/subaccounts/sub-cross"))["leverage"] == {}


def instrument_schema(app: FastAPI) -> jsonschema_rs.Validator:
    spec = app.openapi()
    schema = {"$ref": "#/components/schemas/InstrumentIn", "components": spec["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


async def test_the_published_schema_states_the_same_rules(app: FastAPI) -> None:
    """The OpenAPI document (what clients and the fuzzer read) refuses every body the rules
    refuse, except what only the clock or arithmetic decides (a strike of 0 is a string the
    schema cannot bound), and admits an option."""
    schema = instrument_schema(app)
    assert schema.is_valid(option())
    assert schema.is_valid({**option(), "margin_tiers": []})
    assert schema.is_valid(BTC_PERP)
    assert schema.is_valid(BTC_FUTURE)
    unbounded = {"strike 0", "strike negative"}
    for case, _, body, _ in REFUSED:
        if case not in unbounded:
            assert not schema.is_valid(body), case
