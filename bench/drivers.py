"""Load generators for the pre-trade benchmark, each in a process of its own (the bench's feeder
threads never share its interpreter):

- ``wrk -t1`` with a Lua script per kind of request: ``ping`` / ``healthz`` are static GETs;
  ``check`` / ``reserve`` build each request (a random subaccount of the desk, one market leg
  of ~200 USDC on a random instrument; ``reserve`` adds ``reserve: true``, a TTL and a
  ``client_order_id`` unique per request: a per-invocation random prefix, the thread and a
  counter) and count every answer's decision and reason codes in a ``response`` hook. ``done``
  prints wrk's latency distribution and the counts as one JSON line.
- ``python -m bench.drivers drive …``: the asyncio fallback when wrk is missing (raw HTTP/1.1 on
  keep-alive connections, closed loop like wrk, the same JSON line). It is slower than wrk, so
  on a small machine it caps the figures of the cheap endpoints.
- ``python -m bench.drivers race …``: N reserving checks at once over N pre-opened connections
  spread across several servers, timed from the first send to the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from bench.desk import N_INSTRUMENTS, N_SUBS, order_size, sub_id, symbol

ROOT = Path(__file__).resolve().parents[1]
CHECK_PATH = "/v1/pretrade/check"
STATIC_PATHS = {"ping": "/ping", "healthz": "/healthz"}
KINDS = ("ping", "healthz", "check", "reserve")
REQUEST_TIMEOUT_S = 10
REASON_CODE = re.compile(rb'"code":"([A-Z_]+)"')


@dataclass
class Measured:
    """What a driver saw in one run: wrk's figures, and the answers counted."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    accepted: int = 0  # 200 with "decision":"accept" (static kinds: every 2xx)
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason codes of the rejects
    non200: dict[str, int] = field(default_factory=dict)  # "503 OVERLOADED": count
    socket_errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def accept_share(self) -> float:
        answered = self.accepted + self.rejected + sum(self.non200.values())
        return self.accepted / answered if answered else math.nan


# --- wrk -------------------------------------------------------------------------------------

_LUA_COMMON = r"""
local function encode(counts)
  local parts = {}
  for name, count in pairs(counts) do
    parts[#parts + 1] = string.format('"%s":%d', name, count)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function merge(into, counts)
  for name, count in pairs(counts or {}) do into[name] = (into[name] or 0) + count end
end

function done(summary, latency, requests)
  local accepted, rejected, reasons, non200 = 0, 0, {}, {}
  for _, t in ipairs(threads) do
    accepted = accepted + (t:get("accepted") or 0)
    rejected = rejected + (t:get("rejected") or 0)
    merge(reasons, t:get("reasons"))
    merge(non200, t:get("non200"))
  end
  local e = summary.errors
  if static then
    accepted = summary.requests - e.status
    if e.status > 0 then non200["non-2xx"] = e.status end
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.6f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,' ..
    '"max_ms":%.3f,"accepted":%d,"rejected":%d,"reasons":%s,"non200":%s,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    accepted, rejected, encode(reasons), encode(non200),
    e.connect + e.read + e.write + e.timeout))
end
"""

# A static GET: wrk builds it once; non-2xx answers are counted by wrk itself.
_LUA_STATIC = (
    r"""
threads, static = {}, true
function setup(thread) table.insert(threads, thread) end
"""
    + _LUA_COMMON
)

# A check per request, built here; every answer classified in `response`.
_LUA_CHECK = Template(
    r"""
threads, static = {}, false
local reserve = $reserve
local auth = "Bearer $key"
local n_subs = $n_subs
local sizes = {$sizes}
local ttl = $ttl
local prefix, counter = "", 0
accepted, rejected, reasons, non200 = 0, 0, {}, {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  -- args: a random prefix and seed per wrk invocation, so the warm-up's ids never come back.
  prefix = (args[1] or "run") .. "-" .. tid .. "-"
  math.randomseed((tonumber(args[2]) or 1) + tid)
  wrk.method = "POST"
  wrk.path = "$path"
  wrk.headers["Authorization"] = auth
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local i = math.random(1, #sizes)
  local side = (math.random(2) == 1) and "buy" or "sell"
  local head, tail = "", ""
  if reserve then
    counter = counter + 1
    head = '"client_order_id":"' .. prefix .. counter .. '",'
    tail = ',"reserve":true,"reservation_ttl_s":' .. ttl
  end
  local body = string.format(
    '{"subaccount_id":"sub-%04d","orders":[{%s"instrument":"P%02d-PERP","side":"%s",' ..
    '"size":"%s","type":"market"}]%s}',
    math.random(0, n_subs - 1), head, i - 1, side, sizes[i], tail)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    local key = tostring(status) .. " " .. (string.match(body, '"code":"([A-Z_]+)"') or "")
    non200[key] = (non200[key] or 0) + 1
  elseif string.find(body, '"decision":"accept"', 1, true) then
    accepted = accepted + 1
  else
    rejected = rejected + 1
    for code in string.gmatch(body, '"code":"([A-Z_]+)"') do
      reasons[code] = (reasons[code] or 0) + 1
    end
  end
end
"""
    + _LUA_COMMON
)


def write_scripts(workdir: Path, trader_key: str, reservation_ttl_s: int) -> dict[str, Path]:
    sizes = ", ".join(f'"{order_size(i)}"' for i in range(N_INSTRUMENTS))
    scripts = {}
    for kind in KINDS:
        path = workdir / f"{kind}.lua"
        if kind in STATIC_PATHS:
            path.write_text(_LUA_STATIC)
        else:
            path.write_text(
                _LUA_CHECK.substitute(
                    reserve="true" if kind == "reserve" else "false",
                    key=trader_key,
                    n_subs=N_SUBS,
                    sizes=sizes,
                    ttl=reservation_ttl_s,
                    path=CHECK_PATH,
                )
            )
        scripts[kind] = path
    return scripts


def run_wrk(url: str, kind: str, script: Path, connections: int, seconds: float) -> Measured:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not on PATH (apt-get install -y wrk)")
    target = url + STATIC_PATHS.get(kind, "/")
    argv = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s",
        "--timeout", f"{REQUEST_TIMEOUT_S}s", "-s", str(script), target,
        "--", "w" + secrets.token_hex(4), str(random.randrange(1 << 30)),
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return _bench_line(out, "wrk")


def _bench_line(out: subprocess.CompletedProcess[str], what: str) -> Measured:
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return Measured(**json.loads(line[6:]))


# --- raw HTTP/1.1 (the fallback driver and the race) -----------------------------------------


def check_body(
    subaccount: str,
    instrument: int,
    side: str,
    size: str,
    *,
    client_order_id: str | None = None,
    reservation_ttl_s: int | None = None,
) -> bytes:
    order: dict[str, Any] = {}
    if client_order_id is not None:
        order["client_order_id"] = client_order_id
    order.update(instrument=symbol(instrument), side=side, size=size, type="market")
    body: dict[str, Any] = {"subaccount_id": subaccount, "orders": [order]}
    if reservation_ttl_s is not None:
        body.update(reserve=True, reservation_ttl_s=reservation_ttl_s)
    return json.dumps(body, separators=(",", ":")).encode()


def http_request(host: str, method: str, path: str, key: str | None, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One request on a keep-alive connection; uvicorn answers with a Content-Length."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    return status, await reader.readexactly(length)


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    non200: Counter[str] = field(default_factory=Counter)
    socket_errors: int = 0

    def count(self, kind: str, status: int, body: bytes) -> None:
        if status != 200:
            match = REASON_CODE.search(body)
            self.non200[f"{status} {match[1].decode() if match else ''}"] += 1
        elif kind in STATIC_PATHS or b'"decision":"accept"' in body:
            self.accepted += 1
        else:
            self.rejected += 1
            self.reasons.update(code.decode() for code in REASON_CODE.findall(body))


async def _drive(
    kind: str, url: str, key: str, connections: int, seconds: float, reservation_ttl_s: int
) -> Measured:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prefix, tally = "d" + secrets.token_hex(4), _Tally()

    def next_request(rng: random.Random, worker: int, n: int) -> bytes:
        if kind in STATIC_PATHS:
            return http_request(host, "GET", STATIC_PATHS[kind], None)
        i = rng.randrange(N_INSTRUMENTS)
        reserving = kind == "reserve"
        body = check_body(
            sub_id(rng.randrange(N_SUBS)), i, rng.choice(("buy", "sell")), str(order_size(i)),
            client_order_id=f"{prefix}-{worker}-{n}" if reserving else None,
            reservation_ttl_s=reservation_ttl_s if reserving else None,
        )  # fmt: skip
        return http_request(host, "POST", CHECK_PATH, key, body)

    async def worker(index: int, stop_at: float) -> None:
        rng = random.Random(secrets.randbits(32))
        reader, writer = await asyncio.open_connection(host, port)
        n = 0
        try:
            while time.perf_counter() < stop_at:
                n += 1
                request = next_request(rng, index, n)
                t0 = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(
                        exchange(reader, writer, request), REQUEST_TIMEOUT_S
                    )
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                    tally.socket_errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                tally.latencies.append(time.perf_counter() - t0)
                tally.count(kind, status, body)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w, t0 + seconds) for w in range(connections)))
    elapsed = time.perf_counter() - t0
    ordered = sorted(tally.latencies)

    def ms(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else 0.0

    return Measured(
        requests=len(ordered), duration_s=elapsed, p50_ms=ms(0.5), p90_ms=ms(0.9),
        p99_ms=ms(0.99), max_ms=ms(1.0), accepted=tally.accepted, rejected=tally.rejected,
        reasons=dict(tally.reasons), non200=dict(tally.non200), socket_errors=tally.socket_errors,
    )  # fmt: skip


def run_fallback(
    url: str, kind: str, key: str, connections: int, seconds: float, reservation_ttl_s: int
) -> Measured:
    argv = [
        sys.executable, "-m", "bench.drivers", "drive",
        kind, url, key, str(connections), str(seconds), str(reservation_ttl_s),
    ]  # fmt: skip
    out = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    return _bench_line(out, "fallback driver")


class Driver:
    """Runs one kind of load against a server: wrk when it is installed, else the fallback."""

    def __init__(
        self, workdir: Path, trader_key: str, *, use_wrk: bool, reservation_ttl_s: int
    ) -> None:
        self.trader_key, self.use_wrk, self.ttl = trader_key, use_wrk, reservation_ttl_s
        self.scripts = write_scripts(workdir, trader_key, reservation_ttl_s)

    @property
    def name(self) -> str:
        return "wrk -t1 (Lua)" if self.use_wrk else "asyncio fallback driver (child process)"

    def run(self, url: str, kind: str, connections: int, seconds: float) -> Measured:
        if self.use_wrk:
            return run_wrk(url, kind, self.scripts[kind], connections, seconds)
        return run_fallback(url, kind, self.trader_key, connections, seconds, self.ttl)


# --- CPU accounting --------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process and its children (the workers of ``--workers N``)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# --- the race --------------------------------------------------------------------------------


@dataclass
class RaceAnswer:
    server: int
    status: int
    accepted: bool
    reasons: list[str]
    latency_s: float


@dataclass
class Race:
    wall_s: float  # first send to last answer
    answers: list[RaceAnswer]

    @property
    def accepted(self) -> int:
        return sum(a.accepted for a in self.answers)


async def _race(urls: list[str], key: str, bodies: list[bytes]) -> Race:
    """One connection per body, round-robin over ``urls``, each opened and used once (a GET
    /healthz) before the start, so the race times the checks, not TCP handshakes."""
    targets = [urlsplit(urls[n % len(urls)]) for n in range(len(bodies))]
    connections = await asyncio.gather(
        *(asyncio.open_connection(t.hostname, t.port) for t in targets)
    )
    for (reader, writer), target in zip(connections, targets, strict=True):
        status, _ = await exchange(
            reader, writer, http_request(target.netloc, "GET", "/healthz", None)
        )
        if status != 200:
            raise RuntimeError(f"{target.netloc}/healthz answered {status}")
    start = asyncio.Event()
    sent: list[float] = []

    async def one(n: int) -> tuple[RaceAnswer, float]:
        (reader, writer), target = connections[n], targets[n]
        request = http_request(target.netloc, "POST", CHECK_PATH, key, bodies[n])
        await start.wait()
        t0 = time.perf_counter()
        sent.append(t0)
        status, body = await exchange(reader, writer, request)
        t1 = time.perf_counter()
        writer.close()
        answer = RaceAnswer(
            server=n % len(urls), status=status,
            accepted=status == 200 and b'"decision":"accept"' in body,
            reasons=[code.decode() for code in REASON_CODE.findall(body)], latency_s=t1 - t0,
        )  # fmt: skip
        return answer, t1

    tasks = [asyncio.create_task(one(n)) for n in range(len(bodies))]
    await asyncio.sleep(0.05)  # every task is waiting at the barrier
    start.set()
    done = await asyncio.gather(*tasks)
    return Race(max(t1 for _, t1 in done) - min(sent), [answer for answer, _ in done])


def run_race(urls: list[str], key: str, bodies: list[bytes]) -> Race:
    spec = json.dumps({"urls": urls, "key": key, "bodies": [b.decode() for b in bodies]})
    out = subprocess.run(
        [sys.executable, "-m", "bench.drivers", "race"], input=spec, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("RACE ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"race driver failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line[5:])
    return Race(raw["wall_s"], [RaceAnswer(**a) for a in raw["answers"]])


def _child() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    parser = argparse.ArgumentParser(prog="python -m bench.drivers")
    commands = parser.add_subparsers(dest="command", required=True)
    drive = commands.add_parser("drive")
    drive.add_argument("kind", choices=KINDS)
    drive.add_argument("url")
    drive.add_argument("key")
    drive.add_argument("connections", type=int)
    drive.add_argument("seconds", type=float)
    drive.add_argument("reservation_ttl_s", type=int)
    commands.add_parser("race", help="a JSON spec on stdin: urls, key, bodies")
    args = parser.parse_args()
    if args.command == "drive":
        measured = asyncio.run(
            _drive(
                args.kind,
                args.url,
                args.key,
                args.connections,
                args.seconds,
                args.reservation_ttl_s,
            )
        )
        print("BENCH " + json.dumps(asdict(measured)), flush=True)
    else:
        spec = json.loads(sys.stdin.read())
        race = asyncio.run(_race(spec["urls"], spec["key"], [b.encode() for b in spec["bodies"]]))
        print("RACE " + json.dumps(asdict(race)), flush=True)


if __name__ == "__main__":
    _child()
