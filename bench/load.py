"""The pre-trade check at a fixed arrival rate (open loop): what a desk sees when its OMS sends
checks at N per second, whether or not the service keeps up.

    .venv/bin/python bench/load.py [--rate 500] [--duration 60] [--workers 1] [--results FILE]

The desk of ``bench/desk.py`` (200 cross subaccounts × 20 positions over 20 perpetuals with
50-level books, a live feed posting marks every second and books every two), seeded through the
API on a fresh database, served by ``tests/servers.py``. Then a load generator in a child process sends
non-reserving checks (random subaccount, instrument and side, market orders) at exactly
``--rate`` per second for ``--duration`` seconds over up to ``--max-connections`` keep-alive
connections, never waiting for an answer before sending the next request on schedule.

Latency is measured from each request's *scheduled* send time, so a server that falls behind
shows it (no coordinated omission). Every request ends as one of: 200 (accepted or rejected by
the rules), 503 OVERLOADED (shed by admission control, app/core/admission.py), another status,
a timeout (``--timeout`` s), or not sent because every connection was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Run as a script, bench/ is first on the path, where bench/profile.py would shadow the
# standard library's `profile`: the checkout's root takes its place.
if __name__ == "__main__":
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.desk import (
    N_INSTRUMENTS,
    N_SUBS,
    Feeder,
    log,
    order_size,
    sanity,
    seed_reference,
    seed_subaccounts,
    stores,
    sub_id,
    symbol,
)
from bench.drivers import process_cpu_s
from tests.servers import ADMIN_KEY, HOST, ServerProcess, server_env, start_server

PROOF = "7 load"
REASON_CODE = re.compile(rb'"code":"([A-Z_]+)"')
IDLE_REUSE_S = 4.0


@dataclass
class Outcome:
    offered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """Of every request answered 200, from its scheduled send time."""
    accepted: int = 0
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    overloaded: int = 0
    other_status: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    socket_errors: int = 0
    not_sent: int = 0
    late_sends: int = 0
    """Requests the generator itself sent more than 5 ms after their scheduled time."""


def check_requests(key: str, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        i = rng.randrange(N_INSTRUMENTS)
        body = json.dumps(
            {
                "subaccount_id": sub_id(rng.randrange(N_SUBS)),
                "orders": [
                    {
                        "instrument": symbol(i),
                        "side": rng.choice(("buy", "sell")),
                        "size": str(order_size(i)),
                        "type": "market",
                    }
                ],
            },
            separators=(",", ":"),
        ).encode()
        head = (
            f"POST /v1/pretrade/check HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    return status, await reader.readexactly(length)


async def generate(
    port: int, requests: list[bytes], rate: float, duration: float, max_connections: int,
    request_timeout: float,
) -> Outcome:  # fmt: skip
    outcome = Outcome()
    # (reader, writer, last used): uvicorn closes a keep-alive connection idle for 5 s, so one
    # idle for longer than IDLE_REUSE_S is closed here rather than reused (a real client would
    # retry such a send; counting it as an error would blame the server for the client).
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    open_connections = 0
    pending: set[asyncio.Task[None]] = set()

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal open_connections
        while idle and time.perf_counter() - idle[-1][2] > IDLE_REUSE_S:
            idle.pop()[1].close()
            open_connections -= 1
        if idle:
            reader, writer, _ = idle.pop()
            connection = (reader, writer)
        elif open_connections < max_connections:
            open_connections += 1
            try:
                connection = await asyncio.open_connection(HOST, port)
            except OSError:
                open_connections -= 1
                outcome.socket_errors += 1
                return
        else:
            outcome.not_sent += 1
            return
        reader, writer = connection
        try:
            status, body = await asyncio.wait_for(
                _exchange(reader, writer, request), request_timeout
            )
        except TimeoutError:
            outcome.timeouts += 1
            writer.close()
            open_connections -= 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            outcome.socket_errors += 1
            writer.close()
            open_connections -= 1
            return
        idle.append((reader, writer, time.perf_counter()))
        if status == 200:
            outcome.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            if b'"decision":"accept"' in body:
                outcome.accepted += 1
            else:
                outcome.rejected += 1
                for code in set(REASON_CODE.findall(body)):
                    name = code.decode()
                    outcome.reject_reasons[name] = outcome.reject_reasons.get(name, 0) + 1
        elif status == 503 and b'"OVERLOADED"' in body:
            outcome.overloaded += 1
        else:
            outcome.other_status[str(status)] = outcome.other_status.get(str(status), 0) + 1

    total = int(rate * duration)
    start = time.perf_counter() + 0.1
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            outcome.late_sends += 1
        outcome.offered += 1
        task = asyncio.create_task(one(requests[n % len(requests)], scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    for _, writer, _ in idle:
        writer.close()
    return outcome


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def child(args: argparse.Namespace) -> None:
    """The generator process: prints one JSON line with the outcome."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    requests = check_requests(args.key, 2000, seed=20261125)
    outcome = asyncio.run(
        generate(args.port, requests, args.rate, args.duration, args.max_connections, args.timeout)
    )
    print("LOAD " + json.dumps(asdict(outcome)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="checks per second, offered")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--results", help="append the figures as JSON lines (dev.py proof)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with stores() as desk_stores:
        env = server_env(desk_stores.database_url, desk_stores.redis_url)
        server: ServerProcess | None = None
        feeder: Feeder | None = None
        try:
            server = start_server(env, workers=args.workers)
            assert server.proc is not None
            keys = asyncio.run(seed_reference(server.url, ADMIN_KEY, stale_after_s=None))
            asyncio.run(seed_subaccounts(server.url, ADMIN_KEY))
            feeder = Feeder(server.url, keys.feeder, marks_every=1.0, books_every=2.0)
            feeder.feed_now()
            feeder.start()
            sanity(server.url, keys.trader)
            log(
                f"offering {args.rate:g} checks/s for {args.duration:g} s to {args.workers} "
                f"worker(s), live feed running"
            )
            cpu0, t0 = process_cpu_s(server.proc.pid), time.perf_counter()
            generator = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--port",
                    str(server.port),
                    "--key",
                    keys.trader,
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(args.duration),
                    "--max-connections",
                    str(args.max_connections),
                    "--timeout",
                    str(args.timeout),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - t0
            server_cpu = (process_cpu_s(server.proc.pid) - cpu0) / elapsed
            line = next((x for x in generator.stdout.splitlines() if x.startswith("LOAD ")), None)
            if line is None:
                raise RuntimeError(f"load generator failed:\n{generator.stderr[-3000:]}")
            outcome = Outcome(**json.loads(line[5:]))
        finally:
            if feeder is not None:
                feeder.stop()
            if server is not None:
                server.close()

    answered = len(outcome.latencies_ms)
    errors = (
        outcome.overloaded
        + sum(outcome.other_status.values())
        + outcome.timeouts
        + outcome.socket_errors
        + outcome.not_sent
    )
    p50 = percentile(outcome.latencies_ms, 0.50)
    p99 = percentile(outcome.latencies_ms, 0.99)
    rows = [
        ("offered", f"{outcome.offered} checks at {args.rate:g}/s for {args.duration:g} s"),
        ("answered 200", f"{answered} ({answered / args.duration:.0f}/s): "
                         f"{outcome.accepted} accept, {outcome.rejected} reject "
                         f"{outcome.reject_reasons}"),
        ("latency of 200s (from schedule)", f"p50 {p50:.1f} ms, p90 "
         f"{percentile(outcome.latencies_ms, 0.90):.1f} ms, p99 {p99:.1f} ms, max "
         f"{max(outcome.latencies_ms, default=float('nan')):.1f} ms"),
        ("errors", f"{errors} ({errors / max(1, outcome.offered):.1%}): "
                   f"{outcome.overloaded} 503 OVERLOADED, other statuses {outcome.other_status}, "
                   f"{outcome.timeouts} timeouts, {outcome.socket_errors} socket errors, "
                   f"{outcome.not_sent} not sent (all connections busy)"),
        ("server CPU", f"{server_cpu:.0%} of one core ({args.workers} worker(s))"),
        ("generator late sends", f"{outcome.late_sends} (> 5 ms behind schedule)"),
        ("feeder", f"{feeder.posts if feeder else 0} requests, "
                   f"{len(feeder.errors) if feeder else 0} failed"),
    ]  # fmt: skip
    log("")
    log("=" * 100)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        log(f"{name.ljust(width)}  {value}")
    if outcome.latencies_ms:
        log(f"mean latency of 200s: {statistics.fmean(outcome.latencies_ms):.1f} ms")
    if args.results:
        figures = [
            ("offered", f"{args.rate:g}/s × {args.duration:g} s = {outcome.offered}", ""),
            ("answered 200 /s", f"{answered / args.duration:.0f}", f"{args.rate:g}"),
            ("p50 (ms)", f"{p50:.1f}", ""),
            ("p99 (ms)", f"{p99:.1f}", ""),
            ("errors", f"{errors} ({errors / max(1, outcome.offered):.1%})", "0"),
            ("of which 503 OVERLOADED", str(outcome.overloaded), ""),
            ("timeouts / 5xx other", f"{outcome.timeouts} / "
             f"{sum(v for k, v in outcome.other_status.items() if k.startswith('5'))}", "0 / 0"),
        ]  # fmt: skip
        with open(args.results, "a", encoding="utf-8") as out:
            for name, value, target in figures:
                row = {"proof": PROOF, "figure": name, "value": value, "target": target}
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
