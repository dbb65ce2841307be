"""Before/after on a noisy machine: the same rows against two checkouts, alternating.

    .venv/bin/python bench/ab.py /tmp/preflight-before /work/main --rounds 3 --seconds 4

Each round runs, for each checkout in turn, a fresh database and Redis database, that
checkout's service and the bare ping app (both from that checkout: its ``tests/servers.py``
and ``bench/``, which must be this version's — copy them over an older worktree, as
bench/README.md says), the desk seeded, then each row after a 1-s warm-up of the same load. It
prints, per row and run, req/s, the ratio to that run's ping, p50/p99 and the service's CPU per
request. Alternating matters here: this machine's speed drifts by ±30 % from one minute to the
next, so two runs back to back compare the minutes, not the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = ("ping", "check16", "check4", "reserve16")


def one(root: Path, rows: list[str], seconds: float) -> None:
    """Child: serve ``root``'s app and print one JSON line per row."""
    sys.path.insert(0, str(root))
    from bench import desk
    from bench.drivers import Driver, process_cpu_s
    from tests.servers import ADMIN_KEY, server_env, serving, start_server

    with desk.stores() as stores, tempfile.TemporaryDirectory() as tmp:
        env = server_env(stores.database_url, stores.redis_url)
        service = start_server(env)
        try:
            with serving(
                env, app_target="bench.ping_app:app", factory=False, ready_path="/ping"
            ) as ping:
                keys = asyncio.run(
                    desk.seed_reference(
                        service.url, ADMIN_KEY, stale_after_s=desk.QUIET_STALE_AFTER_S
                    )
                )
                asyncio.run(desk.seed_subaccounts(service.url, ADMIN_KEY))
                desk.Feeder(service.url, keys.feeder, marks_every=1, books_every=1).feed_now()
                driver = Driver(Path(tmp), keys.trader, use_wrk=True, reservation_ttl_s=2)
                for row in rows:
                    kind = row.rstrip("0123456789")
                    connections = int(row[len(kind) :] or 16)
                    server = ping if kind == "ping" else service
                    assert server.proc is not None
                    driver.run(server.url, kind, connections, 1.0)
                    cpu0 = process_cpu_s(server.proc.pid)
                    measured = driver.run(server.url, kind, connections, seconds)
                    cpu = process_cpu_s(server.proc.pid) - cpu0
                    print(
                        json.dumps(
                            {
                                "row": row,
                                "rps": measured.rps,
                                "p50": measured.p50_ms,
                                "p99": measured.p99_ms,
                                "cpu_ms": cpu / max(1, measured.requests) * 1e3,
                                "non200": measured.non200,
                            }
                        ),
                        flush=True,
                    )
        finally:
            service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"default {','.join(ROWS)}")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = args.rows.split(",")
    if args.one is not None:
        one(args.one, rows, args.seconds)
        return
    if "ping" not in rows:
        rows.insert(0, "ping")
    results: dict[Path, list[dict[str, dict[str, float]]]] = {c: [] for c in args.checkouts}
    for round_ in range(args.rounds):
        for checkout in args.checkouts:
            out = subprocess.run(
                [sys.executable, str(checkout / "bench" / "ab.py"), str(checkout), "--one",
                 str(checkout.resolve()), "--rows", ",".join(rows), "--seconds",
                 str(args.seconds)],
                capture_output=True, text=True, check=True, env=os.environ,
            )  # fmt: skip
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            run = {r["row"]: r for r in map(json.loads, lines)}
            results[checkout].append(run)
            ping = run["ping"]["rps"]
            print(f"round {round_ + 1}, {checkout}:")
            for row, r in run.items():
                print(
                    f"  {row:<10} {r['rps']:8.0f}/s  × ping {r['rps'] / ping:6.3f}  "
                    f"p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
                    f"CPU {r['cpu_ms']:.3f} ms/request  {r['non200'] or ''}",
                    flush=True,
                )
    print("\nbest of the rounds (× ping of the same run; CPU per request, lowest):")
    for row in rows:
        line = [f"  {row:<10}"]
        for checkout in args.checkouts:
            runs = results[checkout]
            best = max(r[row]["rps"] / r["ping"]["rps"] for r in runs)
            cpu = min(r[row]["cpu_ms"] for r in runs)
            line.append(f"{checkout.name}: × {best:.3f}, {cpu:.3f} ms")
        print("   ".join(line))


if __name__ == "__main__":
    main()
