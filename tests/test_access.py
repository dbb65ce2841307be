"""Who may do what: every role, unscoped and scoped to ``acct-1``, against one representative
request per endpoint family; missing, malformed, unknown and revoked keys; and account scope —
outside it a resource answers exactly as if it did not exist, and nothing is written.

Each test builds the desk once and loops over its cases, collecting every failure with the
role, method and path that failed, so one run shows the whole matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from tests.conftest import Api
from tests.factories import BTC_PERP, deposit, desk, fill

ROLES = ("admin", "risk", "trader", "feeder", "auditor")
# Written out from api.md's Auth table rather than imported from app/auth/principal.py, so a
# wrong role set in the app fails here instead of being copied.
READERS = frozenset({"admin", "risk", "trader", "auditor"})
ADMINS = frozenset({"admin"})
RISK_WRITERS = frozenset({"admin", "risk"})
VENUE_WRITERS = frozenset({"admin", "trader"})
LEVERAGE_WRITERS = frozenset({"admin", "risk", "trader"})
MARKET_WRITERS = frozenset({"admin", "feeder"})

TS = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")

AuditHead = Callable[[], Awaitable[int]]


@pytest.fixture
async def audit_head(settings: Settings) -> AsyncIterator[AuditHead]:
    """The audit log's last sequence number, read straight from PostgreSQL: a request that
    wrote nothing leaves it where it was."""
    engine = create_async_engine(settings.database_url)

    async def head() -> int:
        async with engine.connect() as connection:
            result = await connection.execute(text("SELECT coalesce(max(seq), 0) FROM audit_log"))
            return int(result.scalar_one())

    yield head
    await engine.dispose()


# --- the desk and its keys ---------------------------------------------------------------------


@dataclass
class Desk:
    keys: dict[tuple[str, bool], str]
    """(role, scoped to acct-1) → key."""
    key_ids: dict[tuple[str, bool], str]
    spare_key_id: str
    """A key the matrix revokes (again and again: a revoke is idempotent)."""
    revoked_key: str


async def build(admin: Api) -> Desk:
    await desk(admin)
    await deposit(admin, "sub-cross", "100000")
    await deposit(admin, "other-sub", "50000")
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("seed-1", "buy", "1", "60000")]})
    await admin.ok(
        "POST",
        "/v1/fills",
        json={
            "fills": [
                fill(
                    "seed-2", "sell", "2", "3000", subaccount_id="other-sub", instrument="ETH-PERP"
                )
            ]
        },
    )
    marks = [
        {"symbol": symbol, "price": price, "source": "feed-a", "ts": TS}
        for symbol, price in (("BTC-PERP", "60000"), ("ETH-PERP", "3000"), ("BTC", "60000"))
    ]
    await admin.ok("POST", "/v1/marks", json={"marks": marks})
    book = {"bids": [["59990", "2"]], "asks": [["60010", "2"]], "ts": TS}
    await admin.ok("PUT", "/v1/books/BTC-PERP", json=book)
    await admin.ok(
        "PUT",
        "/v1/trading-state",
        json={"scope": "account", "id": "acct-2", "state": "reduce_only", "reason": "seed"},
    )
    keys: dict[tuple[str, bool], str] = {}
    key_ids: dict[tuple[str, bool], str] = {}
    for role in ROLES:
        for scoped in (False, True):
            body: dict[str, Any] = {"role": role, "label": f"{role}{'-scoped' if scoped else ''}"}
            if scoped:
                body["accounts"] = ["acct-1"]
            created = await admin.ok("POST", "/v1/api-keys", json=body)
            assert created["role"] == role
            assert created["accounts"] == (["acct-1"] if scoped else None)
            keys[role, scoped] = created["key"]
            key_ids[role, scoped] = created["key_id"]
    spare = await admin.ok(
        "POST", "/v1/api-keys", json={"role": "auditor", "accounts": ["acct-1"], "label": "spare"}
    )
    doomed = await admin.ok("POST", "/v1/api-keys", json={"role": "admin", "label": "doomed"})
    await admin.ok("DELETE", f"/v1/api-keys/{doomed['key_id']}")
    return Desk(keys, key_ids, spare["key_id"], doomed["key"])


def who(role: str, scoped: bool) -> str:
    return f"{role}{' scoped to acct-1' if scoped else ''}"


def problem_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


# --- the role matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    roles: frozenset[str]
    body: Any = None

    def url(self, d: Desk) -> str:
        return self.path.format(spare=d.spare_key_id)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


# Every request is valid and stays inside acct-1, so every allowed role — scoped or not —
# gets a 2xx, and every write may be repeated (replays of the same ids, idempotent PUTs).
MATRIX: tuple[Req, ...] = (
    # API keys
    Req("GET", "/v1/api-keys", ADMINS),
    Req("POST", "/v1/api-keys", ADMINS, {"role": "auditor", "accounts": ["acct-1"]}),
    Req("DELETE", "/v1/api-keys/{spare}", ADMINS),
    # reference data
    Req("PUT", "/v1/assets/ETH", ADMINS, {"collateral_weight": "0.8", "underlying": "ETH"}),
    Req("PUT", "/v1/instruments/BTC-PERP", ADMINS, BTC_PERP),
    Req("GET", "/v1/assets", READERS),
    Req("GET", "/v1/assets/USDC", READERS),
    Req("GET", "/v1/instruments", READERS),
    Req("GET", "/v1/instruments/BTC-PERP", READERS),
    # accounts and subaccounts
    Req("POST", "/v1/accounts", ADMINS, {"account_id": "acct-1", "name": "Fund One"}),
    Req("GET", "/v1/accounts", READERS),
    Req("GET", "/v1/accounts/acct-1", READERS),
    Req(
        "POST",
        "/v1/subaccounts",
        ADMINS,
        {"subaccount_id": "sub-cross", "account_id": "acct-1", "margin_mode": "cross"},
    ),
    Req("GET", "/v1/subaccounts", READERS),
    Req("GET", "/v1/subaccounts?account_id=acct-1", READERS),
    Req("GET", "/v1/subaccounts/sub-cross", READERS),
    Req("PATCH", "/v1/subaccounts/sub-cross", ADMINS, {"strategy": "basis"}),
    # limits, leverage, trading states
    Req("PUT", "/v1/accounts/acct-1/limits", RISK_WRITERS, {"max_gross_notional": "5000000"}),
    Req(
        "PUT",
        "/v1/subaccounts/sub-cross/limits",
        RISK_WRITERS,
        {"max_leverage": "8", "max_open_orders": {"value": 10, "warn_at": "0.5"}},
    ),
    Req(
        "PUT",
        "/v1/subaccounts/sub-cross/leverage",
        LEVERAGE_WRITERS,
        {"instrument": "BTC-PERP", "leverage": "5"},
    ),
    Req(
        "PUT",
        "/v1/trading-state",
        RISK_WRITERS,
        {"scope": "subaccount", "id": "sub-cross", "state": "reduce_only", "reason": "matrix"},
    ),
    Req("GET", "/v1/trading-state", READERS),
    # state from the venue
    Req(
        "POST",
        "/v1/subaccounts/sub-cross/transfers",
        VENUE_WRITERS,
        {"transfer_id": "mx-dep-1", "asset": "USDC", "amount": "10", "kind": "deposit"},
    ),
    Req("POST", "/v1/fills", VENUE_WRITERS, {"fills": [fill("mx-fill-1", "buy", "0.1", "60000")]}),
    Req(
        "PUT",
        "/v1/subaccounts/sub-cross/snapshot",
        VENUE_WRITERS,
        {
            "balances": {"USDC": "100000"},
            "positions": [{"instrument": "BTC-PERP", "size": "1", "entry_price": "60000"}],
        },
    ),
    Req("GET", "/v1/subaccounts/sub-cross/positions", READERS),
    Req("GET", "/v1/subaccounts/sub-cross/balances", READERS),
    # risk views and parameters
    Req("GET", "/v1/subaccounts/sub-cross/margin", READERS),
    Req("GET", "/v1/accounts/acct-1/margin", READERS),
    Req("GET", "/v1/risk/parameters", READERS),
    Req("PUT", "/v1/risk/parameters", ADMINS, {}),
    # market data
    Req(
        "POST",
        "/v1/marks",
        MARKET_WRITERS,
        {"marks": [{"symbol": "BTC-PERP", "price": "60000", "source": "feed-b", "ts": TS}]},
    ),
    Req(
        "PUT",
        "/v1/books/BTC-PERP",
        MARKET_WRITERS,
        {"bids": [["59995", "1"]], "asks": [["60005", "1"]], "ts": TS},
    ),
    Req("GET", "/v1/marks", READERS),
    Req("GET", "/v1/marks/BTC-PERP", READERS),
    Req("GET", "/v1/books/BTC-PERP", READERS),
)


async def send(api: Api, req: Req, d: Desk) -> Any:
    kwargs = {} if req.body is None else {"json": req.body}
    return await api.request(req.method, req.url(d), **kwargs)


async def test_every_role_against_every_endpoint_family(admin: Api, audit_head: AuditHead) -> None:
    d = await build(admin)
    failures: list[str] = []
    for req in MATRIX:
        # Refusals first: none of them may write anything.
        head = await audit_head()
        for role in ROLES:
            if role in req.roles:
                continue
            for scoped in (False, True):
                try:
                    response = await send(admin.as_(d.keys[role, scoped]), req, d)
                except Exception as exc:  # a 500 surfaces as the app's exception
                    failures.append(f"{who(role, scoped)}: {req}: raised {exc!r}")
                    continue
                if response.status_code != 403 or problem_code(response) != "FORBIDDEN":
                    failures.append(
                        f"{who(role, scoped)}: {req}: expected 403 FORBIDDEN, got "
                        f"{response.status_code} {response.text[:300]}"
                    )
        if await audit_head() != head:
            failures.append(f"{req}: a refused request wrote to the audit log")
        for role in sorted(req.roles):
            for scoped in (False, True):
                try:
                    response = await send(admin.as_(d.keys[role, scoped]), req, d)
                except Exception as exc:
                    failures.append(f"{who(role, scoped)}: {req}: raised {exc!r}")
                    continue
                if not 200 <= response.status_code < 300:
                    failures.append(
                        f"{who(role, scoped)}: {req}: expected 2xx, got "
                        f"{response.status_code} {response.text[:300]}"
                    )
    assert not failures, "\n".join(failures)


BAD_HEADERS: dict[str, dict[str, str]] = {
    "no key": {},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "no scheme": {"Authorization": "pf_test_admin_key_0123456789abcdef"},
    "not our shape": {"Authorization": "Bearer garbage"},
    "unknown key": {"Authorization": "Bearer pf_0123456789abcdef_" + "x" * 43},
}


async def test_missing_malformed_unknown_and_revoked_keys_get_401(
    admin: Api, audit_head: AuditHead
) -> None:
    d = await build(admin)
    known_id = d.key_ids["admin", False]
    headers = {
        **BAD_HEADERS,
        "known id, wrong secret": {"Authorization": f"Bearer pf_{known_id}_{'y' * 43}"},
        "revoked key": {"Authorization": f"Bearer {d.revoked_key}"},
    }
    head = await audit_head()
    failures: list[str] = []
    for req in MATRIX:
        for name, header in headers.items():
            kwargs: dict[str, Any] = {"headers": header}
            if req.body is not None:
                kwargs["json"] = req.body
            try:
                response = await admin.client.request(req.method, req.url(d), **kwargs)
            except Exception as exc:
                failures.append(f"{name}: {req}: raised {exc!r}")
                continue
            if response.status_code != 401 or problem_code(response) != "UNAUTHORIZED":
                failures.append(
                    f"{name}: {req}: expected 401 UNAUTHORIZED, got "
                    f"{response.status_code} {response.text[:300]}"
                )
            elif not response.headers["content-type"].startswith("application/problem+json"):
                failures.append(f"{name}: {req}: 401 is not problem+json")
    assert not failures, "\n".join(failures)
    assert await audit_head() == head, "an unauthenticated request wrote to the audit log"


async def test_operations_endpoints_need_no_key(admin: Api) -> None:
    anonymous = admin.as_(None)
    for path in ("/healthz", "/readyz", "/metrics"):
        response = await anonymous.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"


# --- keys are shown once, and revocation bites ------------------------------------------------


async def test_a_key_is_shown_only_at_creation_and_a_revoked_key_gets_401(admin: Api) -> None:
    await desk(admin)
    created = await admin.ok(
        "POST", "/v1/api-keys", json={"role": "trader", "accounts": ["acct-1"], "label": "oms"}
    )
    key = created["key"]
    assert key and created["key_id"] in key
    trader = admin.as_(key)
    assert (await trader.get("/v1/subaccounts/sub-cross")).status_code == 200

    listing = await admin.get("/v1/api-keys")
    assert listing.status_code == 200
    assert key not in listing.text
    secret = key.rsplit("_", 1)[1]
    assert secret not in listing.text
    [entry] = [k for k in listing.json()["api_keys"] if k["key_id"] == created["key_id"]]
    assert "key" not in entry
    assert (entry["role"], entry["accounts"], entry["label"], entry["revoked_at"]) == (
        "trader",
        ["acct-1"],
        "oms",
        None,
    )

    # Only an admin revokes.
    assert (await trader.delete(f"/v1/api-keys/{created['key_id']}")).status_code == 403
    revoked = await admin.ok("DELETE", f"/v1/api-keys/{created['key_id']}")
    assert revoked["revoked_at"] is not None
    assert "key" not in revoked
    for method, url in (("GET", "/v1/subaccounts/sub-cross"), ("GET", "/v1/accounts")):
        response = await trader.request(method, url)
        assert response.status_code == 401, f"revoked key: {method} {url}: {response.text}"
        assert response.json()["code"] == "UNAUTHORIZED"
    listing = await admin.ok("GET", "/v1/api-keys")
    [entry] = [k for k in listing["api_keys"] if k["key_id"] == created["key_id"]]
    assert entry["revoked_at"] is not None
    # A second revoke changes nothing; an unknown key id is a 404.
    again = await admin.ok("DELETE", f"/v1/api-keys/{created['key_id']}")
    assert again["revoked_at"] == revoked["revoked_at"]
    missing = await admin.delete("/v1/api-keys/0000000000000000")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")


# --- account scope -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
    """A request about acct-2 / other-sub from a key scoped to acct-1, and the same request
    about a resource that does not exist at all: the two must be indistinguishable."""

    method: str
    path: str
    roles: frozenset[str]
    body: Any = None
    ghost_path: str | None = None
    ghost_body: Any = None
    status: int = 404

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


GHOST_SUB = "ghost-sub"


def _ghost(value: Any) -> Any:
    """The same request naming resources that do not exist."""
    if isinstance(value, str):
        return value.replace("other-sub", GHOST_SUB).replace("acct-2", "ghost-acct")
    if isinstance(value, dict):
        return {k: _ghost(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ghost(v) for v in value]
    return value


OUT_OF_SCOPE: tuple[Out, ...] = (
    Out("GET", "/v1/accounts/acct-2", READERS),
    Out("GET", "/v1/subaccounts/other-sub", READERS),
    Out("GET", "/v1/subaccounts/other-sub/positions", READERS),
    Out("GET", "/v1/subaccounts/other-sub/balances", READERS),
    Out("GET", "/v1/subaccounts/other-sub/margin", READERS),
    Out("GET", "/v1/accounts/acct-2/margin", READERS),
    Out("PUT", "/v1/accounts/acct-2/limits", RISK_WRITERS, {"max_gross_notional": "1"}),
    Out("PUT", "/v1/subaccounts/other-sub/limits", RISK_WRITERS, {"max_leverage": "1"}),
    Out(
        "PUT",
        "/v1/subaccounts/other-sub/leverage",
        LEVERAGE_WRITERS,
        {"instrument": "BTC-PERP", "leverage": "2"},
    ),
    Out("PATCH", "/v1/subaccounts/other-sub", ADMINS, {"strategy": "stolen"}),
    Out(
        "POST",
        "/v1/subaccounts/other-sub/transfers",
        VENUE_WRITERS,
        {"transfer_id": "sc-dep", "asset": "USDC", "amount": "1", "kind": "deposit"},
    ),
    Out(
        "POST",
        "/v1/fills",
        VENUE_WRITERS,
        {"fills": [fill("sc-f1", "buy", "1", "60000", subaccount_id="other-sub")]},
    ),
    # A batch mixing an own subaccount and a foreign one writes neither.
    Out(
        "POST",
        "/v1/fills",
        VENUE_WRITERS,
        {
            "fills": [
                fill("sc-f2", "buy", "1", "60000"),
                fill("sc-f3", "buy", "1", "60000", subaccount_id="other-sub"),
            ]
        },
    ),
    Out(
        "PUT",
        "/v1/subaccounts/other-sub/snapshot",
        VENUE_WRITERS,
        {"balances": {"USDC": "1"}, "positions": []},
    ),
    # Body references to foreign resources answer as unknown ones do (422 naming the field).
    Out(
        "POST",
        "/v1/subaccounts/sub-cross/transfers",
        VENUE_WRITERS,
        {
            "transfer_id": "sc-out",
            "asset": "USDC",
            "amount": "1",
            "kind": "transfer",
            "to_subaccount_id": "other-sub",
        },
        status=422,
    ),
    Out(
        "PUT",
        "/v1/trading-state",
        RISK_WRITERS,
        {"scope": "account", "id": "acct-2", "state": "halted", "reason": "scope"},
        status=422,
    ),
    Out(
        "PUT",
        "/v1/trading-state",
        RISK_WRITERS,
        {"scope": "subaccount", "id": "other-sub", "state": "halted", "reason": "scope"},
        status=422,
    ),
)


async def _foreign_state(admin: Api) -> dict[str, Any]:
    """Everything an out-of-scope request could have touched, read with the admin key."""
    state: dict[str, Any] = {}
    for sub in ("other-sub", "sub-cross"):
        state[f"{sub} positions"] = await admin.ok("GET", f"/v1/subaccounts/{sub}/positions")
        state[f"{sub} balances"] = await admin.ok("GET", f"/v1/subaccounts/{sub}/balances")
        state[sub] = await admin.ok("GET", f"/v1/subaccounts/{sub}")
    state["acct-2"] = await admin.ok("GET", "/v1/accounts/acct-2")
    state["trading states"] = await admin.ok("GET", "/v1/trading-state")
    return state


async def test_outside_its_scope_a_key_sees_404_and_writes_nothing(
    admin: Api, audit_head: AuditHead
) -> None:
    d = await build(admin)
    before = await _foreign_state(admin)
    head = await audit_head()
    failures: list[str] = []
    for case in OUT_OF_SCOPE:
        for role in sorted(case.roles):
            api = admin.as_(d.keys[role, True])
            kwargs = {} if case.body is None else {"json": case.body}
            ghost_kwargs = {} if case.body is None else {"json": _ghost(case.body)}
            try:
                response = await api.request(case.method, case.path, **kwargs)
                ghost = await api.request(case.method, _ghost(case.path), **ghost_kwargs)
            except Exception as exc:
                failures.append(f"{who(role, True)}: {case}: raised {exc!r}")
                continue
            expected_code = "NOT_FOUND" if case.status == 404 else "VALIDATION_ERROR"
            if response.status_code != case.status or problem_code(response) != expected_code:
                failures.append(
                    f"{who(role, True)}: {case}: expected {case.status} {expected_code}, got "
                    f"{response.status_code} {response.text[:300]}"
                )
                continue
            # Not revealed: the answer is the one a resource that never existed gets.
            if (response.status_code, _ghost(response.json())) != (
                ghost.status_code,
                ghost.json(),
            ):
                failures.append(
                    f"{who(role, True)}: {case}: distinguishable from an unknown resource: "
                    f"{response.status_code} {response.text[:200]} vs "
                    f"{ghost.status_code} {ghost.text[:200]}"
                )
    assert not failures, "\n".join(failures)
    assert await _foreign_state(admin) == before
    assert await audit_head() == head, "an out-of-scope request wrote to the audit log"


async def test_a_scoped_key_lists_only_its_own_accounts_and_subaccounts(admin: Api) -> None:
    d = await build(admin)
    for role in sorted(READERS):
        api = admin.as_(d.keys[role, True])
        accounts = await api.ok("GET", "/v1/accounts")
        assert [a["account_id"] for a in accounts["accounts"]] == ["acct-1"], role
        subs = await api.ok("GET", "/v1/subaccounts")
        assert [s["subaccount_id"] for s in subs["subaccounts"]] == ["sub-cross"], role
        filtered = await api.ok("GET", "/v1/subaccounts?account_id=acct-2")
        assert filtered["subaccounts"] == [], role
        # acct-2's reduce-only state is not revealed either.
        states = await api.ok("GET", "/v1/trading-state")
        assert all(s["id"] != "acct-2" for s in states["trading_states"]), role
        unscoped = admin.as_(d.keys[role, False])
        everything = await unscoped.ok("GET", "/v1/accounts")
        assert sorted(a["account_id"] for a in everything["accounts"]) == ["acct-1", "acct-2"]
        states = await unscoped.ok("GET", "/v1/trading-state")
        assert any(s["id"] == "acct-2" for s in states["trading_states"]), role


# --- a scoped admin must stay inside its scope --------------------------------------------------


@pytest.mark.parametrize(
    "accounts",
    [
        pytest.param(
            None,
            id="unscoped",
        ),
        pytest.param(
            ["acct-2"],
            id="other-account",
        ),
    ],
)
async def test_a_scoped_admin_cannot_mint_a_key_beyond_its_scope(
    admin: Api, audit_head: AuditHead, accounts: list[str] | None
) -> None:
    d = await build(admin)
    scoped_admin = admin.as_(d.keys["admin", True])
    keys_before = await admin.ok("GET", "/v1/api-keys")
    head = await audit_head()
    body: dict[str, Any] = {"role": "admin" if accounts is None else "trader"}
    if accounts is not None:
        body["accounts"] = accounts
    response = await scoped_admin.post("/v1/api-keys", json=body)
    assert response.status_code in (403, 404), f"POST /v1/api-keys {body}: {response.text}"
    assert await admin.ok("GET", "/v1/api-keys") == keys_before
    assert await audit_head() == head


async def test_a_scoped_admin_cannot_create_an_account_outside_its_scope(admin: Api) -> None:
    d = await build(admin)
    response = await admin.as_(d.keys["admin", True]).post(
        "/v1/accounts", json={"account_id": "acct-9", "name": "Elsewhere"}
    )
    assert response.status_code == 404, f"POST /v1/accounts acct-9: {response.text}"
    assert (await admin.get("/v1/accounts/acct-9")).status_code == 404
