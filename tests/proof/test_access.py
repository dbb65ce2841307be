"""Proof 6, access (api.md, Auth): every route of the app × every role × a key scoped to the
account that owns the object, a key scoped to another account, and an unscoped key, plus eight
kinds of bad credential — generated from the app's own routes, so a new endpoint is covered (or
the proof fails, naming it).

``POLICY`` is written out from api.md (and the README's documented choices where api.md is
silent), never imported from ``app/auth``: where the code and the contract disagree, this proof
fails. For every request it expects

- a role the contract allows → 2xx (every request is well formed, on real seeded objects, so
  no 422 can hide a leak); a role it does not → 403 ``FORBIDDEN``;
- a key scoped to another account than the object's → the answer an object that never existed
  gets (404 for a path; as unknown for a body reference), equal once the ids are swapped: the
  object is not revealed;
- a list → only the key's own accounts' objects; and every seeded object of both accounts does
  show to an unscoped key, so that check can fail;
- no key, or a bad one → 401 ``UNAUTHORIZED``, problem+json;
- a write every account shares (reference data, risk parameters, market data, the global and
  instrument trading states, a key for every account) → only from an unscoped key: a key
  scoped to some accounts moves nothing of the others (403);
- no answer shows a key secret, except the answer that creates it.

Every refusal of a write is sent between two fingerprints of the whole PostgreSQL database and
the run's Redis: a refusal that changed anything fails the proof. After the run every text and
json column of every table and every Redis key and value is searched for each key secret issued
(keys are stored only hashed), and the audit chain must verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.routing import Mount

from app.audit.sealer import seal
from app.core.config import Settings
from app.main import create_app
from tests.conftest import Api
from tests.factories import BTC_PERP, ETH_PERP, desk, marks
from tests.proof.conftest import Figures
from tests.servers import ADMIN_KEY

PROOF = "6 access"

# --- the contract's roles (api.md, Auth), written out here -------------------------------------

ROLES = ("admin", "risk", "trader", "feeder", "auditor")
EVERYONE = frozenset(ROLES)
ADMINS = frozenset({"admin"})
# "risk: read everything", "trader: ... reads — for its accounts", "auditor: read everything";
# "feeder: post marks and order books; nothing else".
READERS = frozenset({"admin", "risk", "trader", "auditor"})
# "risk: set limits and trading states; ... resolve margin calls".
RISK_WRITERS = frozenset({"admin", "risk"})
# "State from the venue (trader for its accounts; admin)"; "Pre-trade check (trader)".
VENUE_WRITERS = frozenset({"admin", "trader"})
# api.md is silent on leverage; the README's documented choice: admin, risk or trader.
LEVERAGE_WRITERS = frozenset({"admin", "risk", "trader"})
# "Market data (feeder)".
MARKET_WRITERS = frozenset({"admin", "feeder"})
# "Audit (auditor, admin)".
AUDIT_READERS = frozenset({"admin", "auditor"})

# A key's scope: every account (None), or one of the two seeded accounts.
SCOPES: tuple[str | None, ...] = (None, "alpha", "bravo")


class Kind(Enum):
    PUBLIC = "no key needed"
    REDIRECT = "no key needed: a redirect (3xx) to a public page"
    SHARED = "shared data: every allowed key, scoped or not"
    COMMON = "a write every account shares: allowed roles with an unscoped key only"
    OWNED = "about one account's object: to a key scoped elsewhere, as if it did not exist"
    LIST = "shows exactly what the key's scope holds"


NO_KEY = frozenset({Kind.PUBLIC, Kind.REDIRECT})


@dataclass(frozen=True)
class Objects:
    """One account's seeded objects; ``GHOST`` names ids that exist nowhere. Every id of
    account ``x`` that a client chooses starts with ``x-``, so an answer that mentions an
    account's objects is recognised by that prefix (or by one of its opaque ids)."""

    name: str
    fund: str
    main: str
    """Cross; 1,000,000 USDC, long 0.1 BTC-PERP, an active reservation."""
    calls: str
    """Cross; 3,500 USDC, long 1 BTC-PERP at 60,000: MM 5 % · 60,000 = 3,000 against equity
    3,500, ratio 0.857 ≥ the 0.8 warning level → an open margin call."""
    idle: str
    """Halted (a trading state of this account for lists to show); receives transfers."""
    reservation: str
    margin_call: str
    spare_key: str
    """An auditor key scoped to this account, for the revocation route."""
    key_ids: frozenset[str] = frozenset()
    """Every key scoped to this account."""

    def markers(self) -> list[str]:
        return [f"{self.name}-", self.reservation, self.margin_call, *sorted(self.key_ids)]

    def swapped_to(self, other: Objects) -> list[tuple[str, str]]:
        return [
            (self.reservation, other.reservation),
            (self.margin_call, other.margin_call),
            (self.spare_key, other.spare_key),
            (f"{self.name}-", f"{other.name}-"),
        ]


GHOST = Objects(
    "ghost", "ghost-fund", "ghost-main", "ghost-calls", "ghost-idle", "0" * 32, "1" * 32, "0" * 16
)


@dataclass
class World:
    alpha: Objects
    bravo: Objects
    keys: dict[tuple[str, str | None], str]
    """(role, scope) → key."""
    bad: dict[str, dict[str, str]]
    """Eight kinds of bad credential → the headers that carry them."""
    parameters: dict[str, Any]
    secrets: list[str]
    """Every key issued while seeding, and the bootstrap admin key."""

    def objects(self, scope: str | None) -> Objects:
        return self.bravo if scope == "bravo" else self.alpha


@dataclass(frozen=True)
class Call:
    url: str
    body: Any = None


Body = Any
"""JSON whose strings are templates — ``{o.main}``: of the object's account, ``{me.main}``: of
the calling key's own, ``{n}``: a serial, ``{today}``: the UTC date — or a function of the
world that returns such JSON."""


def render(template: Any, **names: Any) -> Any:
    if isinstance(template, str):
        return template.format(**names)
    if isinstance(template, dict):
        return {key: render(value, **names) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, **names) for value in template]
    return template


@dataclass(frozen=True)
class Case:
    kind: Kind
    path: str
    body: Body = None
    outside: int = 404
    """OWNED: what a key scoped to another account gets (what an unknown object gets)."""

    def build(self, w: World, o: Objects, me: Objects, n: int) -> Call:
        body = self.body(w) if callable(self.body) else self.body
        names = {"o": o, "me": me, "n": n, "today": datetime.now(UTC).date().isoformat()}
        return Call(render(self.path, **names), render(body, **names))


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    cases: tuple[Case, ...]


def rule(roles: frozenset[str], *cases: Case) -> Rule:
    return Rule(roles, cases)


def owned(path: str, body: Body = None, *, outside: int = 404) -> Case:
    return Case(Kind.OWNED, path, body, outside)


def listed(path: str, body: Body = None) -> Case:
    return Case(Kind.LIST, path, body)


def shared(path: str) -> Case:
    return Case(Kind.SHARED, path)


def common(path: str, body: Body) -> Case:
    return Case(Kind.COMMON, path, body)


def public(path: str) -> Rule:
    return rule(EVERYONE, Case(Kind.PUBLIC, path))


def redirect(path: str) -> Rule:
    return rule(EVERYONE, Case(Kind.REDIRECT, path))


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def marks_body(_: Any = None) -> dict[str, Any]:
    prices = {"BTC-PERP": "60000", "ETH-PERP": "3000", "BTC": "60000", "ETH": "3000"}
    ts = now()
    return {
        "marks": [
            {"symbol": symbol, "price": price, "source": source, "ts": ts}
            for symbol, price in prices.items()
            for source in ("feed-a", "feed-b")
        ]
    }


def book_body(_: Any = None) -> dict[str, Any]:
    return {"bids": [["59990", "5"]], "asks": [["60010", "5"]], "ts": now()}


def fill_of(fill_id: str, subaccount_id: str, size: str = "0.001") -> dict[str, Any]:
    return {
        "fill_id": fill_id,
        "subaccount_id": subaccount_id,
        "instrument": "BTC-PERP",
        "side": "buy",
        "size": size,
        "price": "60000",
        "fee": "0",
        "ts": now(),
    }


def order(**extra: Any) -> dict[str, Any]:
    return {"instrument": "BTC-PERP", "side": "buy", "size": "0.01", "type": "market", **extra}


def state(scope: str, scope_id: str | None = None) -> dict[str, Any]:
    body = {"scope": scope, "state": "active", "reason": "access proof"}
    return body if scope_id is None else {**body, "id": scope_id}


ASSET_ETH = {"collateral_weight": "0.8", "underlying": "ETH"}
SNAPSHOT = {
    "balances": {"USDC": "1000000"},
    "positions": [{"instrument": "BTC-PERP", "size": "0.1", "entry_price": "60000"}],
}
SUB = "/v1/subaccounts/{o.main}"

# The policy of every route, from api.md. A route the app has and this table lacks, or an entry
# for a route the app no longer has, fails ``test_every_route_of_the_app_is_classified``.
POLICY: dict[str, Rule] = {
    # Operations: "No auth on these three; everything else needs a key." The generated API
    # document and its two viewers describe the public contract (openapi/openapi.json is
    # published in the repository) and hold no account data: public too.
    "GET /healthz": public("/healthz"),
    "GET /readyz": public("/readyz"),
    "GET /metrics": public("/metrics"),
    "GET /openapi.json": public("/openapi.json"),
    "GET /docs": public("/docs"),
    "GET /docs/oauth2-redirect": public("/docs/oauth2-redirect"),
    "GET /redoc": public("/redoc"),
    # The risk page's files (app/ui): static, no account data; the page calls /v1 with a key.
    "GET /": redirect("/"),
    "GET /ui": public("/ui"),
    "GET /ui/{asset:path}": public("/ui/risk.js"),
    "GET /docs/assets": public("/docs/assets/swagger-ui/swagger-ui.css"),  # the viewers' files
    # Auth (admin). A scoped admin mints keys inside its scope only: a scope never grows
    # (another account's key: 403, as for an unknown account).
    "POST /v1/api-keys": rule(
        ADMINS,
        owned("/v1/api-keys", {"role": "auditor", "accounts": ["{o.fund}"]}, outside=403),
        common("/v1/api-keys", {"role": "auditor", "label": "every account"}),
    ),
    "GET /v1/api-keys": rule(ADMINS, listed("/v1/api-keys")),
    "DELETE /v1/api-keys/{key_id}": rule(ADMINS, owned("/v1/api-keys/{o.spare_key}")),
    # Reference data (admin), shared by every account.
    "PUT /v1/assets/{symbol}": rule(ADMINS, common("/v1/assets/ETH", ASSET_ETH)),
    "GET /v1/assets": rule(READERS, shared("/v1/assets")),
    "GET /v1/assets/{symbol}": rule(READERS, shared("/v1/assets/USDC")),
    "PUT /v1/instruments/{symbol}": rule(ADMINS, common("/v1/instruments/ETH-PERP", ETH_PERP)),
    "GET /v1/instruments": rule(READERS, shared("/v1/instruments")),
    "GET /v1/instruments/{symbol}": rule(READERS, shared("/v1/instruments/BTC-PERP")),
    # Accounts and subaccounts (admin; a replay answers 200), limits and trading states (risk).
    "POST /v1/accounts": rule(
        ADMINS, owned("/v1/accounts", {"account_id": "{o.fund}", "name": "{o.name} fund"})
    ),
    "GET /v1/accounts": rule(READERS, listed("/v1/accounts")),
    "GET /v1/accounts/{account_id}": rule(READERS, owned("/v1/accounts/{o.fund}")),
    "PUT /v1/accounts/{account_id}/limits": rule(
        RISK_WRITERS, owned("/v1/accounts/{o.fund}/limits", {"max_gross_notional": "100000000"})
    ),
    "POST /v1/subaccounts": rule(
        ADMINS,
        owned(
            "/v1/subaccounts",
            {"subaccount_id": "{o.idle}", "account_id": "{o.fund}", "margin_mode": "cross"},
        ),
    ),
    "GET /v1/subaccounts": rule(
        READERS,
        listed("/v1/subaccounts"),
        owned("/v1/subaccounts?account_id={o.fund}", outside=200),
    ),
    "GET /v1/subaccounts/{subaccount_id}": rule(READERS, owned(SUB)),
    "PATCH /v1/subaccounts/{subaccount_id}": rule(ADMINS, owned(SUB, {"strategy": "{o.name}-b"})),
    "PUT /v1/subaccounts/{subaccount_id}/limits": rule(
        RISK_WRITERS, owned(SUB + "/limits", {"max_leverage": "50"})
    ),
    "PUT /v1/subaccounts/{subaccount_id}/leverage": rule(
        LEVERAGE_WRITERS, owned(SUB + "/leverage", {"instrument": "BTC-PERP", "leverage": "5"})
    ),
    # Another account's subaccount or account is refused as an unknown one (422 naming ``id``).
    "PUT /v1/trading-state": rule(
        RISK_WRITERS,
        owned("/v1/trading-state", state("subaccount", "{o.main}"), outside=422),
        owned("/v1/trading-state", state("account", "{o.fund}"), outside=422),
        common("/v1/trading-state", state("global")),
        common("/v1/trading-state", state("instrument", "ETH-PERP")),
    ),
    "GET /v1/trading-state": rule(READERS, listed("/v1/trading-state")),
    # State from the venue (trader for its accounts; admin).
    "POST /v1/subaccounts/{subaccount_id}/transfers": rule(
        VENUE_WRITERS,
        owned(
            SUB + "/transfers",
            {"transfer_id": "{me.name}-in-{n}", "asset": "USDC", "amount": "10", "kind": "deposit"},
        ),
        # From the key's own subaccount: another account's destination is an unknown one.
        owned(
            "/v1/subaccounts/{me.main}/transfers",
            {
                "transfer_id": "{me.name}-move-{n}",
                "asset": "USDC",
                "amount": "1",
                "kind": "transfer",
                "to_subaccount_id": "{o.idle}",
            },
            outside=422,
        ),
    ),
    "POST /v1/fills": rule(
        VENUE_WRITERS,
        owned("/v1/fills", lambda w: {"fills": [fill_of("{me.name}-fill-{n}", "{o.main}")]}),
        # One fill of the key's own and one on the object's subaccount: all or nothing.
        owned(
            "/v1/fills",
            lambda w: {
                "fills": [
                    fill_of("{me.name}-fill-{n}-a", "{me.main}"),
                    fill_of("{me.name}-fill-{n}-b", "{o.main}"),
                ]
            },
        ),
    ),
    "PUT /v1/subaccounts/{subaccount_id}/snapshot": rule(
        VENUE_WRITERS, owned(SUB + "/snapshot", SNAPSHOT)
    ),
    "GET /v1/subaccounts/{subaccount_id}/positions": rule(READERS, owned(SUB + "/positions")),
    "GET /v1/subaccounts/{subaccount_id}/balances": rule(READERS, owned(SUB + "/balances")),
    "POST /v1/subaccounts/{subaccount_id}/reconcile": rule(
        VENUE_WRITERS, owned(SUB + "/reconcile", SNAPSHOT)
    ),
    # Market data (feeder): every account's margin moves with a mark or a book.
    "POST /v1/marks": rule(MARKET_WRITERS, common("/v1/marks", marks_body)),
    "GET /v1/marks": rule(READERS, shared("/v1/marks")),
    "GET /v1/marks/{symbol}": rule(READERS, shared("/v1/marks/BTC-PERP")),
    "PUT /v1/books/{symbol}": rule(MARKET_WRITERS, common("/v1/books/BTC-PERP", book_body)),
    "GET /v1/books/{symbol}": rule(READERS, shared("/v1/books/BTC-PERP")),
    # Risk views (risk, auditor, trader for its accounts; admin).
    "GET /v1/subaccounts/{subaccount_id}/margin": rule(READERS, owned(SUB + "/margin")),
    "GET /v1/accounts/{account_id}/margin": rule(READERS, owned("/v1/accounts/{o.fund}/margin")),
    # "GET /v1/risk/parameters (every role but feeder), PUT /v1/risk/parameters (admin)".
    "GET /v1/risk/parameters": rule(READERS, shared("/v1/risk/parameters")),
    "PUT /v1/risk/parameters": rule(ADMINS, common("/v1/risk/parameters", lambda w: w.parameters)),
    "GET /v1/risk/overview": rule(
        READERS,
        listed("/v1/risk/overview"),
        owned("/v1/risk/overview?account_id={o.fund}", outside=200),
    ),
    "POST /v1/subaccounts/{subaccount_id}/stress": rule(READERS, owned(SUB + "/stress", {})),
    # A 50 % fall of BTC liquidates both accounts' ``calls`` subaccounts.
    "POST /v1/risk/stress": rule(
        READERS,
        listed("/v1/risk/stress", {"scenario": {"name": "crash", "shocks": {"BTC": -0.5}}}),
    ),
    "GET /v1/margin-calls": rule(
        READERS,
        listed("/v1/margin-calls"),
        owned("/v1/margin-calls?subaccount_id={o.calls}", outside=200),
    ),
    "POST /v1/margin-calls/{call_id}/ack": rule(
        RISK_WRITERS, owned("/v1/margin-calls/{o.margin_call}/ack")
    ),
    "GET /v1/reports/margin": rule(READERS, listed("/v1/reports/margin?date={today}")),
    # Pre-trade (trader; admin).
    "POST /v1/pretrade/check": rule(
        VENUE_WRITERS,
        owned("/v1/pretrade/check", {"subaccount_id": "{o.main}", "orders": [order()]}),
    ),
    "POST /v1/pretrade/max-size": rule(
        VENUE_WRITERS,
        owned(
            "/v1/pretrade/max-size",
            {
                "subaccount_id": "{o.main}",
                "instrument": "BTC-PERP",
                "side": "buy",
                "type": "market",
            },
        ),
    ),
    "POST /v1/pretrade/max-scale": rule(
        VENUE_WRITERS,
        owned("/v1/pretrade/max-scale", {"subaccount_id": "{o.main}", "orders": [order()]}),
    ),
    "GET /v1/subaccounts/{subaccount_id}/reservations": rule(READERS, owned(SUB + "/reservations")),
    "DELETE /v1/reservations/{reservation_id}": rule(
        VENUE_WRITERS, owned("/v1/reservations/{o.reservation}")
    ),
    # Audit (auditor, admin).
    "GET /v1/audit": rule(
        AUDIT_READERS,
        listed("/v1/audit?limit=1000"),
        owned("/v1/audit?subaccount_id={o.main}&limit=1000", outside=200),
    ),
    "GET /v1/audit/verify": rule(AUDIT_READERS, shared("/v1/audit/verify")),
    "GET /v1/audit/export": rule(AUDIT_READERS, listed("/v1/audit/export")),
}


def app_routes(app: FastAPI) -> list[str]:
    """``METHOD path`` of every route the app serves, in the app's order (HEAD, which
    Starlette adds beside each GET of its own routes, is that GET without a body)."""
    routes: list[str] = []
    for route in iter_route_contexts(app.routes):
        # A mount of static files answers GET (and HEAD) below its path, nothing else.
        static = isinstance(route.original_route, Mount) and isinstance(
            route.original_route.app, StaticFiles
        )
        methods = {"GET"} if static else set(route.methods or {"ANY"})
        if "GET" in methods:
            methods.discard("HEAD")
        routes.extend(f"{method} {route.path}" for method in sorted(methods))
    return routes


def unclassified(routes: Sequence[str]) -> tuple[list[str], list[str]]:
    missing = [route for route in routes if route not in POLICY]
    stale = [route for route in POLICY if route not in routes]
    return missing, stale


def test_every_route_of_the_app_is_classified(settings: Settings) -> None:
    """The table covers the app exactly: a new endpoint fails here until it is classified."""
    missing, stale = unclassified(app_routes(create_app(settings)))
    assert not missing, "classify this new route in POLICY (tests/proof/test_access.py): " + (
        ", ".join(missing)
    )
    assert not stale, "POLICY classifies a route the app no longer has: " + ", ".join(stale)


# --- the seeded world --------------------------------------------------------------------------


async def seed_account(admin: Api, name: str) -> Objects:
    """An account with three subaccounts, a reservation, a margin call and a halted state."""
    fund, main, calls, idle = (f"{name}-{part}" for part in ("fund", "main", "calls", "idle"))
    await admin.ok("POST", "/v1/accounts", json={"account_id": fund, "name": f"{name} fund"})
    for sub, extra in ((main, {"strategy": f"{name}-strat"}), (calls, {}), (idle, {})):
        body = {"subaccount_id": sub, "account_id": fund, "margin_mode": "cross", **extra}
        await admin.ok("POST", "/v1/subaccounts", json=body)
    for sub, amount in ((main, "1000000"), (calls, "3500"), (idle, "1000")):
        body = {"transfer_id": f"{sub}-seed", "asset": "USDC", "amount": amount, "kind": "deposit"}
        await admin.ok("POST", f"/v1/subaccounts/{sub}/transfers", json=body)
    fills = [fill_of(f"{main}-seed", main, "0.1"), fill_of(f"{calls}-seed", calls, "1")]
    await admin.ok("POST", "/v1/fills", json={"fills": fills})
    halt = {"scope": "subaccount", "id": idle, "state": "halted", "reason": f"{name}-reason"}
    await admin.ok("PUT", "/v1/trading-state", json=halt)
    reserve = {
        "subaccount_id": main,
        "orders": [order(client_order_id=f"{name}-order")],
        "reserve": True,
        "reservation_ttl_s": 86_400,
    }
    check = await admin.ok("POST", "/v1/pretrade/check", json=reserve)
    assert check["decision"] == "accept" and check["reservation_id"], check
    [call] = (await admin.ok("GET", f"/v1/margin-calls?subaccount_id={calls}"))["margin_calls"]
    assert (call["level"], call["status"]) == ("warning", "open"), call
    return Objects(name, fund, main, calls, idle, check["reservation_id"], call["id"], "")


async def build_world(admin: Api) -> World:
    await admin.ok("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
    await admin.ok("PUT", "/v1/assets/BTC", json={"collateral_weight": "0.9", "underlying": "BTC"})
    await admin.ok("PUT", "/v1/assets/ETH", json=ASSET_ETH)
    # Marks stay fresh for the whole run (the default is 5 s): transfers out need fresh marks.
    await admin.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP | {"stale_after_s": 3600})
    await admin.ok("PUT", "/v1/instruments/ETH-PERP", json=ETH_PERP)
    await admin.ok("POST", "/v1/marks", json=marks_body())
    await admin.ok("PUT", "/v1/books/BTC-PERP", json=book_body())
    accounts = {name: await seed_account(admin, name) for name in ("alpha", "bravo")}

    secrets = [ADMIN_KEY]
    key_ids: dict[str | None, set[str]] = {scope: set() for scope in SCOPES}

    async def mint(role: str, scope: str | None, label: str) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "label": label}
        if scope is not None:
            body["accounts"] = [accounts[scope].fund]
        created: dict[str, Any] = await admin.ok("POST", "/v1/api-keys", json=body)
        secrets.append(created["key"])
        key_ids[scope].add(created["key_id"])
        return created

    keys = {
        (role, scope): (await mint(role, scope, f"{role}:{scope or 'all'}"))["key"]
        for role in ROLES
        for scope in SCOPES
    }
    spares = {s: (await mint("auditor", s, "spare"))["key_id"] for s in ("alpha", "bravo")}
    doomed = await mint("admin", None, "doomed")
    await admin.ok("DELETE", f"/v1/api-keys/{doomed['key_id']}")
    known_id = keys["admin", None].split("_")[1]
    bad = {
        "no key": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "no scheme": {"Authorization": keys["admin", None]},
        "not our shape": {"Authorization": "Bearer garbage"},
        "unknown key": {"Authorization": "Bearer pf_0123456789abcdef_" + "x" * 43},
        "known id, wrong secret": {"Authorization": f"Bearer pf_{known_id}_{'y' * 43}"},
        "revoked key": {"Authorization": f"Bearer {doomed['key']}"},
    }
    alpha, bravo = (
        replace(accounts[s], spare_key=spares[s], key_ids=frozenset(key_ids[s]))
        for s in ("alpha", "bravo")
    )
    parameters = await admin.ok("GET", "/v1/risk/parameters")
    return World(alpha, bravo, keys, bad, parameters, secrets)


def secret_of(key: str) -> str:
    """The secret part of ``pf_<key_id>_<secret>`` (the bootstrap key is a secret whole)."""
    parts = key.split("_", 2)
    return parts[2] if key != ADMIN_KEY and len(parts) == 3 else key


# --- what a request could change ---------------------------------------------------------------

# Rows a background job writes on its own clock whatever the requests do: the end-of-day capture
# (every 60 s, once a day has ended without a report) stores that day's rows after it ended.
WRITTEN_BY_THE_CLOCK = {
    "margin_reports": " WHERE captured_at < (report_date + 1)::timestamp AT TIME ZONE 'UTC'"
}


class Store:
    """The run's PostgreSQL database and Redis database, read directly."""

    def __init__(self, engine: AsyncEngine, cache: redis_asyncio.Redis) -> None:
        self.engine = engine
        self.cache = cache
        self.tables: list[str] = []

    async def table_names(self) -> list[str]:
        if not self.tables:
            async with self.engine.connect() as connection:
                result = await connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                        "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
                    )
                )
                self.tables = list(result.scalars())
        return self.tables

    async def fingerprint(self) -> dict[str, str]:
        """A digest of every row of every table, and of every Redis key and value."""
        query = " UNION ALL ".join(
            f"SELECT '{table}', md5(coalesce(string_agg(row::text, '|' ORDER BY row::text), ''))"
            f' FROM "{table}" AS row{WRITTEN_BY_THE_CLOCK.get(table, "")}'
            for table in await self.table_names()
        )
        await self.swept()
        async with self.engine.begin() as connection:
            await seal(connection)  # entries are sealed just after their commit
            digests = {name: digest for name, digest in await connection.execute(text(query))}
        values = await self.redis_values()
        digests["redis"] = hashlib.sha256(repr(sorted(values.items())).encode()).hexdigest()
        return digests

    async def swept(self, deadline_s: float = 10.0) -> None:
        """Wait for the margin-call sweep of marks posted earlier (it runs off the mark post's
        request, within ~0.1 s): what it writes is the allowed post's doing, not a refusal's."""
        give_up = time.monotonic() + deadline_s
        while True:
            async with self.engine.connect() as connection:
                left = (
                    await connection.execute(text("SELECT count(*) FROM marks_moved"))
                ).scalar_one()
            if not left:
                return
            assert time.monotonic() < give_up, f"{left} marks still unswept after {deadline_s} s"
            await asyncio.sleep(0.02)

    async def redis_values(self) -> dict[str, str]:
        """Every key of the Redis database and its value, read by type."""
        values: dict[str, str] = {}
        async for raw in self.cache.scan_iter(count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            kind = await self.cache.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            value: Any = kind
            if kind == "string":
                value = await self.cache.get(key)
            elif kind == "hash":
                value = sorted((await self.cache.hgetall(key)).items())
            elif kind == "list":
                value = await self.cache.lrange(key, 0, -1)
            elif kind == "set":
                value = sorted(await self.cache.smembers(key))
            elif kind == "zset":
                value = await self.cache.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await self.cache.xrange(key)
            values[key] = repr(value)
        return values

    async def secrets_stored(self, secrets: Sequence[str]) -> tuple[list[str], int, int]:
        """Where any of ``secrets`` occurs: in every text, varchar or json column of every
        table, or in any Redis key or value. Also the number of cells and keys read."""
        found: list[str] = []
        cells = 0
        async with self.engine.connect() as connection:
            columns = await connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND data_type IN "
                    "('text', 'character varying', 'character', 'json', 'jsonb') "
                    "ORDER BY table_name, column_name"
                )
            )
            for table, column in list(columns):
                rows = await connection.execute(
                    text(f'SELECT "{column}"::text FROM "{table}" WHERE "{column}" IS NOT NULL')
                )
                for (value,) in rows:
                    cells += 1
                    found.extend(f"{table}.{column}" for s in secrets if s in value)
        values = await self.redis_values()
        for key, value in values.items():
            found.extend(f"redis {key}" for s in secrets if s in key or s in value)
        return found, cells, len(values)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    engine = create_async_engine(settings.database_url)
    assert settings.redis_url is not None
    cache = redis_asyncio.Redis.from_url(settings.redis_url)
    yield Store(engine, cache)
    await cache.aclose()
    await engine.dispose()


# --- sending and judging -----------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    who: str
    headers: dict[str, str]
    call: Call
    expect: str
    """``ok``, ``401``, ``403`` or ``outside`` (with ``ghost``: the same about no object)."""
    scope: str | None = None
    ghost: Call | None = None


@dataclass
class Tally:
    requests: int = 0
    leaks: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    changed_state: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)


PROBLEM_CODES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 422: "VALIDATION_ERROR"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def code_of(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def timeless(body: str) -> str:
    """An answer without the times it was computed at (``as_of``): they differ between any two
    requests and say nothing about an object."""
    return TIMESTAMP.sub("<time>", body)


def swap(body: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        body = body.replace(old, new)
    return body


class Matrix:
    def __init__(self, client: httpx.AsyncClient, world: World, store: Store) -> None:
        self.client = client
        self.w = world
        self.store = store
        self.tally = Tally()
        self.serial = itertools.count(1)
        self.secrets = [secret_of(key) for key in world.secrets]

    def probes(self, roles: frozenset[str], this: Case) -> list[Probe]:
        """Every role × every scope, and every bad credential, for one case of a route. The
        object is always alpha's: the unscoped and alpha-scoped keys are inside, the
        bravo-scoped ones outside."""
        w = self.w
        found: list[Probe] = []
        for role in ROLES:
            for scope in SCOPES:
                me, n = w.objects(scope), next(self.serial)
                call = this.build(w, w.alpha, me, n)
                who = f"{role}@{scope or 'all'}"
                headers = {"Authorization": f"Bearer {w.keys[role, scope]}"}
                if this.kind in NO_KEY:
                    found.append(Probe(who, headers, call, "ok", scope))
                elif role not in roles or (this.kind is Kind.COMMON and scope is not None):
                    found.append(Probe(who, headers, call, "403", scope))
                elif this.kind is Kind.OWNED and scope == "bravo":
                    ghost = this.build(w, GHOST, me, n)
                    found.append(Probe(who, headers, call, "outside", scope, ghost))
                else:
                    found.append(Probe(who, headers, call, "ok", scope))
        for name, headers in w.bad.items():
            call = this.build(w, w.alpha, w.alpha, next(self.serial))
            expect = "ok" if this.kind in NO_KEY else "401"
            found.append(Probe(f"bad credential ({name})", headers, call, expect))
        return found

    async def run(self, route: str, rule: Rule) -> None:
        """The refusals first, all at once, between two fingerprints when the method writes;
        then what is allowed (one at a time when it writes)."""
        method = route.split(" ", 1)[0]
        writes = method != "GET"
        for number, this in enumerate(rule.cases, 1):
            label = route if len(rule.cases) == 1 else f"{route} #{number}"
            probes = self.probes(rule.roles, this)
            before = await self.store.fingerprint() if writes else {}
            refused = [p for p in probes if p.expect != "ok"]
            await asyncio.gather(*(self.judge(method, label, this, p) for p in refused))
            if writes:
                after = await self.store.fingerprint()
                if changed := sorted(k for k in before if before[k] != after[k]):
                    self.tally.changed_state.append(f"{label}: the refusals changed {changed}")
            allowed = [p for p in probes if p.expect == "ok"]
            if writes:
                for probe in allowed:
                    await self.judge(method, label, this, probe)
            else:
                await asyncio.gather(*(self.judge(method, label, this, p) for p in allowed))

    async def send(self, method: str, probe: Probe, call: Call) -> httpx.Response | str:
        self.tally.requests += 1
        kwargs: dict[str, Any] = {"headers": probe.headers}
        if call.body is not None:
            kwargs["json"] = call.body
        try:
            return await self.client.request(method, call.url, **kwargs)
        except Exception as exc:  # the in-process transport raises what would be a 500
            return f"raised {exc!r}"

    async def judge(self, method: str, route: str, this: Case, probe: Probe) -> None:
        where = f"{probe.who}: {method} {probe.call.url} [{route}]"
        response = await self.send(method, probe, probe.call)
        if isinstance(response, str):
            self.tally.mismatches.append(f"{where}: {response}")
            return
        status, body = response.status_code, response.text
        seen = f"{status} {body[:300]}"
        if probe.expect == "ok":
            low = 300 if this.kind is Kind.REDIRECT else 200
            if not low <= status < low + 100:
                self.tally.mismatches.append(f"{where}: expected {low // 100}xx, got {seen}")
                return
            if method == "POST" and probe.call.url == "/v1/api-keys":
                key = response.json()["key"]
                self.tally.issued.append(key)
                self.secrets.append(secret_of(key))
                body = body.replace(key, "")  # shown once: in the answer that creates it
            self.check_secrets(where, body)
            self.check_markers(where, this, probe, body)
            return
        self.check_secrets(where, body)
        if probe.expect == "outside":
            await self.judge_outside(method, where, this, probe, response)
            return
        expected = int(probe.expect)
        if 200 <= status < 300:
            self.tally.leaks.append(f"{where}: expected {expected}, answered {seen}")
        elif status != expected or code_of(response) != PROBLEM_CODES[expected]:
            self.tally.mismatches.append(f"{where}: expected {expected}, got {seen}")
        elif not response.headers["content-type"].startswith("application/problem+json"):
            self.tally.mismatches.append(f"{where}: the {status} is not problem+json")

    async def judge_outside(
        self, method: str, where: str, this: Case, probe: Probe, response: httpx.Response
    ) -> None:
        """A key scoped to bravo, about alpha's object: the answer the same request about no
        object gets, once alpha's ids are swapped for the ghost's."""
        assert probe.ghost is not None
        status = response.status_code
        seen = f"{status} {response.text[:300]}"
        ghost = await self.send(method, probe, probe.ghost)
        if isinstance(ghost, str):
            self.tally.mismatches.append(f"{where}: the same about no object {ghost}")
            return
        self.check_secrets(where, ghost.text)
        if 200 <= status < 300 and not 200 <= this.outside < 300:
            self.tally.leaks.append(f"{where}: another account's object answered {seen}")
            return
        swapped = timeless(swap(response.text, self.w.alpha.swapped_to(GHOST)))
        if (status, swapped) != (ghost.status_code, timeless(ghost.text)):
            self.tally.leaks.append(
                f"{where}: tells another account's object from none: {seen} vs "
                f"{ghost.status_code} {ghost.text[:300]}"
            )
            return
        code = PROBLEM_CODES.get(this.outside)
        if status != this.outside or (code is not None and code_of(response) != code):
            self.tally.mismatches.append(f"{where}: expected {this.outside}, got {seen}")

    def check_secrets(self, where: str, body: str) -> None:
        if shown := [s[:6] + "…" for s in self.secrets if s in body]:
            self.tally.leaks.append(f"{where}: shows the key secrets {shown}")

    def check_markers(self, where: str, this: Case, probe: Probe, body: str) -> None:
        """A scoped key's answer mentions no other account's objects, and an answer that needs
        no key mentions no account's; a list shows each of its key's accounts."""
        w = self.w
        if this.kind in NO_KEY:
            foreign = [w.alpha, w.bravo]
        elif probe.scope is not None:
            foreign = [w.alpha if probe.scope == "bravo" else w.bravo]
        else:
            foreign = []
        for other in foreign:
            if hits := [marker for marker in other.markers() if marker in body]:
                self.tally.leaks.append(f"{where}: shows {other.name}'s {hits}: {body[:300]}")
        if this.kind is Kind.LIST:
            own = [w.alpha, w.bravo] if probe.scope is None else [w.objects(probe.scope)]
            for account in own:
                if not any(marker in body for marker in account.markers()):
                    self.tally.mismatches.append(
                        f"{where}: shows none of {account.name}'s objects, so this list's scope "
                        f"check could not fail: {body[:300]}"
                    )


# --- the proof ---------------------------------------------------------------------------------


async def test_every_route_every_role_every_scope(
    admin: Api, app: FastAPI, store: Store, figures: Figures
) -> None:
    """The whole matrix; then no key secret is stored in plaintext and the chain verifies."""
    started = time.monotonic()
    routes = app_routes(app)
    missing, stale = unclassified(routes)
    assert not missing and not stale, f"unclassified: {missing}; stale: {stale}"
    world = await build_world(admin)
    matrix = Matrix(admin.client, world, store)
    for route in routes:
        await matrix.run(route, POLICY[route])
    tally = matrix.tally

    secrets = matrix.secrets
    found, cells, redis_keys = await store.secrets_stored(secrets)
    verify = await admin.ok("GET", "/v1/audit/verify")
    async with store.engine.connect() as connection:
        entries = (await connection.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()

    figures.record("routes (method × path, /v1 and operations)", len(routes))
    figures.record("requests sent", tally.requests)
    figures.record("leaks", len(tally.leaks), 0)
    figures.record("refusals that changed state", len(tally.changed_state), 0)
    figures.record("answers against the policy", len(tally.mismatches), 0)
    figures.record(
        f"key secrets stored in plaintext ({len(secrets)} keys; {cells} cells, "
        f"{redis_keys} Redis keys searched)",
        len(found),
        0,
    )
    figures.record(f"audit chain verifies ({entries} entries)", verify["ok"], True)
    figures.record("seconds", f"{time.monotonic() - started:.1f}")

    problems = [
        *(f"LEAK {leak}" for leak in tally.leaks),
        *(f"STATE {change}" for change in tally.changed_state),
        *tally.mismatches,
    ]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    assert tally.issued and not found, f"key secrets stored in plaintext: {found}"
    assert (verify["ok"], verify["entries"], verify["first_bad_seq"]) == (True, entries, None)


# --- two behaviours told in full ---------------------------------------------------------------


async def test_a_scoped_key_cannot_change_what_every_account_shares(admin: Api) -> None:
    """Regression: an admin key scoped to acct-1 could change an instrument, an asset's weight
    or the risk parameters, and a scoped feeder could post marks and books — each moving
    acct-2's margin, outside the key's scope (the app already refused such keys the global and
    instrument trading states). Now 403, and nothing changes; the same requests from unscoped
    keys succeed, so they are valid."""
    await desk(admin)
    await marks(admin, {"BTC-PERP": "60000", "BTC": "60000"})
    book = {"bids": [["59000", "1"]], "asks": [["61000", "1"]], "ts": now()}
    await admin.ok("PUT", "/v1/books/BTC-PERP", json=book)
    scoped: dict[str, Api] = {}
    unscoped: dict[str, Api] = {}
    for role in ("admin", "feeder"):
        body: dict[str, Any] = {"role": role, "accounts": ["acct-1"]}
        scoped[role] = admin.as_((await admin.ok("POST", "/v1/api-keys", json=body))["key"])
        body = {"role": role}
        unscoped[role] = admin.as_((await admin.ok("POST", "/v1/api-keys", json=body))["key"])
    parameters = await admin.ok("GET", "/v1/risk/parameters")
    mark = {"symbol": "BTC-PERP", "price": "61000", "source": "venue", "ts": now()}
    writes: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("admin", "PUT", "/v1/instruments/BTC-PERP", BTC_PERP | {"price_band": "0.5"}, ""),
        ("admin", "PUT", "/v1/assets/BTC", {"collateral_weight": "0.1", "underlying": "BTC"}, ""),
        ("admin", "PUT", "/v1/risk/parameters", parameters | {"im_multiplier": 3.0}, ""),
        ("feeder", "POST", "/v1/marks", {"marks": [mark]}, "/v1/marks/BTC-PERP"),
        ("feeder", "PUT", "/v1/books/BTC-PERP", book_body(), ""),
    ]

    async def read(path: str) -> Any:
        """What ``path`` answers, without the ages that grow between two reads."""
        return ageless(await admin.ok("GET", path))

    for role, method, path, body, shows in writes:
        before = await read(shows or path)
        refused = await scoped[role].request(method, path, json=body)
        assert (refused.status_code, code_of(refused)) == (403, "FORBIDDEN"), (
            f"{role} scoped to acct-1: {method} {path}: {refused.status_code} {refused.text}"
        )
        assert await read(shows or path) == before, f"{method} {path} was refused but wrote"
        await unscoped[role].ok(method, path, json=body)
        assert await read(shows or path) != before, f"{method} {path} changed nothing"


def ageless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ageless(v) for k, v in value.items() if k != "age_ms"}
    if isinstance(value, list):
        return [ageless(v) for v in value]
    return value


async def test_a_key_is_shown_only_at_creation_and_revocation_is_idempotent(admin: Api) -> None:
    """The key is in its creation's answer only; a revoked key gets 401; revoking again
    changes nothing (the same ``revoked_at``); an unknown key id is a 404."""
    await desk(admin)
    body = {"role": "trader", "accounts": ["acct-1"], "label": "oms"}
    created = await admin.ok("POST", "/v1/api-keys", json=body)
    key = created["key"]
    assert key.startswith(f"pf_{created['key_id']}_")
    trader = admin.as_(key)
    assert (await trader.get("/v1/subaccounts/sub-cross")).status_code == 200

    listing = await admin.get("/v1/api-keys")
    assert listing.status_code == 200 and secret_of(key) not in listing.text
    [entry] = [k for k in listing.json()["api_keys"] if k["key_id"] == created["key_id"]]
    assert "key" not in entry
    assert (entry["role"], entry["accounts"], entry["label"], entry["revoked_at"]) == (
        "trader",
        ["acct-1"],
        "oms",
        None,
    )

    revoked = await admin.ok("DELETE", f"/v1/api-keys/{created['key_id']}")
    assert revoked["revoked_at"] is not None and "key" not in revoked
    response = await trader.get("/v1/subaccounts/sub-cross")
    assert (response.status_code, code_of(response)) == (401, "UNAUTHORIZED"), response.text
    again = await admin.ok("DELETE", f"/v1/api-keys/{created['key_id']}")
    assert again["revoked_at"] == revoked["revoked_at"]
    missing = await admin.delete("/v1/api-keys/0000000000000000")
    assert (missing.status_code, code_of(missing)) == (404, "NOT_FOUND")
