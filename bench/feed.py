"""The mark feed at desk scale, in one run (issue targets in brackets):

    .venv/bin/python bench/feed.py [--duration 10] [--quick] [--holders 2000] [--trials 50]
                                   [--feed-trials 20] [--feed-connections 1] [--profile-s 10]

A fresh database and Redis database (``bench/desk.py``), a webhook receiver in this process (a
threaded ``http.server`` that notes when each POST arrives), the service (one uvicorn worker,
``tests/servers.py``, ``PREFLIGHT_WEBHOOK_URL`` pointing at the receiver) and the bare ping app
(``bench/ping_app.py``) on the same command line; the desk's reference data (20 perpetuals, 20
accounts, ``stale_after_s`` 3,600 s throughout, so books posted once stay fresh). Each load row
is ``wrk -t1`` for ``--duration`` s after a ``--warmup`` of the same load.

Before anyone holds anything:

  ping             bare /ping at 16 connections: the reference of every ratio
  marks, no        the feeder alone, its sweeps empty (a figure to watch): POST /v1/marks of 40
  holders yet      marks (20 symbols × 2 sources, the first with a funding rate), each price the
                   desk's jittered by ±0.05 %, ``ts`` the wall clock when wrk sends the request,
                   closed loop on ``--feed-connections`` (1: one feeder, posts strictly in order)

Then ``--holders`` cross subaccounts seeded through the API, each holding all 20 instruments
(``desk.snapshot``), and ``mc-target``, one leveraged long of ``P00-PERP``; marks and books
posted once; every holder checked once, so the service has them all resident.

  check, no feed   non-reserving check at 4 connections (a random holder, one ~200 USDC market
                   leg): the reference of the checks' ratio
  marks            the feeder again: every post moves the 20 symbols every holder holds, so each
                   margin-call sweep evaluates them all [≥ 0.05 × ping, p99 ≤ 20 ms]
  marks @ 4        the same on 4 connections (a figure to watch)
  check, feeder    the check at 4 connections while the feeder runs in a second wrk
  running          [≥ 0.80 × the quiet check, p99 ≤ 10 ms]
  margin calls     ``--trials`` (after one untimed warm-up): both sources of ``P00-PERP`` posted
                   2 % lower, which takes ``mc-target`` from a maintenance margin ratio of 0.40
                   to 1.96 while staying inside the mark's 5 % TWAP deviation (the mark's status
                   is read back each trial: fresh, not deviating); timed from the send of that
                   post until ``GET /v1/margin-calls?status=open`` (polled every 25 ms) shows the
                   liquidation call [p99 ≤ 1 s] and until its ``margin_call.raised`` webhook
                   arrives [p99 ≤ 2 s]. Then the mark goes back and the trial ends when the
                   calls are resolved and their ``margin_call.resolved`` webhooks are in.
  margin calls,    ``--feed-trials`` more while the feeder posts the 19 other symbols (a figure
  feeder running   to watch: the sweeps of the feed delay those of the trial)

The table prints each target with PASS / FAIL (INVALID when a row did not measure what it says:
checks not accepted, mark posts not answered 200); under it, every row's answers and the CPU of
the service, of PostgreSQL's backends of this run's database and of redis-server, per request,
and each set of trials in detail. ``--profile-s N`` adds a py-spy profile of the service under
the feeder alone (``bench/profile.py``). Everything started is stopped, the database dropped,
Redis flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any

# Run as a script, bench/ is first on the path, where bench/profile.py would shadow the
# standard library's `profile`: this checkout's root takes its place (as in bench/pretrade.py).
if __name__ == "__main__":
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench import desk, report
from bench import profile as spy
from bench.desk import log
from bench.drivers import (
    _LUA_CHECK,
    _LUA_COMMON,
    CHECK_PATH,
    REQUEST_TIMEOUT_S,
    Measured,
    machine_jiffies,
    process_cpu_s,
    run_wrk,
    write_scripts,
)
from bench.pretrade import imported_app_root, servers
from tests.servers import ADMIN_KEY, server_env

ROOT = Path(__file__).resolve().parents[1]
PING_CONNECTIONS = 16
CHECK_CONNECTIONS = 4
WATCH_FEED_CONNECTIONS = 4
MARKS_PER_POST = desk.N_INSTRUMENTS * len(desk.SOURCES)
JITTER = Decimal("0.0005")  # of each price, both ways, per mark
FUNDING_RATE = "0.0001"

# The targets of the issue.
FEED_RATIO = 0.05  # × ping
FEED_P99_MS = 20.0
CHECK_KEEPS = 0.80  # × the quiet check
CHECK_P99_MS = 10.0
VISIBLE_P99_S = 1.0
WEBHOOK_P99_S = 2.0

# The margin-call trials: one long of P00-PERP (20.00 USDC), MMF 1 % (half the 2 % IMF).
TARGET = "mc-target"
TARGET_INSTRUMENT = 0
TARGET_NOTIONAL = Decimal(100_000)
TARGET_COLLATERAL = Decimal("0.025")  # × the notional: ratio 0.01 / 0.025 = 0.40 at the desk's mark
TARGET_MOVE = Decimal("0.02")  # the trial's drop: ratio 0.0098 / 0.005 = 1.96
POLL_EVERY_S = 0.025
TRIAL_TIMEOUT_S = 5.0
SETTLE_TIMEOUT_S = 10.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (of 50 trials, p99 is the worst)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


# --- the feeder's wrk script -----------------------------------------------------------------

# A post of 40 marks per request, built when wrk sends it: ``ts`` is the wall clock then, to the
# microsecond (so every post is newer than the one before on its connection), each price the
# desk's, jittered by whole ticks. `response` counts posts that superseded nothing (accepted),
# posts where some marks were older than what their source had sent (rejected, with the count
# of such marks) and every non-200.
_LUA_MARKS = Template(
    r"""
threads, static = {}, false
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local auth = "Bearer $key"
local symbols = {$symbols}
local cents = {$cents}
local jitter = {$jitter}
local sources = {$sources}
local funding = ',"funding_rate":"$funding"'
accepted, rejected, reasons, non200 = 0, 0, {}, {}

function setup(thread) table.insert(threads, thread) end

function init(args)
  math.randomseed(tonumber(args[2]) or 1)
  wrk.method = "POST"
  wrk.path = "/v1/marks"
  wrk.headers["Authorization"] = auth
  wrk.headers["Content-Type"] = "application/json"
end

local function now_iso()
  ffi.C.gettimeofday(tv, nil)
  return os.date("!%Y-%m-%dT%H:%M:%S", tonumber(tv.tv_sec)) ..
    string.format(".%06dZ", tonumber(tv.tv_usec))
end

function request()
  local ts, parts = now_iso(), {}
  for i = 1, #symbols do
    for s = 1, #sources do
      local c = cents[i] + math.random(-jitter[i], jitter[i])
      parts[#parts + 1] = string.format(
        '{"symbol":"%s","price":"%d.%02d","source":"%s","ts":"%s"%s}',
        symbols[i], math.floor(c / 100), c % 100, sources[s], ts, (s == 1) and funding or "")
    end
  end
  return wrk.format(nil, nil, nil, '{"marks":[' .. table.concat(parts, ",") .. ']}')
end

function response(status, headers, body)
  if status ~= 200 then
    local key = tostring(status) .. " " .. (string.match(body, '"code":"([A-Z_]+)"') or "")
    non200[key] = (non200[key] or 0) + 1
    return
  end
  local superseded = tonumber(string.match(body, '"superseded":(%d+)') or "0")
  if superseded == 0 then
    accepted = accepted + 1
  else
    rejected = rejected + 1
    reasons["SUPERSEDED_MARKS"] = (reasons["SUPERSEDED_MARKS"] or 0) + superseded
  end
end
"""
    + _LUA_COMMON
)


def write_check_script(workdir: Path, trader_key: str, holders: int) -> Path:
    """``bench/drivers.py``'s non-reserving check, on a random one of all ``holders``."""
    path = workdir / "check-holders.lua"
    path.write_text(
        _LUA_CHECK.substitute(
            reserve="false",
            key=trader_key,
            n_subs=holders,
            sizes=", ".join(f'"{desk.order_size(i)}"' for i in range(desk.N_INSTRUMENTS)),
            ttl=2,
            path=CHECK_PATH,
        )
    )
    return path


def write_marks_script(
    workdir: Path, name: str, feeder_key: str, instruments: Sequence[int]
) -> Path:
    """The feeder's script, posting both sources of each of ``instruments``."""

    def quoted(values: Iterable[str]) -> str:
        return ", ".join(f'"{v}"' for v in values)

    cents = [int(desk.PRICES[i] / desk.TICK) for i in instruments]
    path = workdir / f"{name}.lua"
    path.write_text(
        _LUA_MARKS.substitute(
            key=feeder_key,
            symbols=quoted(desk.symbol(i) for i in instruments),
            cents=", ".join(map(str, cents)),
            jitter=", ".join(str(max(1, int(c * JITTER))) for c in cents),
            sources=quoted(desk.SOURCES),
            funding=FUNDING_RATE,
        )
    )
    return path


# --- CPU: the service, PostgreSQL's backends of this database, redis-server ------------------


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _processes(match: Callable[[bytes, str], bool]) -> dict[int, int]:
    """CPU ticks of every process whose command line and name ``match``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if match(cmdline, comm):
            found[int(entry.name)] = _ticks(int(entry.name))
    return found


@dataclass
class CpuSample:
    service_s: float
    postgres: dict[int, int]
    redis: dict[int, int]
    busy: float
    total: float


@dataclass
class Cpu:
    service_s: float = math.nan
    postgres_s: float = math.nan
    redis_s: float = math.nan
    machine_busy: float = math.nan  # of every core


class CpuMeter:
    """The service's CPU (``process_cpu_s``), that of PostgreSQL's backends serving this run's
    database (a backend's command line names its database; one that exits mid-row is lost),
    and redis-server's (the whole server: other databases count too)."""

    def __init__(self, service_pid: int, database: str) -> None:
        self.service_pid, self.marker = service_pid, f" {database} ".encode()

    def sample(self) -> CpuSample:
        busy, total = machine_jiffies()
        return CpuSample(
            process_cpu_s(self.service_pid),
            _processes(lambda cmd, _: cmd.startswith(b"postgres: ") and self.marker in cmd),
            _processes(lambda _, comm: comm == "redis-server"),
            busy,
            total,
        )

    @staticmethod
    def between(a: CpuSample, b: CpuSample) -> Cpu:
        hz = os.sysconf("SC_CLK_TCK")

        def spent(before: dict[int, int], after: dict[int, int]) -> float:
            return sum(t - before.get(pid, 0) for pid, t in after.items()) / hz

        return Cpu(
            b.service_s - a.service_s,
            spent(a.postgres, b.postgres),
            spent(a.redis, b.redis),
            (b.busy - a.busy) / max(1.0, b.total - a.total),
        )


# --- the webhook receiver --------------------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    at: float  # time.perf_counter() when the POST's headers were read
    event: str
    data: dict[str, Any]


class Receiver:
    """A threaded HTTP server on a free loopback port that answers 204 to every POST and keeps
    what came and when."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(204)
                self.end_headers()
                with receiver.changed:
                    receiver.hooks.append(Hook(at, body.get("event", ""), body.get("data", {})))
                    receiver.changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, found: Callable[[Hook], bool], timeout: float, since: int = 0) -> Hook | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                hook = next((h for h in self.hooks[since:] if found(h)), None)
                left = deadline - time.monotonic()
                if hook is not None or left <= 0:
                    return hook
                self.changed.wait(left)


# --- seeding ---------------------------------------------------------------------------------


def check_request(s: int) -> dict[str, Any]:
    """A non-reserving check of holder ``s``: one ~200 USDC market buy, as the load's."""
    i = s % desk.N_INSTRUMENTS
    order = {"instrument": desk.symbol(i), "side": "buy", "size": str(desk.order_size(i))}
    return {"subaccount_id": desk.sub_id(s), "orders": [{**order, "type": "market"}]}


async def prime(base: str, trader_key: str, holders: int) -> tuple[int, float]:
    """One non-reserving check of every holder (4 at a time), so the service has each one's
    state resident, as a service that has been running has: else the first rows would measure
    first loads from PostgreSQL (the warm-ups touch a fraction of 2,000). Answers how many were
    accepted and how long it took."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        call = desk.Api(client, trader_key, concurrency=CHECK_CONNECTIONS)
        t0 = time.perf_counter()
        answers = await asyncio.gather(
            *(call("POST", "/v1/pretrade/check", json=check_request(s)) for s in range(holders))
        )
        return sum(a["decision"] == "accept" for a in answers), time.perf_counter() - t0


@dataclass(frozen=True)
class Target:
    size: Decimal
    usdc: Decimal
    base: Decimal  # the desk's mark
    crossed: Decimal  # the trial's mark
    ratio_base: float  # by hand
    ratio_crossed: float
    ratio_api: float  # GET …/margin at the desk's mark


def seed_target(base: str, admin_key: str) -> Target:
    i = TARGET_INSTRUMENT
    mark = desk.PRICES[i]
    size = (TARGET_NOTIONAL / mark).quantize(desk.LOT)
    usdc = (TARGET_NOTIONAL * TARGET_COLLATERAL).quantize(desk.TICK)
    crossed = (mark * (1 - TARGET_MOVE)).quantize(desk.TICK)
    mmf = desk.FIRST_TIER_IMF / 2

    def ratio(at: Decimal) -> float:
        return float(mmf * size * at / (usdc + size * (at - mark)))

    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.post("/v1/subaccounts", json={
            "subaccount_id": TARGET, "account_id": desk.acct_id(0), "margin_mode": "cross",
        }).raise_for_status()  # fmt: skip
        client.put(f"/v1/subaccounts/{TARGET}/snapshot", json={
            "balances": {"USDC": str(usdc)},
            "positions": [{"instrument": desk.symbol(i), "size": str(size), "entry_price": str(mark)}],
        }).raise_for_status()  # fmt: skip
        margin = client.get(f"/v1/subaccounts/{TARGET}/margin")
        margin.raise_for_status()
    return Target(
        size, usdc, mark, crossed, ratio(mark), ratio(crossed),
        float(margin.json()["summary"]["maintenance_margin_ratio"]),
    )  # fmt: skip


# --- the load rows ---------------------------------------------------------------------------


@dataclass
class Load:
    name: str
    connections: int
    measured: Measured
    cpu: Cpu
    posts_marks: bool = False
    feed: Measured | None = None  # the feeder running beside it, the whole time it ran

    @property
    def valid(self) -> bool:
        """A feeder row counts only if every post was answered 200; a check row only if
        nearly all of its checks were accepted (``report.MIN_ACCEPT_SHARE``)."""
        m = self.measured
        if self.posts_marks:
            return not m.non200 and not m.socket_errors and m.requests > 0
        return m.accept_share >= report.MIN_ACCEPT_SHARE


class Background:
    """``wrk -t1`` running until :meth:`stop`: on SIGINT wrk stops, prints its figures and
    runs the script's ``done``, so a load can last exactly as long as what runs beside it."""

    def __init__(self, url: str, script: Path, connections: int) -> None:
        argv = [
            "wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", f"{REQUEST_TIMEOUT_S}s",
            "-s", str(script), url + "/", "--", "b" + secrets.token_hex(4),
            str(random.randrange(1 << 30)),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def stop(self) -> Measured:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}):\n{out}\n{err}")
        return Measured(**json.loads(line[6:]))


class Bench:
    def __init__(
        self, args: argparse.Namespace, service_pid: int, database: str, scripts: dict[str, Path]
    ) -> None:
        self.args, self.scripts = args, scripts
        self.meter = CpuMeter(service_pid, database)

    def run(self, url: str, kind: str, connections: int, seconds: float) -> Measured:
        return run_wrk(url, kind, self.scripts[kind], connections, seconds)

    def measure(self, name: str, url: str, kind: str, connections: int) -> Load:
        """``kind`` for ``--duration`` s after a ``--warmup`` of the same load."""
        if self.args.warmup > 0:
            self.run(url, kind, connections, self.args.warmup)
        before = self.meter.sample()
        measured = self.run(url, kind, connections, self.args.duration)
        cpu = CpuMeter.between(before, self.meter.sample())
        load = Load(name, connections, measured, cpu, posts_marks=kind.startswith("marks"))
        log(
            f"  {name:<34} @ {connections:>2}: {measured.rps:7.0f} req/s, p50 "
            f"{measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms, {report.describe(measured)}"
        )
        return load

    @contextlib.contextmanager
    def feeding(self, url: str, kind: str, into: list[Measured]) -> Iterator[None]:
        """The feeder (``kind``'s script on ``--feed-connections``) running in a second wrk
        from a second before the block until its end; its figures appended to ``into``."""
        feeder = Background(url, self.scripts[kind], self.args.feed_connections)
        try:
            time.sleep(1.0)
            yield
        finally:
            into.append(feeder.stop())
        m = into[-1]
        log(
            f"    the feeder beside it: {m.rps:.0f} posts/s, p50 {m.p50_ms:.2f} ms, "
            f"p99 {m.p99_ms:.2f} ms, {report.describe(m)}"
        )

    def measure_under_feed(self, name: str, url: str, kind: str, connections: int) -> Load:
        feed: list[Measured] = []
        with self.feeding(url, "marks", feed):
            load = self.measure(name, url, kind, connections)
        load.feed = feed[0]
        return load


# --- the margin-call trials ------------------------------------------------------------------


@dataclass
class Trial:
    post_ms: float  # the crossing post's own answer
    visible_s: float  # send → GET /v1/margin-calls?status=open shows the liquidation call
    webhook_s: float  # send → its margin_call.raised webhook arrives
    raised_lag_s: float  # the call's raised_at − the post's send (server clock = this clock)
    mark_status: str
    ratio: float | None
    settle_s: float  # mark back → calls resolved and their resolved webhooks in


@dataclass
class Trials:
    runs: list[Trial] = field(default_factory=list)
    warmup: Trial | None = None
    feed: Measured | None = None  # the feeder running beside them

    def visible(self) -> list[float]:
        return [t.visible_s for t in self.runs]

    def webhook(self) -> list[float]:
        return [t.webhook_s for t in self.runs]


def post_marks(client: httpx.Client, price: Decimal) -> float:
    """Both sources of the target's instrument at ``price``, now; the answer's time in ms."""
    ts = datetime.now(UTC).isoformat()
    body = {
        "marks": [
            {"symbol": desk.symbol(TARGET_INSTRUMENT), "price": str(price), "source": s, "ts": ts}
            for s in desk.SOURCES
        ]
    }
    t0 = time.perf_counter()
    response = client.post("/v1/marks", json=body)
    if response.status_code != 200 or response.json()["superseded"]:
        raise RuntimeError(f"POST /v1/marks: {response.status_code} {response.text[:300]}")
    return (time.perf_counter() - t0) * 1e3


def open_calls(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/v1/margin-calls", params={"status": "open", "subaccount_id": TARGET})
    response.raise_for_status()
    return list(response.json()["margin_calls"])


def trial(feeder: httpx.Client, reader: httpx.Client, receiver: Receiver, target: Target) -> Trial:
    since = len(receiver.hooks)
    sent_wall, t0 = datetime.now(UTC), time.perf_counter()
    post_ms = post_marks(feeder, target.crossed)
    call: dict[str, Any] | None = None
    visible = math.inf
    while time.perf_counter() - t0 < TRIAL_TIMEOUT_S:
        call = next((c for c in open_calls(reader) if c["level"] == "liquidation"), None)
        if call is not None:
            visible = time.perf_counter() - t0
            break
        time.sleep(POLL_EVERY_S)
    hook = receiver.wait(
        lambda h: (
            h.event == "margin_call.raised"
            and h.data.get("subaccount_id") == TARGET
            and h.data.get("level") == "liquidation"
        ),
        max(0.0, t0 + TRIAL_TIMEOUT_S - time.perf_counter()),
        since,
    )
    status = reader.get(f"/v1/marks/{desk.symbol(TARGET_INSTRUMENT)}").json()["status"]
    raised_lag = math.inf
    if call is not None:
        raised_lag = (datetime.fromisoformat(call["raised_at"]) - sent_wall).total_seconds()

    # Back to calm: the mark back, every call of the target resolved, their webhooks in.
    t1 = time.perf_counter()
    post_marks(feeder, target.base)
    while open_calls(reader):
        if time.perf_counter() - t1 > SETTLE_TIMEOUT_S:
            raise RuntimeError(f"{TARGET}'s margin calls did not resolve in {SETTLE_TIMEOUT_S} s")
        time.sleep(POLL_EVERY_S)
    raised = {h.data["id"] for h in receiver.hooks[since:] if h.event == "margin_call.raised"}
    for call_id in raised:
        if not receiver.wait(
            lambda h, i=call_id: h.event == "margin_call.resolved" and h.data.get("id") == i,
            max(0.0, t1 + SETTLE_TIMEOUT_S - time.perf_counter()),
            since,
        ):
            raise RuntimeError(f"no margin_call.resolved webhook for {call_id}")
    return Trial(
        post_ms=post_ms,
        visible_s=visible,
        webhook_s=hook.at - t0 if hook is not None else math.inf,
        raised_lag_s=raised_lag,
        mark_status=status,
        ratio=call["ratio"] if call else None,
        settle_s=time.perf_counter() - t1,
    )


def run_trials(base: str, keys: desk.Keys, receiver: Receiver, target: Target, n: int) -> Trials:
    """One untimed warm-up trial, then ``n``."""
    trials = Trials()
    feeder_headers = {"Authorization": f"Bearer {keys.feeder}"}
    reader_headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        httpx.Client(base_url=base, headers=feeder_headers, timeout=30) as feeder,
        httpx.Client(base_url=base, headers=reader_headers, timeout=30) as reader,
    ):
        if open_calls(reader):
            raise RuntimeError(f"{TARGET} has open margin calls before the trials")
        t0 = time.perf_counter()
        trials.warmup = trial(feeder, reader, receiver, target)
        for k in range(n):
            trials.runs.append(trial(feeder, reader, receiver, target))
            if (k + 1) % 10 == 0 or k + 1 == n:
                log(
                    f"  {k + 1} trials: open p50 {statistics.median(trials.visible()):.3f} s, "
                    f"webhook p50 {statistics.median(trials.webhook()):.3f} s "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
    return trials


# --- the report ------------------------------------------------------------------------------


@dataclass
class Line:
    row: str
    connections: str
    rps: float
    p50_ms: float
    p99_ms: float
    figure: str
    target: str
    verdict: str


@dataclass
class Results:
    ping: Load
    bare_feed: Load | None  # the feeder before anyone holds anything
    feed: Load
    watch: Load | None  # the feeder on more connections
    quiet: Load
    loaded: Load  # the check beside the feeder
    trials: Trials
    feed_trials: Trials | None  # the trials beside the feeder

    def loads(self) -> list[Load]:
        found = [self.ping, self.bare_feed, self.quiet, self.feed, self.watch, self.loaded]
        return [x for x in found if x is not None]


def verdict(passed: bool, valid: bool = True) -> str:
    return ("PASS" if passed else "FAIL") if valid else "INVALID"


def load_line(load: Load, figure: str, target: str, verdict_: str) -> Line:
    m = load.measured
    return Line(load.name, str(load.connections), m.rps, m.p50_ms, m.p99_ms, figure, target,
                verdict_)  # fmt: skip


def trial_lines(name: str, trials: Trials, judged: bool) -> list[Line]:
    out, n = [], len(trials.runs)
    for what, values, limit in (
        ("margin call open (GET)", trials.visible(), VISIBLE_P99_S),
        ("margin call webhook", trials.webhook(), WEBHOOK_P99_S),
    ):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        missed = sum(math.isinf(v) for v in values)
        figure = f"p99 {p99:.3f} s" + (f", {missed} missed" if missed else "")
        target = f"p99 ≤ {limit:g} s" if judged else f"watch (≤ {limit:g} s)"
        out.append(
            Line(f"{what}, {n} trials{name}", "1", math.nan, p50 * 1e3, p99 * 1e3, figure,
                 target, verdict(p99 <= limit) if judged else "—")
        )  # fmt: skip
    return out


def lines(args: argparse.Namespace, r: Results) -> list[Line]:
    ping = r.ping.measured.rps
    feed_ratio = r.feed.measured.rps / ping
    keeps = r.loaded.measured.rps / r.quiet.measured.rps
    out = [load_line(r.ping, "reference", "—", "—")]
    if r.bare_feed is not None:
        out.append(load_line(r.bare_feed, f"{r.bare_feed.measured.rps / ping:.3f}× ping",
                             "watch", "—"))  # fmt: skip
    out += [
        load_line(r.feed, f"{feed_ratio:.3f}× ping", f"≥ {FEED_RATIO:.2f}× ping",
                  verdict(feed_ratio >= FEED_RATIO, r.feed.valid)),
        load_line(r.feed, f"p99 {r.feed.measured.p99_ms:.1f} ms", f"p99 ≤ {FEED_P99_MS:g} ms",
                  verdict(r.feed.measured.p99_ms <= FEED_P99_MS, r.feed.valid)),
    ]  # fmt: skip
    if r.watch is not None:
        out.append(load_line(r.watch, f"{r.watch.measured.rps / ping:.3f}× ping", "watch", "—"))
    out += [
        load_line(r.quiet, f"{r.quiet.measured.rps / ping:.3f}× ping", "reference", "—"),
        load_line(r.loaded, f"{keeps:.2f}× quiet", f"≥ {CHECK_KEEPS:.2f}× quiet",
                  verdict(keeps >= CHECK_KEEPS, r.loaded.valid and r.quiet.valid)),
        load_line(r.loaded, f"p99 {r.loaded.measured.p99_ms:.1f} ms", f"p99 ≤ {CHECK_P99_MS:g} ms",
                  verdict(r.loaded.measured.p99_ms <= CHECK_P99_MS, r.loaded.valid)),
    ]  # fmt: skip
    if r.loaded.feed is not None:
        f = r.loaded.feed
        out.append(Line("  the feeder beside it", str(args.feed_connections), f.rps, f.p50_ms,
                        f.p99_ms, f"{f.rps / ping:.3f}× ping", "watch", "—"))  # fmt: skip
    out += trial_lines("", r.trials, judged=True)
    if r.feed_trials is not None:
        out += trial_lines(", feeder running", r.feed_trials, judged=False)
    return out


def table(rows: list[Line]) -> str:
    head = (
        f"{'row':<48}{'conns':>5}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  {'figure':<17}"
        f"{'target':<18}verdict"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        rps = "—" if math.isnan(r.rps) else f"{r.rps:.0f}"
        out.append(
            f"{r.row:<48}{r.connections:>5}{rps:>8}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}  "
            f"{r.figure:<17}{r.target:<18}{r.verdict}"
        )
    return "\n".join(out)


def cost_lines(loads: list[Load]) -> list[str]:
    out = ["Answers and CPU per request (service / PostgreSQL backends of this database / "
           "redis-server), machine busy:"]  # fmt: skip
    for load in loads:
        m, c = load.measured, load.cpu
        per = 1e3 / m.requests if m.requests else math.nan
        out.append(
            f"  {load.name} @ {load.connections}: {report.describe(m)}; CPU "
            f"{c.service_s * per:.2f} / {c.postgres_s * per:.2f} / {c.redis_s * per:.2f} ms "
            f"({c.service_s / m.duration_s:.0%} / {c.postgres_s / m.duration_s:.0%} / "
            f"{c.redis_s / m.duration_s:.0%} of a core), machine {c.machine_busy:.0%} busy"
        )
        if not load.valid:
            out.append("    INVALID: " + ("not every post answered 200" if load.posts_marks else
                       f"fewer than {report.MIN_ACCEPT_SHARE:.0%} accepted"))  # fmt: skip
        if load.feed is not None:
            out.append(f"    the feeder beside it: {report.describe(load.feed)}")
    return out


def spread(values: Iterable[float], unit: float = 1e3) -> str:
    finite = [v * unit for v in values if not math.isinf(v)]
    if not finite:
        return "none"
    return (
        f"p50 {percentile(finite, 0.5):.0f}, p99 {percentile(finite, 0.99):.0f}, "
        f"max {max(finite):.0f} ms"
    )


def trials_details(name: str, trials: Trials) -> list[str]:
    runs = trials.runs
    statuses = Counter(t.mark_status for t in runs)
    ratios = [t.ratio for t in runs if t.ratio is not None]
    out = [
        f"  {name}:",
        f"    the crossing post (2 marks) answered in {spread(t.post_ms / 1e3 for t in runs)}",
        f"    call open (polled every {POLL_EVERY_S * 1e3:.0f} ms): {spread(trials.visible())}",
        f"    raised_at − send: {spread(t.raised_lag_s for t in runs)}",
        f"    webhook arrived: {spread(trials.webhook())}",
        f"    back to calm (calls resolved, their webhooks in): {spread(t.settle_s for t in runs)}",
        f"    the mark after the crossing post: {dict(statuses)}; the call's ratio "
        + (f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "—"),
    ]
    if trials.warmup is not None:
        w = trials.warmup
        out.append(
            f"    warm-up trial (not counted): open after {w.visible_s * 1e3:.0f} ms, webhook "
            f"after {w.webhook_s * 1e3:.0f} ms"
        )
    if trials.feed is not None:
        f = trials.feed
        out.append(
            f"    the feeder beside them ({MARKS_PER_POST - len(desk.SOURCES)} marks per post, "
            f"{desk.symbol(TARGET_INSTRUMENT)} left out): {f.rps:.0f} posts/s, p50 "
            f"{f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms, {report.describe(f)}"
        )
    return out


def print_report(
    args: argparse.Namespace, info: list[str], min_free: Decimal, target: Target, r: Results,
    profiles: dict[str, str],
) -> None:  # fmt: skip
    log("")
    log("=" * 118)
    log(
        f"Feed benchmark: {args.holders} cross subaccounts × {desk.N_INSTRUMENTS} positions "
        f"(smallest free collateral {min_free:,.0f} USDC) + {TARGET}; {desk.N_INSTRUMENTS} "
        f"perpetuals; one uvicorn worker; {args.duration:g} s per row after {args.warmup:g} s "
        f"of warm-up; stale_after_s {desk.QUIET_STALE_AFTER_S:,} s throughout"
    )
    for line in info:
        log(line)
    log(
        f"feeder: POST /v1/marks of {MARKS_PER_POST} marks ({desk.N_INSTRUMENTS} symbols × "
        f"{len(desk.SOURCES)} sources, prices jittered ±{JITTER:%}, ts = send time), closed loop "
        f"on {args.feed_connections} connection(s); checks: non-reserving, one ~"
        f"{desk.ORDER_NOTIONAL} USDC market leg on a random holder; every holder checked once "
        "before the rows"
    )
    log("")
    log(table(lines(args, r)))
    log("")
    for line in cost_lines(r.loads()):
        log(line)
    log("")
    log(
        f"Margin-call trials: {TARGET} long {target.size} {desk.symbol(TARGET_INSTRUMENT)} at "
        f"{target.base} with {target.usdc} USDC; maintenance margin ratio {target.ratio_base:.2f} "
        f"by hand ({target.ratio_api:.2f} by the API) at {target.base}, "
        f"{target.ratio_crossed:.2f} by hand at {target.crossed} (liquidation at 1.0)"
    )
    for line in trials_details("no feed", r.trials):
        log(line)
    if r.feed_trials is not None:
        for line in trials_details("feeder running", r.feed_trials):
            log(line)
    for when, profile in profiles.items():
        log("")
        log(f"Profile of the service under the feeder alone, {when} ({args.profile_s:g} s):")
        log(profile)


# --- the profile of the feeder row ------------------------------------------------------------

# (label, function names, file fragments), as bench/profile.py's STAGES: inclusive shares.
FEED_STAGES = [
    ("POST /v1/marks, all of it", "post_marks", "app/marketdata/router"),
    ("  TWAP extension", "_extend_twaps", "app/marketdata/service"),
    ("  audit record", "audit_marks|record", "app/marketdata/service|app/audit/service"),
    ("margin-call sweep, all of it", "sweep_forever", "app/risk/margin_calls"),
    ("  resident book view", "current_view", "app/risk/resident"),
    ("  batch evaluation (engine inputs + margin)", "evaluate_subaccounts", "app/risk/batch"),
    ("  circuit breaker", "evaluate", "app/risk/breaker"),
    ("webhook worker", "deliver_forever", "app/risk/webhooks"),
    ("asyncpg, anywhere", "*", "asyncpg/"),
    ("SQLAlchemy, anywhere", "*", "sqlalchemy/"),
    ("numpy, anywhere", "*", "numpy/"),
    ("pydantic, anywhere", "*", "pydantic"),
]


def profile_feed(pid: int, seconds: float, load: Callable[[float], object], name: str) -> str:
    """py-spy of the service while ``load`` runs (``bench/profile.py``), with the feed's own
    stages first. A coroutine's SQLAlchemy work runs on a greenlet whose stack does not show
    the coroutine, so the stages are lower bounds (see "driver code on a greenlet")."""
    outdir = Path(tempfile.gettempdir()) / "feed-profile" / name
    outdir.mkdir(parents=True, exist_ok=True)
    summary = spy.record(pid, seconds, load, outdir)
    folded = outdir / "pretrade.folded"
    if summary.startswith("(") or not folded.exists():
        return summary
    samples = []
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            frames = spy._frames(stack)
            if frames and frames[-1][0] not in spy.IDLE_LEAVES:
                samples.append((frames, int(number)))
    total = sum(count for _, count in samples) or 1
    out = ["Inclusive share of the service's CPU by stage of the feed (lower bounds):"]
    for label, funcs, files in FEED_STAGES:
        hit = sum(count for frames, count in samples if spy._in_stage(frames, funcs, files))
        out.append(f"  {100 * hit / total:5.1f}%  {label}")
    return "\n".join(out) + "\n\n" + summary


# --- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each row")
    parser.add_argument(
        "--quick", action="store_true", help="3-s rows after 1-s warm-ups, 20 + 10 trials"
    )
    parser.add_argument("--holders", type=int, default=2000, help="subaccounts holding the marks")
    parser.add_argument("--trials", type=int, default=50, help="margin-call trials (default 50)")
    parser.add_argument(
        "--feed-trials", type=int, default=20,
        help="margin-call trials beside the feeder, a figure to watch (default 20; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--feed-connections", type=int, default=1, help="the feeder's connections (default 1)"
    )
    parser.add_argument(
        "--watch-connections", type=int, default=WATCH_FEED_CONNECTIONS,
        help="the feeder again on this many connections, a figure to watch (0: not run)",
    )  # fmt: skip
    parser.add_argument(
        "--profile-s", type=float, default=0.0,
        help="py-spy the service for N s of the feeder alone, after the rows (0: none)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
        if "--trials" not in sys.argv:
            args.trials = 20
        if "--feed-trials" not in sys.argv:
            args.feed_trials = 10
    if not desk.N_SUBS <= args.holders <= 10_000:
        parser.error(f"--holders {desk.N_SUBS}–10000 (desk.sanity checks the first {desk.N_SUBS})")
    if args.trials < 1 or args.feed_connections < 1:
        parser.error("--trials ≥ 1, --feed-connections ≥ 1")
    return args


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not on PATH (apt-get install -y wrk): the feeder is a wrk script")
    started = time.monotonic()
    with (
        Receiver() as receiver,
        desk.stores("preflight_feed") as stores,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = server_env(stores.database_url, stores.redis_url, PREFLIGHT_WEBHOOK_URL=receiver.url)
        app_root = imported_app_root(env)
        if Path(app_root).resolve() != ROOT:
            sys.exit(f"the servers would import app from {app_root}, not from {ROOT}")
        with servers(env) as (service, ping):
            assert service.proc is not None
            keys = asyncio.run(
                desk.seed_reference(service.url, ADMIN_KEY, stale_after_s=desk.QUIET_STALE_AFTER_S)
            )
            scripts = write_scripts(Path(tmp), keys.trader, reservation_ttl_s=2)
            scripts["check"] = write_check_script(Path(tmp), keys.trader, args.holders)
            everything = range(desk.N_INSTRUMENTS)
            scripts["marks"] = write_marks_script(Path(tmp), "marks", keys.feeder, everything)
            scripts["marks-others"] = write_marks_script(
                Path(tmp), "marks-others", keys.feeder,
                [i for i in everything if i != TARGET_INSTRUMENT],
            )  # fmt: skip
            database = stores.database_url.rsplit("/", 1)[-1].split("?")[0]
            bench = Bench(args, service.proc.pid, database, scripts)
            info = report.environment(
                ROOT, stores.database_url, stores.redis_url, "wrk -t1 (Lua)", app_root
            )

            log("before anyone holds anything:")
            ping_row = bench.measure("ping (bare FastAPI)", ping.url, "ping", PING_CONNECTIONS)
            bare_feed = bench.measure(
                f"marks, {MARKS_PER_POST}/post, no holders yet", service.url, "marks",
                args.feed_connections,
            )  # fmt: skip
            profiles: dict[str, str] = {}

            def profile(when: str) -> None:
                if args.profile_s > 0:
                    assert service.proc is not None
                    profiles[when] = profile_feed(
                        service.proc.pid, args.profile_s,
                        lambda t: bench.run(service.url, "marks", args.feed_connections, t),
                        when.replace(" ", "-"),
                    )  # fmt: skip

            profile("no holders yet")

            min_free = asyncio.run(
                desk.seed_subaccounts(service.url, ADMIN_KEY, args.holders, concurrency=16)
            )
            desk.Feeder(service.url, keys.feeder, marks_every=1, books_every=1).feed_now()
            target = seed_target(service.url, ADMIN_KEY)  # its ratio read at the desk's marks
            desk.sanity(service.url, keys.trader)
            accepted, took = asyncio.run(prime(service.url, keys.trader, args.holders))
            log(f"every holder checked once ({accepted} accepted) in {took:.1f} s")

            log(f"{args.holders} holders:")
            quiet = bench.measure("check, no feed", service.url, "check", CHECK_CONNECTIONS)
            name = f"marks, {MARKS_PER_POST}/post, {args.holders} holders"
            feed = bench.measure(name, service.url, "marks", args.feed_connections)
            watch = None
            if args.watch_connections:
                watch = bench.measure(name, service.url, "marks", args.watch_connections)
            loaded = bench.measure_under_feed(
                "check, feeder running", service.url, "check", CHECK_CONNECTIONS
            )
            profile(f"{args.holders} holders")

            # The desk's marks again, so the trials start from its prices; the sweeps of the
            # feed's last posts let through.
            desk.Feeder(service.url, keys.feeder, marks_every=1, books_every=1).feed_now()
            time.sleep(1.0)
            log(f"margin-call trials, no feed ({args.trials} after one warm-up):")
            trials = run_trials(service.url, keys, receiver, target, args.trials)
            feed_trials = None
            if args.feed_trials:
                log(f"margin-call trials, feeder running ({args.feed_trials} after one warm-up):")
                beside: list[Measured] = []
                with bench.feeding(service.url, "marks-others", beside):
                    feed_trials = run_trials(service.url, keys, receiver, target, args.feed_trials)
                feed_trials.feed = beside[0]
    results = Results(ping_row, bare_feed, feed, watch, quiet, loaded, trials, feed_trials)
    print_report(args, info, min_free, target, results, profiles)
    log(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
