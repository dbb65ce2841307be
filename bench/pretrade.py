"""Pre-trade check load benchmark: `.venv/bin/python bench/pretrade.py [--duration 10] [--connections 4]`.

What it does, end to end, and prints as it goes:

1. Finds PostgreSQL and Redis the way the tests do (``tests/services.py``), creates a fresh
   database, migrates it, claims a Redis database no test run holds, and starts ONE server
   worker (``python -m app.cli serve``, i.e. ``preflight serve``) on them.
2. Seeds through the API: 20 perpetuals (3 margin tiers), 100 accounts × 10 cross subaccounts
   = 1,000 subaccounts, each loaded by ``PUT …/snapshot`` with 20 positions (one per
   instrument) and USDC; 50-level books per instrument. A feeder thread (feeder key) posts
   fresh marks from two sources every ``--feed-interval`` s and the books every 2 s for the
   whole run (marks go stale after 5 s), starting once the desk is loaded. Every mark post adds
   a tick per source that the TWAP keeps for 600 s, and each check reads them all, so the
   number of ticks per instrument is printed for every row; ``--history-s 600`` backfills the
   history a 1 Hz feed leaves at steady state (2 × the 300 s TWAP window) before the run.
3. Measures, from a separate load-generator process (``wrk -t1`` with a Lua script, else an
   asyncio httpx driver in a child process), for the same server in the same run:
   ``GET /healthz``; non-reserving ``POST /v1/pretrade/check`` (random subaccount, one market
   leg of ~200 USDC on a random instrument, which passes); reserving checks (``reserve: true``,
   a unique ``client_order_id`` each, TTL 5 s). Each: req/s, p50, p99, the ratio to /healthz
   req/s, and the server's CPU per request (from /proc). Targets: non-reserving ≥ 50 % of
   /healthz req/s, reserving ≥ 20 %, p99 ≤ 5 ms at 4 connections.
4. Anatomy of one check (in-process app on the same database, sequential requests): SQL
   statements, transactions and Redis round trips per check, and time spent waiting on them.
5. Profiles the server under the non-reserving load with py-spy (``.venv/bin/pip install
   py-spy``) and summarises where its CPU goes: leaf functions, packages, and inclusive
   shares of the check's stages. Folded stacks and a flame graph are left in /tmp.
6. Stops everything it started, drops the database and flushes its Redis database.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.services import (  # noqa: E402
    create_database,
    drop_database,
    postgres_server_url,
    redis_server_url,
)

HOST = "127.0.0.1"
N_INSTRUMENTS = 20
N_ACCOUNTS = 100
SUBS_PER_ACCOUNT = 10
ORDER_NOTIONAL = Decimal(200)
BOOK_LEVELS = 50
SOURCES = ("venue", "oracle")
TICK = Decimal("0.01")
LOT = Decimal("0.001")
STALE_AFTER_S: int | None = None  # the instruments' mark/book staleness; None = default 5 s


def log(message: str) -> None:
    print(message, flush=True)


# --- the universe ----------------------------------------------------------------------------


def symbol(i: int) -> str:
    return f"P{i:02d}-PERP"


def sub_id(i: int) -> str:
    return f"sub-{i:04d}"


def acct_id(i: int) -> str:
    return f"acct-{i:03d}"


PRICES = [(Decimal(20) * Decimal("1.35") ** i).quantize(TICK) for i in range(N_INSTRUMENTS)]


def order_size(i: int) -> Decimal:
    return max(LOT, (ORDER_NOTIONAL / PRICES[i]).quantize(LOT, rounding=ROUND_DOWN))


def instrument_body(i: int) -> dict[str, Any]:
    return {
        "kind": "perpetual",
        "underlying": f"U{i:02d}",
        "contract_size": "1",
        "tick_size": str(TICK),
        "lot_size": str(LOT),
        "margin_tiers": [
            {"notional_floor": "0", "initial_margin_fraction": "0.02"},
            {"notional_floor": "1000000", "initial_margin_fraction": "0.05"},
            {"notional_floor": "5000000", "initial_margin_fraction": "0.1"},
        ],
        "taker_fee_rate": "0.0005",
        "maker_fee_rate": "0.0002",
        "price_band": "0.05",
        "funding_interval_s": 3600,
        **({"stale_after_s": str(STALE_AFTER_S)} if STALE_AFTER_S else {}),
    }


def book_body(i: int, ts: datetime) -> dict[str, Any]:
    """50 levels a side around the mark, each deep enough for 25 test orders."""
    cents = int(PRICES[i] / TICK)
    step = max(1, round(cents * 0.0002))
    size = str((ORDER_NOTIONAL * 25 / PRICES[i]).quantize(LOT))
    bids = [[str((cents - step * (k + 1)) * TICK), size] for k in range(BOOK_LEVELS)]
    asks = [[str((cents + step * (k + 1)) * TICK), size] for k in range(BOOK_LEVELS)]
    return {"bids": bids, "asks": asks, "ts": ts.isoformat()}


def marks_body(ts: datetime) -> dict[str, Any]:
    return {
        "marks": [
            {"symbol": symbol(i), "price": str(PRICES[i]), "source": source, "ts": ts.isoformat()}
            for i in range(N_INSTRUMENTS)
            for source in SOURCES
        ]
    }


def snapshot_body(rng: random.Random) -> dict[str, Any]:
    positions, gross = [], Decimal(0)
    for i in range(N_INSTRUMENTS):
        notional = Decimal(rng.randint(2_000, 50_000))
        size = max(LOT, (notional / PRICES[i]).quantize(LOT))
        if rng.random() < 0.5:
            size = -size
        entry = (PRICES[i] * Decimal(1 + rng.uniform(-0.02, 0.02))).quantize(TICK)
        positions.append({"instrument": symbol(i), "size": str(size), "entry_price": str(entry)})
        gross += abs(size) * PRICES[i]
    usdc = (gross * Decimal("0.25") + 20_000).quantize(TICK)
    return {"balances": {"USDC": str(usdc)}, "positions": positions}


# --- services --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def claim_redis_database(held: list[IO[str]]) -> int:
    """A Redis database no test process holds: the tests' file-lock convention (conftest.py),
    taken from 15 down so a concurrent test run (which takes from 1 up) rarely waits."""
    for number in range(15, 0, -1):
        handle = open(Path(tempfile.gettempdir()) / f"preflight-test-redis-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        held.append(handle)
        return number
    raise RuntimeError("every Redis database 1–15 is held by a test run")


# Runs the server with PR_SET_PDEATHSIG = SIGTERM (kept across execv): if this script dies
# without its cleanup, the server goes with it.
_LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent already gone")
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class Server:
    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="preflight-bench-server-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                "-m",
                "app.cli",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.output()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the server process and its worker processes (when --workers > 1)."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def total_cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# --- seeding ---------------------------------------------------------------------------------


async def _ok(client: httpx.AsyncClient, method: str, url: str, key: str, **kw: Any) -> Any:
    response = await client.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kw)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:500]}")
    return response.json()


async def seed_reference(
    base: str, admin_key: str, history_s: int, feed_interval: float
) -> dict[str, str]:
    """Assets, instruments, accounts, keys, and the mark history (before anyone holds a
    position, so the backfill's margin-call sweeps are empty)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        gate = asyncio.Semaphore(8)

        async def call(method: str, url: str, key: str = admin_key, **kw: Any) -> Any:
            async with gate:
                return await _ok(client, method, url, key, **kw)

        t0 = time.perf_counter()
        await call("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
        await asyncio.gather(
            *(
                call("PUT", f"/v1/instruments/{symbol(i)}", json=instrument_body(i))
                for i in range(N_INSTRUMENTS)
            )
        )
        await asyncio.gather(
            *(
                call("POST", "/v1/accounts", json={"account_id": acct_id(a), "name": f"Fund {a}"})
                for a in range(N_ACCOUNTS)
            )
        )
        trader = await call(
            "POST",
            "/v1/api-keys",
            json={
                "role": "trader",
                "accounts": [acct_id(a) for a in range(N_ACCOUNTS)],
                "label": "bench OMS",
            },
        )
        feeder = await call("POST", "/v1/api-keys", json={"role": "feeder", "label": "bench"})
        log(f"reference data and keys in {time.perf_counter() - t0:.1f} s")
        if history_s > 0:
            # What a feed every `feed_interval` s leaves behind: one tick per source per post.
            t0 = time.perf_counter()
            now = datetime.now(UTC)
            steps = int(history_s / feed_interval)
            for k in range(steps, 0, -1):
                ts = now - timedelta(seconds=k * feed_interval)
                await call("POST", "/v1/marks", key=feeder["key"], json=marks_body(ts))
            log(
                f"backfilled {history_s} s of mark history ({steps} posts, "
                f"{steps * len(SOURCES)} ticks per instrument) in {time.perf_counter() - t0:.1f} s"
            )
        return {"trader": trader["key"], "feeder": feeder["key"]}


async def seed_subaccounts(base: str, admin_key: str) -> None:
    rng = random.Random(20261125)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        gate = asyncio.Semaphore(8)

        async def call(method: str, url: str, **kw: Any) -> Any:
            async with gate:
                return await _ok(client, method, url, admin_key, **kw)

        t0 = time.perf_counter()
        n_subs = N_ACCOUNTS * SUBS_PER_ACCOUNT
        await asyncio.gather(
            *(
                call(
                    "POST",
                    "/v1/subaccounts",
                    json={
                        "subaccount_id": sub_id(s),
                        "account_id": acct_id(s // SUBS_PER_ACCOUNT),
                        "margin_mode": "cross",
                    },
                )
                for s in range(n_subs)
            )
        )
        bodies = [snapshot_body(rng) for _ in range(n_subs)]
        await asyncio.gather(
            *(
                call("PUT", f"/v1/subaccounts/{sub_id(s)}/snapshot", json=bodies[s])
                for s in range(n_subs)
            )
        )
        log(
            f"seeded {n_subs} subaccounts ({N_ACCOUNTS} accounts) × {N_INSTRUMENTS} positions by "
            f"PUT …/snapshot in {time.perf_counter() - t0:.1f} s"
        )


class Feeder(threading.Thread):
    """Marks from two sources every `interval` s, the 20 books every max(interval, 2 s)."""

    def __init__(self, base: str, key: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.base, self.key, self.interval = base, key, interval
        self.halt = threading.Event()
        self.posts = 0
        self.errors: list[str] = []
        self.latency: dict[str, list[float]] = {"marks": [], "book": []}
        self.book_every = max(1, round(2.0 / interval))
        self._count = threading.Lock()

    def feed_once(self, client: httpx.Client, *, marks: bool, books: bool) -> None:
        now = datetime.now(UTC)
        requests = [("POST", "/v1/marks", marks_body(now))] if marks else []
        if books:
            requests += [
                ("PUT", f"/v1/books/{symbol(i)}", book_body(i, now)) for i in range(N_INSTRUMENTS)
            ]
        for method, url, body in requests:
            t0 = time.perf_counter()
            response = client.request(method, url, json=body)
            self.latency["marks" if url == "/v1/marks" else "book"].append(time.perf_counter() - t0)
            with self._count:
                self.posts += 1
            if response.status_code >= 300:
                self.errors.append(f"{method} {url}: {response.status_code} {response.text[:200]}")

    def feed_now(self) -> None:
        """Marks and books, now, from the calling thread."""
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=60) as client:
            self.feed_once(client, marks=True, books=True)
        if self.errors:
            raise RuntimeError(f"feeding failed: {self.errors[-1]}")

    def _loop(self, books: bool) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        period = self.interval * (self.book_every if books else 1)
        with httpx.Client(base_url=self.base, headers=headers, timeout=10) as client:
            next_at = time.monotonic()
            while not self.halt.is_set():
                try:
                    self.feed_once(client, marks=not books, books=books)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                next_at += period
                self.halt.wait(max(0.0, next_at - time.monotonic()))

    def run(self) -> None:
        # Marks and books on their own connections, as a venue's feed handler sends them: 20
        # book updates answered slowly under load never hold back the next marks.
        books = threading.Thread(target=self._loop, args=(True,), daemon=True)
        books.start()
        self._loop(False)
        books.join(10)


# --- load generation -------------------------------------------------------------------------

LUA = r"""
local kind = "%(kind)s"
local auth = "Bearer %(key)s"
local nonce = "%(nonce)s"
local n_subs = %(n_subs)d
local sizes = {%(sizes)s}
local counter = 0
local threads = {}
accepted, rejected, non200 = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  if kind ~= "healthz" then
    wrk.method = "POST"
    wrk.path = "/v1/pretrade/check"
    wrk.headers["Authorization"] = auth
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  if kind == "healthz" then
    return wrk.format("GET", "/healthz")
  end
  counter = counter + 1
  local sub = string.format("sub-%%04d", math.random(0, n_subs - 1))
  local i = math.random(1, #sizes)
  local side = (math.random(2) == 1) and "buy" or "sell"
  local coid = ""
  local tail = ""
  if kind == "reserve" then
    coid = string.format('"client_order_id":"%%s-%%d-%%d",', nonce, tid, counter)
    tail = ',"reserve":true,"reservation_ttl_s":5'
  end
  local body = string.format(
    '{"subaccount_id":"%%s","orders":[{%%s"instrument":"P%%02d-PERP","side":"%%s","size":"%%s","type":"market"}]%%s}',
    sub, coid, i - 1, side, sizes[i], tail)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif kind == "healthz" or string.find(body, '"decision":"accept"', 1, true) then
    accepted = accepted + 1
  else
    rejected = rejected + 1
  end
end

function done(summary, latency, requests)
  local a, r, n = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    r = r + t:get("rejected")
    n = n + t:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"mean_us":%%.1f,"socket_errors":%%d,"accepted":%%d,"rejected":%%d,"non200":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean,
    e.connect + e.read + e.write + e.timeout, a, r, n))
end
"""


@dataclass
class Result:
    label: str
    connections: int
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    accepted: int
    rejected: int
    non200: int
    socket_errors: int
    server_cpu_us: float = math.nan  # server CPU per request
    server_cpu_util: float = math.nan  # of one core
    machine_busy: float = math.nan  # fraction of all cores
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def lua_script(kind: str, key: str, workdir: Path) -> Path:
    sizes = ", ".join(f'"{order_size(i)}"' for i in range(N_INSTRUMENTS))
    path = workdir / f"{kind}.lua"
    path.write_text(
        LUA
        % {
            "kind": kind,
            "key": key,
            "nonce": "b" + secrets.token_hex(4),
            "n_subs": N_ACCOUNTS * SUBS_PER_ACCOUNT,
            "sizes": sizes,
        }
    )
    return path


def run_wrk(url: str, script: Path, connections: int, duration: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, math.ceil(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(line[6:]))


# The fallback load generator: `python bench/pretrade.py --drive KIND URL KEY CONNS SECONDS`,
# closed-loop like wrk, printing the same BENCH line.


def drive(kind: str, url: str, key: str, connections: int, seconds: float) -> None:
    sizes = [str(order_size(i)) for i in range(N_INSTRUMENTS)]
    nonce = "d" + secrets.token_hex(4)
    latencies: list[float] = []
    counts = collections.Counter[str]()

    async def worker(wid: int, client: httpx.AsyncClient, stop_at: float) -> None:
        rng = random.Random(wid)
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            t0 = time.perf_counter()
            try:
                if kind == "healthz":
                    response = await client.get("/healthz")
                else:
                    i = rng.randrange(N_INSTRUMENTS)
                    order = {
                        "instrument": symbol(i),
                        "side": rng.choice(["buy", "sell"]),
                        "size": sizes[i],
                        "type": "market",
                    }
                    body: dict[str, Any] = {
                        "subaccount_id": sub_id(rng.randrange(N_ACCOUNTS * SUBS_PER_ACCOUNT)),
                        "orders": [order],
                    }
                    if kind == "reserve":
                        order["client_order_id"] = f"{nonce}-{wid}-{n}"
                        body.update(reserve=True, reservation_ttl_s=5)
                    response = await client.post("/v1/pretrade/check", json=body)
            except httpx.HTTPError:
                counts["socket_errors"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                counts["non200"] += 1
            elif kind == "healthz" or response.json()["decision"] == "accept":
                counts["accepted"] += 1
            else:
                counts["rejected"] += 1

    async def main() -> float:
        headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as c:
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w, c, t0 + seconds) for w in range(connections)))
            return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(q: float) -> int:
        return (
            int(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)
            if latencies
            else 0
        )

    line = {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": pct(1.0),
        "mean_us": statistics.fmean(latencies) * 1e6 if latencies else 0.0,
        "socket_errors": counts["socket_errors"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "non200": counts["non200"],
    }
    print("BENCH " + json.dumps(line), flush=True)


def run_driver(kind: str, url: str, key: str, connections: int, duration: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--drive", kind, url, key, str(connections), str(duration)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"driver failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(line[6:]))


class Load:
    def __init__(self, server: Server, keys: dict[str, str], workdir: Path, use_wrk: bool) -> None:
        self.server, self.keys, self.use_wrk = server, keys, use_wrk
        self.scripts = {
            kind: lua_script(kind, keys["trader"], workdir)
            for kind in ("healthz", "check", "reserve")
        }

    def raw(self, kind: str, connections: int, duration: float) -> dict[str, Any]:
        if self.use_wrk:
            return run_wrk(self.server.url, self.scripts[kind], connections, duration)
        return run_driver(kind, self.server.url, self.keys["trader"], connections, duration)

    def measure(
        self, kind: str, label: str, connections: int, duration: float, warmup: float
    ) -> Result:
        if warmup > 0:
            self.raw(kind, connections, warmup)
        cpu0, (busy0, total0) = self.server.cpu_seconds(), total_cpu_busy()
        raw = self.raw(kind, connections, duration)
        cpu1, (busy1, total1) = self.server.cpu_seconds(), total_cpu_busy()
        seconds = raw["duration_us"] / 1e6
        result = Result(
            label=label,
            connections=connections,
            requests=raw["requests"],
            duration_s=seconds,
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            accepted=raw["accepted"],
            rejected=raw["rejected"],
            non200=raw["non200"],
            socket_errors=raw["socket_errors"],
        )
        if result.requests:
            result.server_cpu_us = (cpu1 - cpu0) / result.requests * 1e6
        result.server_cpu_util = (cpu1 - cpu0) / seconds
        result.machine_busy = (busy1 - busy0) / max(1.0, total1 - total0)
        return result


# --- anatomy: what one check does, counted in-process ----------------------------------------


async def anatomy(
    db_url: str, redis_url: str, admin_key: str, trader_key: str, n: int, refresh: Any
) -> dict[str, Any]:
    """Sequential checks through an in-process app on the same database and Redis, with the
    engine's and the cache's calls counted (instrumentation only; the app is unchanged)."""
    from sqlalchemy import event

    from app.core.config import Settings
    from app.main import create_app

    settings = Settings(
        database_url=db_url, redis_url=redis_url, admin_key=admin_key, log_level="WARNING"
    )
    app = create_app(settings)
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        sync_engine = runtime.engine.sync_engine
        events: list[tuple[str, float]] = []
        started: dict[int, float] = {}

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            started[id(cursor)] = time.perf_counter()

        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            t0 = started.pop(id(cursor), time.perf_counter())
            events.append((" ".join(statement.split())[:90], time.perf_counter() - t0))

        event.listen(sync_engine, "before_cursor_execute", before)
        event.listen(sync_engine, "after_cursor_execute", after)
        for name in ("begin", "commit", "rollback"):
            event.listen(sync_engine, name, lambda *a, _n=name: events.append((f"<{_n}>", 0.0)))
        event.listen(
            sync_engine.pool,
            "checkout",
            lambda *a: events.append(("<pool checkout + pre-ping>", 0.0)),
        )

        cache = runtime.cache
        redis_calls: list[tuple[str, float]] = []
        for name in (
            "hgetall_many",
            "zrange_many",
            "get_many",
            "zadd_many",
            "set_many",
            "hset_many",
        ):
            original = getattr(cache, name)

            async def counted(*args: Any, _o: Any = original, _n: str = name, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await _o(*args, **kw)
                finally:
                    redis_calls.append((_n, time.perf_counter() - t0))

            setattr(cache, name, counted)

        stage_time: dict[str, float] = collections.defaultdict(float)
        restore = _time_stages(stage_time)

        rng = random.Random(7)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {trader_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            for kind in ("check", "reserve"):
                await asyncio.to_thread(refresh)
                per_request = []
                for k in range(n + 10):
                    i = rng.randrange(N_INSTRUMENTS)
                    order: dict[str, Any] = {
                        "instrument": symbol(i),
                        "side": rng.choice(["buy", "sell"]),
                        "size": str(order_size(i)),
                        "type": "market",
                    }
                    body: dict[str, Any] = {
                        "subaccount_id": sub_id(rng.randrange(1000)),
                        "orders": [order],
                    }
                    if kind == "reserve":
                        order["client_order_id"] = f"anatomy-{secrets.token_hex(4)}-{k}"
                        body.update(reserve=True, reservation_ttl_s=5)
                    events.clear()
                    redis_calls.clear()
                    if k == 10:
                        stage_time.clear()
                    t0 = time.perf_counter()
                    response = await client.post("/v1/pretrade/check", json=body)
                    wall = time.perf_counter() - t0
                    assert response.status_code == 200, response.text
                    if k >= 10:  # warm-up first
                        per_request.append((wall, list(events), list(redis_calls)))
                statements = collections.Counter[str]()
                sql_times: dict[str, list[float]] = collections.defaultdict(list)
                for _, evs, _ in per_request:
                    for text, dt in evs:
                        statements[text] += 1
                        sql_times[text].append(dt)
                walls = sorted(w for w, _, _ in per_request)
                out[kind] = {
                    "wall_ms_p50": walls[len(walls) // 2] * 1000,
                    "sql_per_check": sum(
                        1 for _, evs, _ in per_request for t, _ in evs if not t.startswith("<")
                    )
                    / n,
                    "sql_ms_per_check": sum(dt for _, evs, _ in per_request for _, dt in evs)
                    / n
                    * 1000,
                    "tx_events_per_check": sum(
                        1 for _, evs, _ in per_request for t, _ in evs if t.startswith("<")
                    )
                    / n,
                    "redis_per_check": sum(len(r) for _, _, r in per_request) / n,
                    "redis_ms_per_check": sum(dt for _, _, r in per_request for _, dt in r)
                    / n
                    * 1000,
                    # Statements in fewer than half the checks are other work (background tasks).
                    "statements": [
                        (
                            text,
                            count / n,
                            statistics.fmean(sql_times[text]) * 1e6,
                            statistics.median(sql_times[text]) * 1e6,
                        )
                        for text, count in statements.most_common()
                        if count >= n / 2
                    ],
                    "redis": collections.Counter(name for _, _, r in per_request for name, _ in r),
                    "stages": {name: total / n * 1000 for name, total in stage_time.items()},
                }
        restore()
    return out


# Stages of a check, timed in the in-process app by wrapping module attributes (wall time,
# awaits included; nested stages are included in their parents).
STAGE_FUNCTIONS = [
    ("auth: authenticate (key lookup)", "app.auth.service", "authenticate"),
    ("check: _subaccount", "app.pretrade.service", "_subaccount"),
    ("check: _known_instruments", "app.pretrade.service", "_known_instruments"),
    ("check: load_context", "app.pretrade.service", "load_context"),
    ("  load_book", "app.pretrade.service", "load_book"),
    ("    current_marks (marks + TWAP)", "app.marketdata.service", "current_marks"),
    ("    judge (one symbol's mark + TWAP)", "app.marketdata.service", "judge"),
    ("  risk.parameters", "app.risk.service", "parameters"),
    ("  get_book (visible book)", "app.marketdata.service", "get_book"),
    ("check: evaluate_basket", "app.pretrade.service", "evaluate_basket"),
    ("  risk.evaluate (engine inputs + margin_summary)", "app.risk.service", "evaluate"),
    ("  rules.judge", "app.pretrade.service", "judge"),
    ("check: Evaluation.summary_out", "app.risk.service", "Evaluation.summary_out"),
    ("check: Evaluation.positions_out", "app.risk.service", "Evaluation.positions_out"),
    ("check: _persist", "app.pretrade.service", "_persist"),
    ("  audit.record (chain lock, head, insert)", "app.audit.service", "record"),
    ("  _count_orders (Redis rate window)", "app.pretrade.service", "_count_orders"),
    ("check: service.check, all of it", "app.pretrade.service", "check"),
]


def _time_stages(totals: dict[str, float]) -> Any:
    """Wrap each stage function; returns a callable that puts the originals back."""
    import functools
    import importlib
    import inspect

    undo = []
    for label, module_name, attr in STAGE_FUNCTIONS:
        owner: Any = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        original = getattr(owner, name, None)
        if original is None:  # the app moved on: time what still exists
            continue
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed_async(*a: Any, _o: Any = original, _l: str = label, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await _o(*a, **kw)
                finally:
                    totals[_l] += time.perf_counter() - t0

            setattr(owner, name, timed_async)
        else:

            @functools.wraps(original)
            def timed(*a: Any, _o: Any = original, _l: str = label, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _o(*a, **kw)
                finally:
                    totals[_l] += time.perf_counter() - t0

            setattr(owner, name, timed)
        undo.append((owner, name, original))

    def restore() -> None:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)

    return restore


# --- profile ---------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _package(path: str) -> str:
    """py-spy names files relative to their root: ``app/risk/batch.py``, ``sqlalchemy/orm/…``,
    ``asyncio/runners.py``, ``threading.py``, ``<frozen runpy>``."""
    path = path.replace("\\", "/")
    if path.startswith("app/"):
        return path.removesuffix(".py")
    if path.startswith("asyncio/runners"):
        return "event loop (uvloop, native)"
    return path.split("/", 1)[0].removesuffix(".py")


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        if match:
            frames.append((match["func"], match["file"]))
        else:
            frames.append((raw.strip(), ""))
    return frames


IDLE_LEAVES = {"Condition.wait", "Event.wait", "Thread.join", "SimpleQueue.get", "Queue.get"}


def _endpoint(frames: list[tuple[str, str]]) -> str:
    for func, file in frames:
        if file.startswith("app/") and (file.endswith("router.py") or file.endswith("ops.py")):
            return f"{func} ({file})"
    if any(file.startswith(("uvicorn/protocols", "starlette/", "fastapi/")) for _, file in frames):
        return "HTTP handling outside an endpoint (uvicorn / starlette / fastapi)"
    root = frames[0][1] if frames else ""
    if root.startswith(("sqlalchemy/", "asyncpg/", "redis/", "greenlet")):
        return (
            "SQLAlchemy/driver code on a greenlet or callback stack (py-spy cannot see which "
            "request; see the anatomy)"
        )
    if frames and frames[-1][0] == "Runner.run":
        return "uvloop / native code (sockets, parsing, callbacks)"
    app_frames = [f"{func} ({file})" for func, file in frames if file.startswith("app/")]
    if app_frames:
        return f"other app code: {app_frames[-1]}"
    return "other"


STAGES = [
    # (label, function, file fragment): inclusive share = samples with this frame anywhere.
    ("auth dependency (key lookup)", "authenticate", "app/auth/service"),
    ("check handler, all of it", "check", "app/pretrade/service"),
    (
        "  _subaccount + _known_instruments",
        "_subaccount|_known_instruments",
        "app/pretrade/service",
    ),
    (
        "  idempotency lookup (checks_for_order_ids)",
        "checks_for_order_ids",
        "app/pretrade/repository",
    ),
    ("  load_context", "load_context", "app/pretrade/service"),
    ("    load_book (positions, balances, instruments, assets)", "load_book", "app/risk/book"),
    ("      current_marks (Redis + TWAP judge)", "current_marks", "app/marketdata/service"),
    ("        judge / mark_history / twap", "judge", "app/marketdata/marks"),
    ("    risk.parameters", "parameters", "app/risk/service"),
    ("    get_book (visible book)", "get_book", "app/marketdata/service"),
    ("    active_reservations", "active_reservations", "app/pretrade/repository"),
    ("    realized_since", "realized_since", "app/accounts/repository"),
    ("    _states (trading states)", "_states", "app/pretrade/service"),
    ("  evaluate_basket", "evaluate_basket", "app/pretrade/service"),
    ("    risk.evaluate (engine inputs + margin_summary)", "evaluate", "app/risk/service"),
    ("    judge (rules)", "judge", "app/pretrade/rules"),
    (
        "  CheckOut / summaries / positions_out",
        "summary_out|positions_out|marks_out|_summary",
        "app/risk/service|app/pretrade/service",
    ),
    ("  _persist (records, flush, audit, rate window)", "_persist", "app/pretrade/service"),
    ("    audit.record (chain lock, head, insert)", "record", "app/audit/service"),
    ("    session.flush (ORM unit of work)", "flush", "sqlalchemy/orm/session"),
    ("request validation (pydantic in)", "request_body_to_args|_validate_unwrapped", "fastapi/"),
    ("response serialisation (FastAPI)", "serialize_response", "fastapi/routing"),
    ("commit (session.begin exit)", "commit", "sqlalchemy/"),
    ("SQLAlchemy, anywhere", "*", "sqlalchemy/"),
    ("asyncpg, anywhere", "*", "asyncpg/"),
    ("redis-py, anywhere", "*", "redis/"),
    ("pydantic, anywhere", "*", "pydantic"),
    ("app code's own lines (leaf frame in app/*)", "<leaf-app>", ""),
    ("margin-call sweep after marks (after_marks)", "after_marks", "app/risk/margin_calls"),
]


def summarise_profile(folded: Path, top: int = 25) -> str:
    samples: list[tuple[list[tuple[str, str]], int]] = []
    waiting = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            frames = _frames(stack)
            if frames and frames[-1][0] in IDLE_LEAVES:
                waiting += int(number)  # a thread blocked in a wait: not CPU
                continue
            samples.append((frames, int(number)))
    total = sum(c for _, c in samples)
    if not total:
        return "(no samples)"
    leaf_fn = collections.Counter[str]()
    leaf_pkg = collections.Counter[str]()
    endpoint = collections.Counter[str]()
    for frames, count in samples:
        func, file = frames[-1]
        name = "uvloop / native code" if func == "Runner.run" else f"{func} ({file})"
        leaf_fn[name] += count
        leaf_pkg[_package(file)] += count
        endpoint[_endpoint(frames)] += count
    lines = [
        f"py-spy: {total} samples of the server's CPU (idle excluded; {waiting} more of "
        "threads blocked in Condition/Event.wait dropped)",
        "",
        "By endpoint (the request a sample belongs to):",
    ]
    for name, count in endpoint.most_common(10):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines += ["", "Top functions by self time:"]
    for name, count in leaf_fn.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines += ["", "Self time by package / app module:"]
    for name, count in leaf_pkg.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {name}")
    lines += ["", "Inclusive time by stage (a stage counts each stack it appears in once):"]
    for label, funcs, files in STAGES:
        names = set(funcs.split("|"))
        fragments = files.split("|")
        hit = 0
        for frames, count in samples:
            if funcs == "<leaf-app>":
                func, file = frames[-1]
                ok = file.startswith("app/")
            else:
                ok = any(
                    (funcs == "*" or func.rsplit(".", 1)[-1] in names)
                    and any(f in file for f in fragments)
                    for func, file in frames
                )
            hit += count if ok else 0
        lines.append(f"  {100 * hit / total:5.1f}%  {label}")
    return "\n".join(lines)


def profile(server: Server, load: Load, connections: int, seconds: float, outdir: Path) -> str:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(pyspy, os.X_OK):
        return "(py-spy not installed: .venv/bin/pip install py-spy)"
    folded, svg = outdir / "pretrade.folded", outdir / "pretrade.svg"
    # Blocking mode (the default) pauses the server for each sample, so stacks are never torn;
    # at 100 Hz that costs the server about 1 %.
    common = ["--pid", str(server.proc.pid), "--rate", "100", "--function"]
    spies = [
        subprocess.Popen(
            [
                pyspy,
                "record",
                *common,
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "-o",
                str(folded),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [
                pyspy,
                "record",
                *common,
                "--duration",
                str(int(seconds)),
                "--format",
                "flamegraph",
                "-o",
                str(svg),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    try:
        time.sleep(0.5)
        load.raw("check", connections, seconds + 1.5)
        for spy in spies:
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                return f"(py-spy failed: {err[-800:]})"
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
    return summarise_profile(folded) + f"\n\nfolded stacks: {folded}\nflame graph:   {svg}"


# --- report ----------------------------------------------------------------------------------


def table(results: list[Result], healthz: dict[int, Result]) -> str:
    head = (
        f"{'endpoint':<26}{'conns':>6}{'req/s':>9}{'vs healthz':>11}{'p50 ms':>8}{'p90 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'accept':>8}{'reject':>8}{'errors':>7}"
        f"{'srv CPU/req':>12}{'srv CPU':>8}{'machine':>8}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        ratio = r.rps / healthz[r.connections].rps if healthz.get(r.connections) else math.nan
        rows.append(
            f"{r.label:<26}{r.connections:>6}{r.rps:>9.0f}{ratio:>10.1%} {r.p50_ms:>8.2f}"
            f"{r.p90_ms:>8.2f}{r.p99_ms:>8.2f}{r.max_ms:>8.1f}{r.accepted:>8}{r.rejected:>8}"
            f"{r.non200 + r.socket_errors:>7}{r.server_cpu_us:>10.0f}µs{r.server_cpu_util:>7.0%}"
            f"{r.machine_busy:>8.0%}"
        )
    return "\n".join(rows)


def verdicts(results: list[Result], healthz: dict[int, Result]) -> list[str]:
    out = []
    for r in results:
        if r.label == "/healthz" or r.connections not in healthz:
            continue
        ratio = r.rps / healthz[r.connections].rps
        goal = 0.5 if r.label.startswith("check") else 0.2
        out.append(
            f"{r.label} @ {r.connections} conns: {ratio:.1%} of /healthz (target ≥ {goal:.0%}): "
            f"{'PASS' if ratio >= goal else 'FAIL'}"
        )
        if r.connections == 4:
            out.append(
                f"{r.label} @ 4 conns: p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms "
                f"(target p99 ≤ 5 ms): {'PASS' if r.p99_ms <= 5 else 'FAIL'}"
            )
    return out


def redis_ticks(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(f"pf:history:{symbol(0)}"))
    finally:
        client.close()


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(args: argparse.Namespace) -> Iterator[tuple[str, str, str]]:
    """(database url, redis url, admin key); the database dropped and Redis flushed after."""
    import redis

    from app.core.migrations import upgrade

    server_url = postgres_server_url()
    name = f"preflight_bench_{os.getpid()}"
    held: list[IO[str]] = []
    redis_db = claim_redis_database(held)
    redis_url = f"{redis_server_url().rsplit('/', 1)[0]}/{redis_db}"
    flush = redis.Redis.from_url(redis_url)
    db_url = create_database(server_url, name)
    try:
        flush.flushdb()
        upgrade(db_url)
        log(f"database {name} on {server_url.rsplit('@', 1)[-1]}, redis db {redis_db}")
        yield db_url, redis_url, "pf_bench_admin_" + secrets.token_hex(16)
    finally:
        with contextlib.suppress(Exception):
            flush.flushdb()
        flush.close()
        drop_database(server_url, name)
        for handle in held:
            handle.close()
        log(f"dropped {name}, flushed redis db {redis_db}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each measurement")
    parser.add_argument(
        "--feed-interval", type=float, default=1.0, help="seconds between mark posts"
    )
    parser.add_argument(
        "--quiet-feed",
        action="store_true",
        help="no feed during a measurement: instruments' stale_after_s is 120 s and "
        "marks + books are posted right before each row (isolates the check)",
    )
    parser.add_argument(
        "--history-s",
        type=int,
        default=0,
        help="mark history to backfill before the run (600 = what a 1 Hz feed "
        "leaves at steady state: 2 × the 300 s TWAP window)",
    )
    parser.add_argument("--profile-s", type=float, default=10.0, help="0 skips the py-spy profile")
    parser.add_argument(
        "--anatomy", type=int, default=100, help="sequential checks to count (0 skips)"
    )
    parser.add_argument("--driver", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument(
        "--drive",
        nargs=5,
        metavar=("KIND", "URL", "KEY", "CONNS", "SECONDS"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.drive:
        kind, url, key, conns, seconds = args.drive
        drive(kind, url, key, int(conns), float(seconds))
        return
    if not args.quiet_feed and not 0 < args.feed_interval <= 4:
        sys.exit("--feed-interval must be in (0, 4] s: marks go stale after 5 s")
    if args.quiet_feed and args.duration + args.warmup > 100:
        sys.exit("--quiet-feed: a row (warm-up + duration) must fit in the 120 s staleness window")
    global STALE_AFTER_S
    STALE_AFTER_S = 120 if args.quiet_feed else None

    use_wrk = args.driver == "wrk" or (args.driver == "auto" and shutil.which("wrk") is not None)
    if args.driver == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk not on PATH (apt-get install -y wrk)")
    log(
        f"load generator: {'wrk -t1 (Lua)' if use_wrk else 'asyncio httpx driver (child process)'}; "
        f"{os.cpu_count()} CPUs"
    )
    with environment(args) as (db_url, redis_url, admin_key), tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PREFLIGHT_DATABASE_URL": db_url,
            "PREFLIGHT_REDIS_URL": redis_url,
            "PREFLIGHT_ADMIN_KEY": admin_key,
            "PREFLIGHT_LOG_LEVEL": "WARNING",
        }
        server = Server(env)
        feeder: Feeder | None = None
        try:
            server.wait_ready()
            log(f"server pid {server.proc.pid} on {server.url} (preflight serve, 1 worker)")
            keys = asyncio.run(
                seed_reference(server.url, admin_key, args.history_s, args.feed_interval)
            )
            asyncio.run(seed_subaccounts(server.url, admin_key))
            # The feeder starts once the desk is loaded: seeding needs no fresh marks, and a
            # feed running through the seeding would leave a history whose size depends on
            # how long the seeding took.
            feeder = Feeder(server.url, keys["feeder"], args.feed_interval)
            feeder.feed_now()
            background = 0.0
            if not args.quiet_feed:
                feeder.start()
                cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                time.sleep(5)
                background = (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
                log(f"server CPU with no load but the feeder: {background:.0%} of a core")
            refresh = feeder.feed_now if args.quiet_feed else (lambda: None)
            sanity(server.url, keys["trader"])

            load = Load(server, keys, Path(tmp), use_wrk)
            results: list[Result] = []
            healthz: dict[int, Result] = {}
            for conns in sorted({args.connections, 4}):
                for kind, label in (
                    ("healthz", "/healthz"),
                    ("check", "check (no reserve)"),
                    ("reserve", "check (reserve)"),
                ):
                    refresh()
                    ticks = redis_ticks(redis_url)
                    if args.warmup > 0:
                        load.raw(kind, conns, args.warmup)
                    for values in feeder.latency.values():
                        values.clear()
                    result = load.measure(kind, label, conns, args.duration, 0)
                    result.extra["ticks"] = ticks
                    result.extra["feed"] = {k: sorted(v) for k, v in feeder.latency.items()}
                    results.append(result)
                    if kind == "healthz":
                        healthz[conns] = result
                    log(
                        f"  {label} @ {conns}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                        f"p99 {result.p99_ms:.2f} ms, {result.accepted} accepted, {result.rejected} "
                        f"rejected, {result.non200} non-200, {result.socket_errors} socket errors; "
                        f"{ticks} mark history points per instrument in Redis"
                    )

            anatomy_out = None
            if args.anatomy > 0:
                anatomy_out = asyncio.run(
                    anatomy(db_url, redis_url, admin_key, keys["trader"], args.anatomy, refresh)
                )
            profile_out = None
            if args.profile_s > 0:
                refresh()
                profile_out = profile(
                    server, load, args.connections, args.profile_s, Path(tempfile.gettempdir())
                )

            feeder.halt.set()
            if feeder.is_alive():
                feeder.join(10)
            log("")
            log("=" * 100)
            log(
                f"Pre-trade benchmark — 1 server worker, {N_ACCOUNTS * SUBS_PER_ACCOUNT} cross subaccounts × "
                f"{N_INSTRUMENTS} positions, {N_INSTRUMENTS} instruments with {BOOK_LEVELS}-level books; "
                f"{os.cpu_count()} CPUs shared by server, PostgreSQL, Redis and the load generator"
            )
            feed = (
                "quiet feed: marks + books posted before each row, none during it "
                "(instruments' stale_after_s 120)"
                if args.quiet_feed
                else f"live feed: marks every {args.feed_interval:g} s + books every "
                f"{feeder.book_every * args.feed_interval:g} s during every row"
            )
            log(
                f"load: {'wrk -t1' if use_wrk else 'httpx driver'}, {args.duration:g} s per row after "
                f"{args.warmup:g} s warm-up; {feed} ({feeder.posts} feeder requests, "
                f"{len(feeder.errors)} failed); mark history points per instrument: "
                f"{results[0].extra['ticks']}–{max(r.extra['ticks'] for r in results)} "
                f"(history backfilled: {args.history_s} s)"
            )
            log("")
            log(table(results, healthz))
            log("")
            log(
                "srv CPU/req = server process CPU time / requests; srv CPU = of one core; "
                "machine = all cores busy"
            )
            if not args.quiet_feed:
                log(
                    f"the feeder alone keeps the server {background:.0%} busy (server CPU with no "
                    "load, 5 s)"
                )
                log(
                    "feeder latency during each row (POST /v1/marks of 40 marks; PUT /v1/books/{symbol}):"
                )
            for r in results:
                marks_ms = [x * 1000 for x in r.extra["feed"]["marks"]]
                books_ms = [x * 1000 for x in r.extra["feed"]["book"]]
                if marks_ms:
                    log(
                        f"  {r.label:<22} @ {r.connections}: marks p50 {statistics.median(marks_ms):.0f} ms, "
                        f"max {max(marks_ms):.0f} ms ({len(marks_ms)} posts); books p50 "
                        f"{statistics.median(books_ms) if books_ms else math.nan:.0f} ms, max "
                        f"{max(books_ms) if books_ms else math.nan:.0f} ms ({len(books_ms)} puts)"
                    )
            for line in verdicts(results, healthz):
                log("  " + line)
            if anatomy_out:
                log("")
                log(
                    f"Anatomy of one check ({args.anatomy} sequential, in-process app on the same "
                    "database and Redis, no HTTP; mean µs per statement, lock waits included):"
                )
                for kind, a in anatomy_out.items():
                    log(
                        f"  {kind}: wall p50 {a['wall_ms_p50']:.2f} ms; {a['sql_per_check']:.1f} SQL "
                        f"statements + {a['tx_events_per_check']:.1f} pool/transaction events, "
                        f"{a['sql_ms_per_check']:.2f} ms in SQL; {a['redis_per_check']:.1f} Redis round "
                        f"trips, {a['redis_ms_per_check']:.2f} ms; Redis calls {dict(a['redis'])}"
                    )
                    log(
                        "    time per check by stage (wall, ms; nested stages inside their parents):"
                    )
                    for label, _, _ in STAGE_FUNCTIONS:
                        if label in a["stages"]:
                            log(f"      {a['stages'][label]:7.2f}  {label}")
                    log("    SQL statements per check:")
                    for text, per, mean_us, p50_us in a["statements"]:
                        log(
                            f"      {per:4.1f}×  mean {mean_us:7.0f} µs  p50 {p50_us:6.0f} µs  {text}"
                        )
            if profile_out:
                log("")
                log(
                    f"Profile of the server under non-reserving checks ({args.connections} connections, "
                    f"{args.profile_s:g} s):"
                )
                log(profile_out)
            if feeder.errors:
                log("feeder errors: " + "; ".join(feeder.errors[:5]))
        finally:
            if feeder is not None:
                feeder.halt.set()
                if feeder.is_alive():
                    feeder.join(10)
            server.stop()


def sanity(url: str, trader_key: str) -> None:
    """A few checks of each kind must answer 200 and accept; else the numbers mean nothing."""
    headers = {"Authorization": f"Bearer {trader_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for k in range(10):
            i = k % N_INSTRUMENTS
            order: dict[str, Any] = {
                "instrument": symbol(i),
                "side": "buy" if k % 2 else "sell",
                "size": str(order_size(i)),
                "type": "market",
            }
            body: dict[str, Any] = {"subaccount_id": sub_id(k * 97 % 1000), "orders": [order]}
            if k >= 5:
                order["client_order_id"] = f"sanity-{k}"
                body.update(reserve=True, reservation_ttl_s=5)
            response = client.post("/v1/pretrade/check", json=body)
            if response.status_code != 200 or response.json()["decision"] != "accept":
                raise RuntimeError(
                    f"sanity check failed: {response.status_code} {response.text[:1500]}"
                )
            execution = response.json()["executions"][0]
            if execution["book"] != "fresh" or execution["price_source"] != "book":
                raise RuntimeError(f"the book is not used: {execution}")
    log("sanity: 5 non-reserving and 5 reserving checks accepted, filled against fresh books")


if __name__ == "__main__":
    main()
