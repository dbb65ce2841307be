"""Proof 5, PostgreSQL outage (api.md, Operations: "When Postgres is unreachable: 503 problem
with ``Retry-After``, nothing half-written"; ``/readyz`` 503 only when PostgreSQL is
unreachable; ``/healthz`` is liveness).

A PostgreSQL cluster of the test's own (initdb in a temporary directory, another port) serves a
server process. While writes stream in, the cluster is stopped (``fast``: sessions are
terminated; ``immediate``: the server is killed and recovers from its WAL at the next start),
then started again; the app is never restarted. The writes, each with its idempotency id:

- a fill batch of two fills (all or nothing): buy 0.01 BTC-PERP at 60,000, fee 0.3, and buy
  0.1 ETH-PERP at 3,000, fee 0.15 — one batch moves BTC by +0.01, ETH by +0.1 and the USDC
  balance by −0.45 (buys at the entry price realise nothing);
- a deposit of 10 USDC;
- a reserving check: buy 0.001 BTC-PERP, limit 60,000 (IM 6 + fee 0.03 of 1,000,000 USDC:
  always accepted; marks stay fresh for the whole test).

Every answer must be a 2xx, or a 503 problem (``application/problem+json``, code
``UNAVAILABLE``) with ``Retry-After``; none may hang. After recovery, before any retry, the
auditor's view (every write appends its audit entry in its own transaction) and the state must
agree: each acknowledged write present exactly once, each refused one wholly present or wholly
absent — never one fill of a batch without the other — and positions, balance and
reservations equal to what the present writes add up to, by hand:

    BTC = 0.01 · B,  ETH = 0.1 · B,  USDC = 1,000,000 + 10 · T − 0.45 · B,  reservations = C

(B fill batches, T deposits, C checks present). Each refused write retried with the same id
then lands exactly once, and the same sums hold over every write sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.config import Settings
from app.core.db import CHECK_COMMAND_TIMEOUT_S, ORM_COMMAND_TIMEOUT_S
from app.core.migrations import upgrade
from tests.conftest import Api, empty_everything
from tests.factories import BTC_PERP, ETH_PERP, deposit, desk, fill, marks
from tests.proof.conftest import Figures, scale
from tests.servers import ADMIN_KEY, ServerProcess, server_env, serving
from tests.services import PostgresCluster, asyncpg_dsn, create_database

PROOF = "5 PostgreSQL outage"

WORKERS = scale(4, 16)  # concurrent clients streaming writes
PER_PHASE = scale(3, 20)  # acknowledged writes of each kind before and after the outage
REFUSED = scale(30, 300)  # 503s to see while the cluster is down, at least
REQUEST_TIMEOUT_S = 30.0
LATENCY_BOUND_S = 10.0  # the app's own bounds: connect 5 s, pool checkout 5 s
PHASE_DEADLINE_S = 60.0
PAUSE_AFTER_503_S = 0.02  # a client moving on to its next write, not a tight loop
DEPOSIT = Decimal("1000000")
BATCH_FEES = Decimal("0.45")
TRANSFER = Decimal("10")
KINDS = ("fill", "transfer", "check")
HUNG_READY_BOUND_S = 5.0  # READY_TIMEOUT_S (2 s) and a loaded CI machine's slack; a hang is 30 s+


@dataclass
class Write:
    kind: str  # "fill", "transfer" or "check"
    ident: str
    url: str
    body: dict[str, Any]
    sent: float = 0.0
    received: float = 0.0
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    answer: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def fill_ids(self) -> list[str]:
        return [f"{self.ident}-btc", f"{self.ident}-eth"]


def _write(kind: str, ident: str) -> Write:
    if kind == "fill":
        fills = [
            fill(f"{ident}-btc", "buy", "0.01", "60000", fee="0.3"),
            fill(f"{ident}-eth", "buy", "0.1", "3000", instrument="ETH-PERP", fee="0.15"),
        ]
        return Write(kind, ident, "/v1/fills", {"fills": fills})
    if kind == "transfer":
        transfer = {
            "transfer_id": ident,
            "asset": "USDC",
            "amount": str(TRANSFER),
            "kind": "deposit",
        }
        return Write(kind, ident, "/v1/subaccounts/sub-cross/transfers", transfer)
    order = {
        "client_order_id": ident,
        "instrument": "BTC-PERP",
        "side": "buy",
        "size": "0.001",
        "type": "limit",
        "limit_price": "60000",
    }
    body: dict[str, Any] = {
        "subaccount_id": "sub-cross",
        "orders": [order],
        "reserve": True,
        "reservation_ttl_s": 600,
    }
    return Write(kind, ident, "/v1/pretrade/check", body)


async def _send(api: Api, write: Write) -> Write:
    write.sent = time.time()
    try:
        response = await api.post(write.url, json=write.body)
    except httpx.HTTPError as exc:
        write.received, write.error = time.time(), repr(exc)
        return write
    write.received = time.time()
    write.status = response.status_code
    write.headers = dict(response.headers)
    try:
        write.answer = response.json()
    except ValueError:
        write.answer = response.text
    return write


@dataclass
class Run:
    writes: list[Write] = field(default_factory=list)
    down: float = float("inf")
    up: float = float("inf")
    server_log: Callable[[], str] = lambda: ""
    """The server's log tail, shown when an answer is neither a 2xx nor a 503."""

    def count(self, predicate: Callable[[Write], bool]) -> int:
        return sum(1 for w in list(self.writes) if predicate(w))

    def acknowledged_each(self, since: float) -> int:
        """The fewest writes of one kind sent at ``since`` or later and acknowledged."""
        acknowledged = Counter(w.kind for w in list(self.writes) if w.ok and w.sent >= since)
        return min(acknowledged[kind] for kind in KINDS)


async def _stream(api: Api, run: Run, stop: asyncio.Event, worker: int) -> None:
    n = 0
    while not stop.is_set():
        kind = KINDS[(n + worker) % len(KINDS)]
        write = _write(kind, f"{kind}-{worker}-{n}")
        n += 1
        run.writes.append(write)
        await _send(api, write)
        if not write.ok:
            await asyncio.sleep(PAUSE_AFTER_503_S)


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await request
    return answer, time.monotonic() - started


async def _until(what: str, condition: Callable[[], bool], run: Run) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while not condition():
        bad = [w for w in run.writes if w.received and not (w.ok or w.status == 503)]
        assert not bad, ([(w.ident, w.status, w.error, w.answer) for w in bad[:3]],
                         run.server_log())  # fmt: skip
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {PHASE_DEADLINE_S} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[Api]:
    limits = httpx.Limits(max_connections=WORKERS + 8, max_keepalive_connections=WORKERS + 8)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as c:
        yield Api(c, ADMIN_KEY)


async def _reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
    await connection.close()
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    own = PostgresCluster()
    try:
        yield own
    finally:
        own.destroy()


@pytest.fixture(scope="module")
def database(cluster: PostgresCluster) -> str:
    """A migrated database on the cluster. The cluster runs with ``synchronous_commit=off`` for
    speed, which may lose the last acknowledged commits when the server is killed (immediate
    stop); this database turns it back on, as production runs, so a lost acknowledged write
    would be the app's fault and is what this proof looks for."""
    url = create_database(cluster.url, "preflight_outage")

    async def durable() -> None:
        connection = await asyncpg.connect(asyncpg_dsn(cluster.url))
        try:
            await connection.execute("ALTER DATABASE preflight_outage SET synchronous_commit = on")
        finally:
            await connection.close()

    asyncio.run(durable())
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def running(database: str, redis_url: str) -> Iterator[ServerProcess]:
    with serving(server_env(database, redis_url)) as process:
        yield process


@pytest.fixture
async def server(
    cluster: PostgresCluster, database: str, redis_url: str, running: ServerProcess
) -> ServerProcess:
    """The server on an emptied database (the cluster started again if a failed test left it
    down) and an emptied Redis database."""
    if not await _reachable(database):
        await asyncio.to_thread(cluster.start)
    await empty_everything(Settings(database_url=database, redis_url=redis_url))
    return running


async def _seed(api: Api) -> None:
    await desk(api)
    for symbol, spec in (("BTC-PERP", BTC_PERP), ("ETH-PERP", ETH_PERP)):
        await api.ok("PUT", f"/v1/instruments/{symbol}", json={**spec, "stale_after_s": "3600"})
    await deposit(api, "sub-cross", str(DEPOSIT))
    await marks(api, {"BTC-PERP": "60000", "ETH-PERP": "3000"})


async def _audit(api: Api, kind: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"kind": kind, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = await api.ok("GET", "/v1/audit", params=params)
        entries.extend(page["entries"])
        cursor = page["next_cursor"]
        if not cursor:
            return entries


@dataclass(frozen=True)
class Stored:
    """What the auditor sees: how many times each id was recorded, and each check's id."""

    fills: Counter[str]
    transfers: Counter[str]
    checks: Counter[str]
    check_ids: dict[str, str]

    def present(self, write: Write) -> list[int]:
        if write.kind == "fill":
            return [self.fills[i] for i in write.fill_ids]
        if write.kind == "transfer":
            return [self.transfers[write.ident]]
        return [self.checks[write.ident]]


async def _stored(api: Api) -> Stored:
    fills = Counter(e["payload"]["fill_id"] for e in await _audit(api, "fill"))
    transfers = Counter(e["payload"]["transfer_id"] for e in await _audit(api, "transfer"))
    checks: Counter[str] = Counter()
    check_ids = {}
    for entry in await _audit(api, "check"):
        for order in entry["payload"]["request"]["orders"]:
            if order.get("client_order_id"):
                checks[order["client_order_id"]] += 1
                check_ids[order["client_order_id"]] = entry["payload"]["check_id"]
    return Stored(fills, transfers, checks, check_ids)


async def _assert_state(api: Api, batches: int, transfers: int, checks: set[str]) -> None:
    """Positions, balance and reservations equal the sums of the module docstring."""
    positions = await api.ok("GET", "/v1/subaccounts/sub-cross/positions")
    held = {p["instrument"]: p for p in positions["positions"]}
    expected = {"BTC-PERP": (Decimal("0.01"), "60000"), "ETH-PERP": (Decimal("0.1"), "3000")}
    for instrument, (size, entry) in expected.items():
        if batches == 0:
            assert instrument not in held or Decimal(held[instrument]["size"]) == 0, held
            continue
        assert Decimal(held[instrument]["size"]) == size * batches, (batches, held)
        assert Decimal(held[instrument]["entry_price"]) == Decimal(entry), held
    balances = (await api.ok("GET", "/v1/subaccounts/sub-cross/balances"))["balances"]
    usdc = DEPOSIT + TRANSFER * transfers - BATCH_FEES * batches
    assert Decimal(balances["USDC"]) == usdc, (balances, batches, transfers)
    listed = (await api.ok("GET", "/v1/subaccounts/sub-cross/reservations"))["reservations"]
    assert all(r["status"] == "active" for r in listed), listed
    held_ids = Counter(leg["client_order_id"] for r in listed for leg in r["legs"])
    assert held_ids == Counter(checks), (held_ids, checks)


def _assert_refusal(write: Write) -> None:
    """A 503 is a problem document with ``Retry-After``, nothing else."""
    assert write.headers.get("content-type") == "application/problem+json", write.headers
    assert isinstance(write.answer, dict), write.answer
    assert write.answer["status"] == 503 and write.answer["code"] == "UNAVAILABLE", write.answer
    assert int(write.headers["retry-after"]) >= 1, write.headers


async def _wait_ready(api: Api, status: int) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while (await api.get("/readyz")).status_code != status:
        assert time.monotonic() < deadline, f"/readyz never answered {status}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgresql_outage_answers_503_and_writes_nothing_by_halves(
    server: ServerProcess, cluster: PostgresCluster, figures: Figures, mode: str
) -> None:
    """The cluster stopped under a stream of writes and started again: the module docstring's
    promises, for a stop that terminates sessions (fast) and one that kills the server."""
    run = Run(server_log=server.output)
    stop = asyncio.Event()
    async with _client(server.url) as api:
        await _seed(api)
        workers = [asyncio.create_task(_stream(api, run, stop, w)) for w in range(WORKERS)]
        try:
            await _until(
                "writes acknowledged before the outage",
                lambda: run.acknowledged_each(since=0.0) >= PER_PHASE,
                run,
            )
            run.down = time.time()
            await asyncio.to_thread(cluster.stop, mode)
            stopped = time.time()
            await _until(
                "503s while the cluster is down",
                lambda: run.count(lambda w: w.sent >= stopped and w.status == 503) >= REFUSED,
                run,
            )
            readyz = await api.get("/readyz")
            assert readyz.status_code == 503, readyz.text
            assert readyz.json() == {
                "status": "unavailable",
                "database": "unavailable",
                "cache": "ok",
            }
            healthz = await api.get("/healthz")
            assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})

            await asyncio.to_thread(cluster.start)
            started = time.time()
            await _wait_ready(api, 200)
            recovered_s = time.time() - started
            await _until(
                "writes acknowledged after the outage",
                lambda: run.acknowledged_each(since=started) >= PER_PHASE,
                run,
            )
            run.up = time.time()
        finally:
            stop.set()
            await asyncio.gather(*workers)

        # Every answer: a 2xx or a 503 problem with Retry-After; nothing hung.
        statuses = Counter(w.status for w in run.writes)
        assert set(statuses) <= {200, 201, 503}, statuses
        assert not [w for w in run.writes if w.error], [w.error for w in run.writes if w.error]
        refused = [w for w in run.writes if w.status == 503]
        for write in refused:
            _assert_refusal(write)
        slowest = max(w.received - w.sent for w in run.writes)
        assert slowest < LATENCY_BOUND_S, slowest
        checks = [w for w in run.writes if w.kind == "check" and w.ok]
        assert all(w.answer["decision"] == "accept" for w in checks)

        # Before any retry: acknowledged once, refused all or nothing, state = the sums.
        stored = await _stored(api)
        half_written = []
        landed = set()  # refused, yet stored: the commit got through, the answer did not
        for write in run.writes:
            counts = stored.present(write)
            if write.ok:
                assert counts == [1] * len(counts), (write.ident, counts)
            elif counts not in ([0] * len(counts), [1] * len(counts)):
                half_written.append((write.ident, counts))
            elif counts[0] == 1:
                landed.add(write.ident)
        assert half_written == []
        present = [w for w in run.writes if stored.present(w)[0] == 1]
        await _assert_state(
            api,
            batches=sum(1 for w in present if w.kind == "fill"),
            transfers=sum(1 for w in present if w.kind == "transfer"),
            checks={w.ident for w in present if w.kind == "check"},
        )

        # Each refused write, sent again with the same id, lands exactly once.
        for write in refused:
            was_present = write.ident in landed
            retry = await _send(api, _write(write.kind, write.ident))
            assert retry.ok, (retry.status, retry.answer)
            if write.kind == "transfer":
                assert retry.status == (200 if was_present else 201), retry.status
            if write.kind == "check" and was_present:
                assert retry.answer["check_id"] == stored.check_ids[write.ident]
            if write.kind == "check":
                assert retry.answer["decision"] == "accept", retry.answer
        final = await _stored(api)
        for write in run.writes:
            assert final.present(write) == [1] * len(final.present(write)), write.ident
        await _assert_state(
            api,
            batches=sum(1 for w in run.writes if w.kind == "fill"),
            transfers=sum(1 for w in run.writes if w.kind == "transfer"),
            checks={w.ident for w in run.writes if w.kind == "check"},
        )
        verified = await api.ok("GET", "/v1/audit/verify")
        assert verified["ok"], verified

    in_flight = [w for w in run.writes if w.sent < run.down < w.received]
    other_5xx = sum(
        n for status, n in statuses.items() if status and status >= 500 and status != 503
    )
    with_retry_after = sum(1 for w in refused if "retry-after" in w.headers)
    figures.record(f"[{mode}] writes sent / answered 503", f"{len(run.writes)} / {len(refused)}")
    figures.record(f"[{mode}] 5xx other than 503", other_5xx, 0)
    figures.record(f"[{mode}] 503s with Retry-After", f"{with_retry_after}/{len(refused)}")
    figures.record(
        f"[{mode}] in flight at the stop: 2xx / 503 absent / 503 present",
        f"{sum(w.ok for w in in_flight)} / "
        f"{sum(w.status == 503 and w.ident not in landed for w in in_flight)} / "
        f"{sum(w.status == 503 and w.ident in landed for w in in_flight)}",
    )
    figures.record(f"[{mode}] half-written records", len(half_written), 0)
    figures.record(f"[{mode}] slowest answer (s)", f"{slowest:.3f}", f"< {LATENCY_BOUND_S}")
    figures.record(f"[{mode}] readyz 200 after the cluster started (s)", f"{recovered_s:.3f}")


def _processes(root: int) -> list[int]:
    """The postmaster and its children (every backend and auxiliary process)."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                    pids.append(int(entry.name))
    return pids


async def test_a_hung_postgresql_leaves_readiness_prompt_and_liveness_up(
    server: ServerProcess, database: str, figures: Figures
) -> None:
    """A PostgreSQL that keeps its connections open but never answers (every process stopped:
    a hung host, a partition). An orchestrator must still get its answers promptly: ``/readyz``
    503 within its own bound (``READY_TIMEOUT_S`` = 2 s, not the driver's 30-s statement
    timeout), ``/healthz`` 200 so the process is not killed for it; once PostgreSQL answers
    again, so does the app, unrestarted."""
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        data = Path(await connection.fetchval("SHOW data_directory"))
    finally:
        await connection.close()
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    async with _client(server.url) as api:
        await _seed(api)
        pids = _processes(postmaster)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            readyz = await api.get("/readyz")
            readyz_s = time.monotonic() - started
            started = time.monotonic()
            healthz = await api.get("/healthz")
            healthz_s = time.monotonic() - started
            # A check and a write, at once: each refused within its own deadline.
            started = time.monotonic()
            check, write = await asyncio.gather(
                _timed(api.post("/v1/pretrade/check", json=_write("check", "hung-check").body)),
                _timed(api.post("/v1/fills", json=_write("fill", "hung-fill").body)),
            )
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        await _wait_ready(api, 200)
        await deposit(api, "sub-cross", "10")
    figures.record(
        "[hung] /readyz 503 answered in (s)", f"{readyz_s:.3f}", f"< {HUNG_READY_BOUND_S}"
    )
    assert readyz.status_code == 503, readyz.text
    assert readyz.json()["database"] == "unavailable"
    assert readyz_s < HUNG_READY_BOUND_S
    assert healthz.status_code == 200 and healthz_s < 1.0, healthz_s
    # The check: its 5-s deadline (and a loaded machine's slack). The fill: the ORM's 10-s
    # statement deadline, then the driver's cancel of the hung statement and the rollback,
    # each bounded by the 5-s connect timeout — seconds, not the driver's default 30.
    for (answer, seconds), bound, what in (
        (check, CHECK_COMMAND_TIMEOUT_S + 2.0, "check"),
        (write, ORM_COMMAND_TIMEOUT_S + 5.0, "fill"),
    ):
        figures.record(f"[hung] a {what} answered 503 in (s)", f"{seconds:.3f}", f"< {bound:g}")
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "UNAVAILABLE"
        assert seconds < bound, seconds
