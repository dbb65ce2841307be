"""Bad input: every case answers a 4xx problem that names the field, and changes nothing.

Each case runs against the same small desk (reference data, two accounts, a position, marks,
a book, limits, a chosen leverage, a trading state); the observable state — read back through
the admin API, plus the head of the audit log — must be identical before and after."""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.sealer import seal
from app.core.config import Settings
from tests.conftest import ADMIN_KEY, Api, empty_everything
from tests.factories import BTC_PERP, deposit, desk, fill

NOW = "<now>"
FUTURE = "<an hour from now>"


AuditHead = Callable[[], Awaitable[tuple[int, str] | None]]


@pytest.fixture(scope="module")
async def audit_head(settings: Settings) -> AsyncIterator[AuditHead]:
    """The audit log's last link (seq and hash), read straight from PostgreSQL: a request that
    wrote nothing leaves it where it was."""
    engine = create_async_engine(settings.database_url)

    async def head() -> tuple[int, str] | None:
        async with engine.begin() as connection:
            await seal(connection)  # entries are sealed just after their commit
            result = await connection.execute(
                text(
                    "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL "
                    "ORDER BY seq DESC LIMIT 1"
                )
            )
            row = result.first()
            return None if row is None else (int(row[0]), str(row[1]))

    yield head
    await engine.dispose()


def _timestamp(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def _resolve(value: Any) -> Any:
    """Fill in the time placeholders when the request is sent."""
    if value == NOW:
        return _timestamp(-timedelta(seconds=1))
    if value == FUTURE:
        return _timestamp(timedelta(hours=1))
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


BTC_FUTURE: dict[str, Any] = {
    "kind": "future",
    "underlying": "BTC",
    "tick_size": "0.5",
    "lot_size": "0.001",
    "margin_tiers": [{"notional_floor": "0", "initial_margin_fraction": "0.1"}],
    "expiry": "2030-06-28T08:00:00Z",
}


async def build(admin: Api) -> None:
    await desk(admin)
    await admin.ok("PUT", "/v1/instruments/BTC-FUT", json=BTC_FUTURE)
    await deposit(admin, "sub-cross", "100000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("seed-1", "buy", "1", "60000")]})
    marks = [
        {"symbol": "BTC-PERP", "price": "60000", "source": "feed-a", "ts": _resolve(NOW)},
        {"symbol": "BTC", "price": "60000", "source": "feed-a", "ts": _resolve(NOW)},
    ]
    await admin.ok("POST", "/v1/marks", json={"marks": marks})
    book = {"bids": [["59990", "2"]], "asks": [["60010", "2"]], "ts": _resolve(NOW)}
    await admin.ok("PUT", "/v1/books/BTC-PERP", json=book)
    await admin.ok("PUT", "/v1/subaccounts/sub-cross/limits", json={"max_leverage": "8"})
    await admin.ok(
        "PUT",
        "/v1/subaccounts/sub-cross/leverage",
        json={"instrument": "BTC-PERP", "leverage": "5"},
    )
    await admin.ok(
        "PUT",
        "/v1/trading-state",
        json={"scope": "instrument", "id": "ETH-PERP", "state": "reduce_only", "reason": "seed"},
    )


async def observable_state(admin: Api) -> dict[str, Any]:
    """Everything a bad request could have changed, as the admin API shows it (ages and
    freshness, which move with the clock, left out)."""
    state: dict[str, Any] = {}
    for path in (
        "/v1/assets",
        "/v1/instruments",
        "/v1/accounts",
        "/v1/subaccounts",
        "/v1/trading-state",
        "/v1/api-keys",
        "/v1/risk/parameters",
    ):
        state[path] = await admin.ok("GET", path)
    for sub in state["/v1/subaccounts"]["subaccounts"]:
        sid = sub["subaccount_id"]
        state[f"{sid} positions"] = await admin.ok("GET", f"/v1/subaccounts/{sid}/positions")
        state[f"{sid} balances"] = await admin.ok("GET", f"/v1/subaccounts/{sid}/balances")
    marks = await admin.ok("GET", "/v1/marks")
    state["marks"] = sorted(
        (
            m["symbol"],
            m["funding_rate"],
            sorted((s["source"], s["price"], s["ts"]) for s in m["sources"]),
        )
        for m in marks["marks"]
    )
    book = await admin.ok("GET", "/v1/books/BTC-PERP")
    state["book"] = (book["bids"], book["asks"], book["ts"])
    return state


# --- the cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    body: Any = None
    status: int = 422
    field: str = ""
    """What the answer must name: in ``detail`` or in one of ``errors[].field``."""
    raw: bytes | None = None
    content_type: str = "application/json"

    @property
    def code(self) -> str:
        return {400: "BAD_REQUEST", 404: "NOT_FOUND"}.get(self.status, "VALIDATION_ERROR")


def fills(*items: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"fills": list(items), **top}


def a_fill(**overrides: Any) -> dict[str, Any]:
    return {**fill("bad-1", "buy", "1", "60000"), **overrides}


def a_mark(**overrides: Any) -> dict[str, Any]:
    return {"symbol": "BTC-PERP", "price": "60100", "source": "feed-b", "ts": NOW, **overrides}


def an_instrument(**overrides: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BTC_PERP), **overrides}


def a_transfer(**overrides: Any) -> dict[str, Any]:
    return {"transfer_id": "bad-t1", "asset": "USDC", "amount": "5", "kind": "deposit", **overrides}


def tiers(*rows: tuple[str, str] | tuple[str, str, str]) -> list[dict[str, str]]:
    out = []
    for row in rows:
        tier = {"notional_floor": row[0], "initial_margin_fraction": row[1]}
        if len(row) == 3:
            tier["maintenance_margin_fraction"] = row[2]
        out.append(tier)
    return out


FILLS = "/v1/fills"
MARKS = "/v1/marks"
BOOK = "/v1/books/BTC-PERP"
NEW_INSTRUMENT = "/v1/instruments/NEW-PERP"
TRANSFERS = "/v1/subaccounts/sub-cross/transfers"
LIMITS = "/v1/subaccounts/sub-cross/limits"
LEVERAGE = "/v1/subaccounts/sub-cross/leverage"
SNAPSHOT = "/v1/subaccounts/sub-cross/snapshot"
STATE = "/v1/trading-state"
CHECK = "/v1/pretrade/check"  # parses its own body (the hot path): refused the same way
A_CHECK = {
    "subaccount_id": "sub-cross",
    "orders": [{"instrument": "BTC-PERP", "side": "buy", "size": "1", "type": "market"}],
}
A_FILL_JSON = json.dumps(a_fill())


def bad(
    case_id: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    field: str,
    status: int = 422,
    raw: bytes | None = None,
    content_type: str = "application/json",
    marks: Any = (),
) -> Any:
    return pytest.param(
        Bad(method, path, body, status, field, raw, content_type), id=case_id, marks=marks
    )


CASES = [
    # --- wrong types
    bad("fill-size-list", "POST", FILLS, fills(a_fill(size=["1"])), field="fills[0].size"),
    bad("fill-price-bool", "POST", FILLS, fills(a_fill(price=True)), field="fills[0].price"),
    bad("fill-fee-object", "POST", FILLS, fills(a_fill(fee={"amount": "1"})), field="fills[0].fee"),
    bad("fills-not-a-list", "POST", FILLS, {"fills": {"0": a_fill()}}, field="fills"),
    bad(
        "instrument-tick-bool",
        "PUT",
        NEW_INSTRUMENT,
        an_instrument(tick_size=False),
        field="tick_size",
    ),
    bad("limit-count-fraction", "PUT", LIMITS, {"max_open_orders": 1.5}, field="max_open_orders"),
    bad("fill-ts-garbage", "POST", FILLS, fills(a_fill(ts="yesterday")), field="fills[0].ts"),
    bad(
        "fill-ts-naive", "POST", FILLS, fills(a_fill(ts="2026-01-01T00:00:00")), field="fills[0].ts"
    ),
    # --- zero and negative
    bad("fill-size-zero", "POST", FILLS, fills(a_fill(size="0")), field="fills[0].size"),
    bad("fill-size-negative", "POST", FILLS, fills(a_fill(size=-1)), field="fills[0].size"),
    bad(
        "fill-price-negative", "POST", FILLS, fills(a_fill(price="-60000")), field="fills[0].price"
    ),
    bad("mark-price-zero", "POST", MARKS, {"marks": [a_mark(price="0")]}, field="marks[0].price"),
    bad("transfer-amount-zero", "POST", TRANSFERS, a_transfer(amount="0"), field="amount"),
    bad("transfer-amount-negative", "POST", TRANSFERS, a_transfer(amount="-5"), field="amount"),
    bad(
        "book-size-negative",
        "PUT",
        BOOK,
        {"bids": [["59990", "-1"]], "asks": [], "ts": NOW},
        field="bids[0]",
    ),
    bad(
        "instrument-lot-zero", "PUT", NEW_INSTRUMENT, an_instrument(lot_size="0"), field="lot_size"
    ),
    bad("limit-negative", "PUT", LIMITS, {"max_leverage": "-2"}, field="max_leverage"),
    bad(
        "leverage-zero",
        "PUT",
        LEVERAGE,
        {"instrument": "BTC-PERP", "leverage": "0"},
        field="leverage",
    ),
    bad(
        "snapshot-entry-zero",
        "PUT",
        SNAPSHOT,
        {
            "balances": {},
            "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "0"}],
        },
        field="positions[0].entry_price",
    ),
    # --- unknown fields
    bad("fills-unknown-top-field", "POST", FILLS, fills(a_fill(), dry_run=True), field="dry_run"),
    bad(
        "fill-unknown-nested-field",
        "POST",
        FILLS,
        fills(a_fill(leverage="5")),
        field="fills[0].leverage",
    ),
    bad(
        "mark-unknown-nested-field",
        "POST",
        MARKS,
        {"marks": [a_mark(volume="1")]},
        field="marks[0].volume",
    ),
    bad(
        "tier-unknown-field",
        "PUT",
        NEW_INSTRUMENT,
        an_instrument(margin_tiers=[{**tiers(("0", "0.1"))[0], "cap": "1"}]),
        field="margin_tiers[0].cap",
    ),
    bad("transfer-unknown-field", "POST", TRANSFERS, a_transfer(memo="hi"), field="memo"),
    # --- non-finite and oversized numbers
    bad("fill-size-nan-string", "POST", FILLS, fills(a_fill(size="NaN")), field="fills[0].size"),
    bad(
        "fill-price-infinity",
        "POST",
        FILLS,
        fills(a_fill(price="Infinity")),
        field="fills[0].price",
    ),
    bad("fill-fee-minus-inf", "POST", FILLS, fills(a_fill(fee="-inf")), field="fills[0].fee"),
    bad(
        "fill-size-bare-nan-token",
        "POST",
        FILLS,
        field="fills[0].size",
        raw=A_FILL_JSON.replace('"size": "1"', '"size": NaN').join(['{"fills": [', "]}"]).encode(),
    ),
    bad(
        "mark-price-overflowing-float",
        "POST",
        MARKS,
        field="marks[0].price",
        raw=b'{"marks": [{"symbol": "BTC-PERP", "price": 1e999, "source": "x", "ts": "2026-01-01T00:00:00Z"}]}',
    ),
    bad(
        "fill-size-40-digit-number",
        "POST",
        FILLS,
        fills(a_fill(size=10**40)),
        field="fills[0].size",
    ),
    bad(
        "fill-price-40-digit-string",
        "POST",
        FILLS,
        fills(a_fill(price="1" * 40)),
        field="fills[0].price",
    ),
    bad(
        "fill-size-19-decimals",
        "POST",
        FILLS,
        fills(a_fill(size="0." + "0" * 18 + "1")),
        field="fills[0].size",
    ),
    bad(
        "transfer-amount-19-decimals",
        "POST",
        TRANSFERS,
        a_transfer(amount="1." + "1" * 19),
        field="amount",
    ),
    bad(
        "mark-price-exponent-huge",
        "POST",
        MARKS,
        {"marks": [a_mark(price="1e40")]},
        field="marks[0].price",
    ),
    # --- bad identifiers, in the body and in the path
    bad(
        "fill-id-with-space",
        "POST",
        FILLS,
        fills(a_fill(subaccount_id="sub cross")),
        field="fills[0].subaccount_id",
    ),
    bad(
        "fill-id-leading-dot",
        "POST",
        FILLS,
        fills(a_fill(instrument=".BTC-PERP")),
        field="fills[0].instrument",
    ),
    bad(
        "fill-id-65-chars", "POST", FILLS, fills(a_fill(fill_id="f" * 65)), field="fills[0].fill_id"
    ),
    bad(
        "fill-id-unicode",
        "POST",
        FILLS,
        fills(a_fill(client_order_id="ordre-été")),
        field="fills[0].client_order_id",
    ),
    bad(
        "account-id-empty",
        "POST",
        "/v1/accounts",
        {"account_id": "", "name": "Empty"},
        field="account_id",
    ),
    bad(
        "path-id-with-space", "PUT", "/v1/instruments/bad%20symbol", an_instrument(), field="symbol"
    ),
    bad("path-id-leading-dot", "PUT", "/v1/instruments/.hidden", an_instrument(), field="symbol"),
    bad(
        "path-id-65-chars",
        "PUT",
        "/v1/assets/" + "A" * 65,
        {"collateral_weight": "1"},
        field="symbol",
    ),
    bad(
        "path-id-unicode",
        "PUT",
        "/v1/books/BTC-P%C3%89RP",
        {"bids": [], "asks": [], "ts": NOW},
        field="symbol",
    ),
    bad("query-id-with-space", "GET", "/v1/subaccounts?account_id=acct%201", field="account_id"),
    bad(
        "snapshot-balance-key-bad-id",
        "PUT",
        SNAPSHOT,
        {"balances": {"US DC": "1"}, "positions": []},
        field="balances",
    ),
    # --- batches
    bad("fills-empty-batch", "POST", FILLS, fills(), field="fills"),
    bad(
        "fills-1001",
        "POST",
        FILLS,
        fills(*(a_fill(fill_id=f"big-{i}") for i in range(1001))),
        field="fills",
    ),
    bad(
        "marks-1001",
        "POST",
        MARKS,
        {"marks": [a_mark(source=f"s{i}") for i in range(1001)]},
        field="marks",
    ),
    bad("marks-empty-batch", "POST", MARKS, {"marks": []}, field="marks"),
    bad(
        "fills-duplicate-id-in-batch",
        "POST",
        FILLS,
        fills(a_fill(fill_id="dup"), a_fill(fill_id="dup", size="2")),
        field="fills[1].fill_id",
    ),
    # --- unknown references
    bad(
        "fill-unknown-instrument",
        "POST",
        FILLS,
        fills(a_fill(), a_fill(fill_id="bad-2", instrument="DOGE-PERP")),
        field="fills[1].instrument",
    ),
    bad(
        "fill-unknown-subaccount",
        "POST",
        FILLS,
        fills(a_fill(subaccount_id="nobody")),
        field="fills[0].subaccount_id",
        status=404,
    ),
    bad(
        "fill-unknown-fee-asset",
        "POST",
        FILLS,
        fills(a_fill(fee="1", fee_asset="DOGE")),
        field="fills[0].fee_asset",
    ),
    bad("transfer-unknown-asset", "POST", TRANSFERS, a_transfer(asset="DOGE"), field="asset"),
    bad(
        "transfer-unknown-path-subaccount",
        "POST",
        "/v1/subaccounts/nobody/transfers",
        a_transfer(),
        field="nobody",
        status=404,
    ),
    bad(
        "transfer-unknown-destination",
        "POST",
        TRANSFERS,
        a_transfer(kind="transfer", to_subaccount_id="nobody"),
        field="to_subaccount_id",
    ),
    bad(
        "mark-unknown-symbol",
        "POST",
        MARKS,
        {"marks": [a_mark(symbol="DOGE-PERP")]},
        field="marks[0].symbol",
    ),
    bad(
        "book-unknown-path-instrument",
        "PUT",
        "/v1/books/DOGE-PERP",
        {"bids": [], "asks": [], "ts": NOW},
        field="DOGE-PERP",
        status=404,
    ),
    bad(
        "subaccount-unknown-account",
        "POST",
        "/v1/subaccounts",
        {"subaccount_id": "new-sub", "account_id": "nobody", "margin_mode": "cross"},
        field="account_id",
    ),
    bad(
        "leverage-unknown-instrument",
        "PUT",
        LEVERAGE,
        {"instrument": "DOGE-PERP", "leverage": "2"},
        field="instrument",
    ),
    bad(
        "limits-unknown-path-subaccount",
        "PUT",
        "/v1/subaccounts/nobody/limits",
        {"max_leverage": "2"},
        field="nobody",
        status=404,
    ),
    bad(
        "snapshot-unknown-instrument",
        "PUT",
        SNAPSHOT,
        {
            "balances": {"USDC": "1"},
            "positions": [{"instrument": "DOGE-PERP", "size": "1", "entry_price": "1"}],
        },
        field="positions[0].instrument",
    ),
    bad(
        "snapshot-unknown-asset",
        "PUT",
        SNAPSHOT,
        {"balances": {"DOGE": "1"}, "positions": []},
        field="balances.DOGE",
    ),
    bad(
        "api-key-unknown-account",
        "POST",
        "/v1/api-keys",
        {"role": "trader", "accounts": ["nobody"]},
        field="accounts[0]",
    ),
    # --- bad enum values
    bad("fill-side-hold", "POST", FILLS, fills(a_fill(side="hold")), field="fills[0].side"),
    bad(
        "subaccount-margin-mode-yolo",
        "POST",
        "/v1/subaccounts",
        {"subaccount_id": "new-sub", "account_id": "acct-1", "margin_mode": "yolo"},
        field="margin_mode",
    ),
    bad(
        "patch-margin-mode-yolo",
        "PATCH",
        "/v1/subaccounts/sub-cross",
        {"margin_mode": "yolo"},
        field="margin_mode",
    ),
    bad("instrument-kind-swap", "PUT", NEW_INSTRUMENT, an_instrument(kind="swap"), field="kind"),
    bad("transfer-kind-gift", "POST", TRANSFERS, a_transfer(kind="gift"), field="kind"),
    bad(
        "trading-scope-planet",
        "PUT",
        STATE,
        {"scope": "planet", "id": "x", "state": "halted", "reason": "r"},
        field="scope",
    ),
    bad(
        "trading-state-paused",
        "PUT",
        STATE,
        {"scope": "global", "state": "paused", "reason": "r"},
        field="state",
    ),
    bad("api-key-role-root", "POST", "/v1/api-keys", {"role": "root"}, field="role"),
    # --- market data rules
    bad("mark-ts-in-future", "POST", MARKS, {"marks": [a_mark(ts=FUTURE)]}, field="marks[0].ts"),
    bad(
        "mark-funding-on-future",
        "POST",
        MARKS,
        {"marks": [a_mark(), a_mark(symbol="BTC-FUT", funding_rate="0.0001")]},
        field="marks[1].funding_rate",
    ),
    bad(
        "mark-funding-out-of-range",
        "POST",
        MARKS,
        {"marks": [a_mark(funding_rate="1.5")]},
        field="funding_rate",
    ),
    bad(
        "book-crossed",
        "PUT",
        BOOK,
        {"bids": [["60020", "1"]], "asks": [["60010", "1"]], "ts": NOW},
        field="bids",
    ),
    bad(
        "book-bids-unsorted",
        "PUT",
        BOOK,
        {"bids": [["59980", "1"], ["59990", "1"]], "asks": [], "ts": NOW},
        field="bids",
    ),
    bad(
        "book-asks-unsorted",
        "PUT",
        BOOK,
        {"bids": [], "asks": [["60020", "1"], ["60010", "1"]], "ts": NOW},
        field="asks",
    ),
    bad(
        "book-level-not-a-pair",
        "PUT",
        BOOK,
        {"bids": [["59990"]], "asks": [], "ts": NOW},
        field="bids[0]",
    ),
    bad("book-ts-in-future", "PUT", BOOK, {"bids": [], "asks": [], "ts": FUTURE}, field="ts"),
    # --- reference data rules
    bad(
        "tiers-not-from-zero",
        "PUT",
        NEW_INSTRUMENT,
        an_instrument(margin_tiers=tiers(("100", "0.1"))),
        field="margin_tiers",
    ),
    bad(
        "tiers-not-ascending",
        "PUT",
        NEW_INSTRUMENT,
        an_instrument(margin_tiers=tiers(("0", "0.1"), ("500000", "0.2"), ("100000", "0.3"))),
        field="margin_tiers",
    ),
    bad(
        "tiers-maintenance-above-initial",
        "PUT",
        NEW_INSTRUMENT,
        an_instrument(margin_tiers=tiers(("0", "0.1", "0.2"))),
        field="margin_tiers[0].maintenance_margin_fraction",
    ),
    bad("tiers-empty", "PUT", NEW_INSTRUMENT, an_instrument(margin_tiers=[]), field="margin_tiers"),
    bad(
        "future-without-expiry",
        "PUT",
        "/v1/instruments/NEW-FUT",
        {**BTC_FUTURE, "expiry": None},
        field="expiry",
    ),
    bad(
        "asset-weight-above-one",
        "PUT",
        "/v1/assets/ETH",
        {"collateral_weight": "1.5", "underlying": "ETH"},
        field="collateral_weight",
    ),
    bad(
        "risk-parameter-not-a-number",
        "PUT",
        "/v1/risk/parameters",
        {"im_multiplier": "lots"},
        field="im_multiplier",
    ),
    bad("risk-parameter-unknown", "PUT", "/v1/risk/parameters", {"yolo": 1}, field="yolo"),
    # --- cross-field rules
    bad(
        "transfer-without-destination",
        "POST",
        TRANSFERS,
        a_transfer(kind="transfer"),
        field="to_subaccount_id",
    ),
    bad(
        "deposit-with-destination",
        "POST",
        TRANSFERS,
        a_transfer(to_subaccount_id="sub-cross"),
        field="to_subaccount_id",
    ),
    bad(
        "trading-account-without-id",
        "PUT",
        STATE,
        {"scope": "account", "state": "halted", "reason": "r"},
        field="id",
    ),
    bad(
        "trading-unknown-subaccount",
        "PUT",
        STATE,
        {"scope": "subaccount", "id": "nobody", "state": "halted", "reason": "r"},
        field="id",
    ),
    bad(
        "leverage-above-maximum",
        "PUT",
        LEVERAGE,
        {"instrument": "BTC-PERP", "leverage": "11"},
        field="leverage",
    ),
    bad(
        "leverage-below-one",
        "PUT",
        LEVERAGE,
        {"instrument": "BTC-PERP", "leverage": "0.5"},
        field="leverage",
    ),
    bad(
        "limit-warn-at-above-one",
        "PUT",
        LIMITS,
        {"max_gross_notional": {"value": "5", "warn_at": "2"}},
        field="max_gross_notional",
    ),
    # --- the body itself
    bad("malformed-json", "POST", FILLS, field="body", raw=b'{"fills": [' + A_FILL_JSON.encode()),
    bad("empty-body", "POST", FILLS, field="body", raw=b""),
    bad(
        "wrong-content-type",
        "POST",
        FILLS,
        field="body",
        raw=json.dumps(fills(a_fill())).encode(),
        content_type="text/plain",
    ),
    # Undecodable bytes are a 400 (FastAPI's "error parsing the body"), not a 422.
    bad("not-utf8", "POST", FILLS, field="body", status=400, raw=b'{"fills": [\xff]}'),
    # --- the check's body, parsed by hand: the same answers as every other body
    bad("check-malformed-json", "POST", CHECK, field="body", raw=json.dumps(A_CHECK)[:-1].encode()),
    bad("check-empty-body", "POST", CHECK, field="body", raw=b""),
    *(
        bad(
            case_id,
            "POST",
            CHECK,
            field="body",
            raw=json.dumps(A_CHECK).encode(),
            content_type=content_type,
        )
        for case_id, content_type in (
            ("check-wrong-content-type", "text/plain"),
            ("check-no-content-type", ""),  # FastAPI's strict content type: not read as JSON
        )
    ),
    bad("check-not-utf8", "POST", CHECK, field="body", status=400, raw=b'{"orders": [\xff]}'),
    bad("check-not-an-object", "POST", CHECK, ["sub-cross"], field="body"),
    bad("check-missing-orders", "POST", CHECK, {"subaccount_id": "sub-cross"}, field="orders"),
    bad(
        "check-size-negative",
        "POST",
        CHECK,
        {**A_CHECK, "orders": [{**A_CHECK["orders"][0], "size": "-1"}]},
        field="orders[0].size",
    ),
    bad("check-unknown-field", "POST", CHECK, {**A_CHECK, "urgent": True}, field="urgent"),
    bad(
        "check-ttl-as-text",
        "POST",
        CHECK,
        {**A_CHECK, "reservation_ttl_s": "60"},
        field="reservation_ttl_s",
    ),
]


async def send(api: Api, case: Bad) -> httpx.Response:
    if case.raw is None:
        kwargs: dict[str, Any] = {} if case.body is None else {"json": _resolve(case.body)}
        return await api.request(case.method, case.path, **kwargs)
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": case.content_type}
    return await api.client.request(case.method, case.path, content=case.raw, headers=headers)


@dataclass
class SharedDesk:
    """The desk every case runs against, built once: a case that passes changed nothing, so
    the next one may reuse it. Whenever the audit log's head is not where the last case left
    it (another test emptied the tables, or a failing case wrote), the desk is built afresh."""

    head: tuple[int, str] | None = None
    state: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def shared_desk() -> SharedDesk:
    return SharedDesk()


@pytest.fixture
async def desk_admin(
    shared_desk: SharedDesk,
    settings: Settings,
    raw_client: httpx.AsyncClient,
    audit_head: AuditHead,
) -> Api:
    admin = Api(raw_client, ADMIN_KEY)
    if shared_desk.head is None or await audit_head() != shared_desk.head:
        await empty_everything(settings)
        await build(admin)
        shared_desk.state = await observable_state(admin)
        shared_desk.head = await audit_head()
    return admin


@pytest.mark.parametrize("case", CASES)
async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    desk_admin: Api, shared_desk: SharedDesk, audit_head: AuditHead, case: Bad
) -> None:
    admin = desk_admin
    before, head = shared_desk.state, shared_desk.head

    response = await send(admin, case)

    where = f"{case.method} {case.path}"
    assert response.status_code == case.status, f"{where}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), where
    problem = response.json()
    assert {"type", "title", "status", "detail", "code"} <= problem.keys(), problem
    assert problem["status"] == case.status
    assert problem["code"] == case.code
    fields = [error["field"] for error in problem.get("errors", [])]
    # The field as a whole word: "id" must not be found inside "invalid".
    pattern = re.compile(rf"(?<![\w]){re.escape(case.field)}(?![\w])")
    named = any(pattern.search(text) for text in [problem["detail"], *fields])
    assert named, f"{where}: {case.field!r} is not named in {problem['detail']!r} / {fields}"

    assert await audit_head() == head, f"{where} wrote to the audit log"
    assert await observable_state(admin) == before, f"{where} changed state"


# --- no garbage gets a 500 ------------------------------------------------------------------------

GARBAGE: dict[str, bytes] = {
    "empty object": b"{}",
    "array": b"[]",
    "string": b'"fills"',
    "null": b"null",
    "number": b"1e999",
    "bare NaN": b"NaN",
    "empty body": b"",
    "not json": b"{fills: [}",
    "nested junk": json.dumps(
        {
            "fills": [{"size": [[{"a": None}]], "price": {"x": [1, {"y": "z"}]}}],
            "marks": [[[]]],
            "bids": [[{"p": None}]],
            "balances": {"USDC": {"a": [1]}},
            "positions": [None, 1, "x"],
            "margin_tiers": [[], {}],
            "scope": ["global"],
            "role": {"admin": True},
        }
    ).encode(),
    "very deep": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}

PATH_VALUES = {
    "subaccount_id": "sub-cross",
    "account_id": "acct-1",
    "symbol": "BTC-PERP",
    "key_id": "0000000000000000",
}


async def test_garbage_bodies_never_get_a_500(admin: Api, app: FastAPI) -> None:
    await build(admin)
    routes: list[tuple[str, str]] = []
    for template, operations in app.openapi()["paths"].items():
        for method in operations:
            if method in ("post", "put", "patch"):
                # Path parameters this table does not know get a placeholder id, so a new
                # endpoint is swept without editing the test.
                values = defaultdict(lambda: "0000000000000000", PATH_VALUES)
                routes.append((method.upper(), template.format_map(values)))
    assert len(routes) >= 15, routes  # the sweep covers the API, not a stub of it
    failures: list[str] = []
    for method, url in routes:
        for name, raw in GARBAGE.items():
            headers = {"Authorization": f"Bearer {admin.key}", "Content-Type": "application/json"}
            try:
                response = await admin.client.request(method, url, content=raw, headers=headers)
            except Exception as exc:  # the app's 500 handler re-raises through the transport
                failures.append(f"{method} {url} with {name}: raised {exc!r}")
                continue
            if response.status_code >= 500:
                failures.append(
                    f"{method} {url} with {name}: {response.status_code} {response.text}"
                )
            elif response.status_code >= 400 and "code" not in response.json():
                failures.append(f"{method} {url} with {name}: not a problem: {response.text}")
    assert not failures, "\n".join(failures)
