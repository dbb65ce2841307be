"""The pre-trade check at desk speed, against the framework's own ceiling, in one run:

    .venv/bin/python bench/pretrade.py [--duration 10] [--quick] [--feed both|quiet|live]
                                       [--profile-s 10] [--driver auto|wrk|fallback]

A fresh database and Redis database (found like the tests), the service (one uvicorn worker,
``tests/servers.py``) and a bare FastAPI ``/ping`` app (``bench/ping_app.py``) on the same
command line; the desk of ``bench/desk.py`` seeded through the API. Then, per feed (quiet:
marks and books posted once, the instruments' staleness raised so they stay fresh; live: marks
every 0.25 s and books every 0.5 s during every row), with ``wrk -t1`` (``bench/drivers.py``)
for ``--duration`` s after a ``--warmup``:

  ping          bare /ping at 16 connections: the reference of every ratio (the quiet one)
  healthz       the service's /healthz at 16 connections
  check         non-reserving check at 16 connections: ≥ 0.10 × ping
  check         the same at 4 connections: p99 ≤ 5 ms
  reserve       reserving check (unique client_order_id, TTL 2 s) at 16 connections: ≥ 0.05 × ping
  race          64 identical reserving checks at once on one fresh subaccount, over two server
                processes: ≤ 0.5 s from the first send to the last answer, and exactly the
                number that fits accepted (the oracle: the same 64 sent one by one to an
                identically funded subaccount; the margin formula by hand as a cross-check)
  2 workers     non-reserving check at 16 connections on ``--workers 2`` (a figure to watch)

Every row counts its answers; a check row with fewer than 95 % accepted is INVALID, not a
measurement. ``--profile-s N`` adds a py-spy profile of the non-reserving load
(``bench/profile.py``). Everything started is stopped, the database dropped, Redis flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

# Run as a script, bench/ is first on the path, where bench/profile.py would shadow the
# standard library's `profile`: this checkout's root takes its place (and `app` is its own).
if __name__ == "__main__":
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench import desk, report
from bench import profile as spy
from bench.desk import log
from bench.drivers import Driver, check_body, machine_jiffies, process_cpu_s, run_race
from bench.report import RaceOutcome, Row
from tests.servers import ADMIN_KEY, ServerProcess, server_env, serving, start_server

ROOT = Path(__file__).resolve().parents[1]
RESERVATION_TTL_S = 2
LOAD_CONNECTIONS = 16
LATENCY_CONNECTIONS = 4
RACE_INSTRUMENT = 10
RACE_NOTIONAL = Decimal(2000)  # per order; 64 of them stay in the first margin tier
RACE_RESERVATION_TTL_S = 60  # outlives the race and its oracle
SERVER_LOG_TAIL = 1500
# Each of two workers gets half of one worker's connections (a pool of 10, not 20, plus as many
# overflow): the row asks PostgreSQL (max_connections 100, shared with the idle one-worker
# service and any test run) for no more than one worker does. The in-flight cap stays at its
# default: a worker's in-flight count includes work after the answer, so 16 connections can
# hold more than 16 in flight, and a lower cap sheds checks.
TWO_WORKER_BUDGET = {"PREFLIGHT_DB_POOL_SIZE": "10"}


# --- the measurements ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], driver: Driver) -> None:
        self.args, self.env, self.driver = args, env, driver
        self.feeder: desk.Feeder | None = None

    def measure(self, server: ServerProcess, kind: str, row: Row) -> Row:
        args = self.args
        if args.warmup > 0:
            self.driver.run(server.url, kind, row.connections, args.warmup)
        if self.feeder is not None:
            self.feeder.take_latency()
        assert server.proc is not None
        cpu0, (busy0, total0) = process_cpu_s(server.proc.pid), machine_jiffies()
        measured = self.driver.run(server.url, kind, row.connections, args.duration)
        cpu1, (busy1, total1) = process_cpu_s(server.proc.pid), machine_jiffies()
        row.measured = measured
        row.cpu_ms = (cpu1 - cpu0) / measured.requests * 1e3 if measured.requests else math.nan
        row.cpu_share = (cpu1 - cpu0) / measured.duration_s if measured.duration_s else math.nan
        row.machine_busy = (busy1 - busy0) / max(1.0, total1 - total0)
        if self.feeder is not None and row.feed == "live":
            row.feed_latency = self.feeder.take_latency()
        if measured.socket_errors or any(
            status[0] == "5" and not status.startswith("503") for status in measured.non200
        ):
            row.server_log = server.output()[-SERVER_LOG_TAIL:]
        log(
            f"  {row.feed:<5} {row.name:<27} @ {row.connections:>2}: {measured.rps:7.0f} req/s, "
            f"p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms, {report.describe(measured)}"
        )
        return row

    def race(self, service: ServerProcess, trader_key: str, feed: str) -> Row:
        """The oracle first (one by one on its own subaccount), then the race on another."""
        args, i = self.args, RACE_INSTRUMENT
        size = desk.order_size(i, RACE_NOTIONAL)
        usdc = (race_cost(i, size) * (Decimal(args.race_fit) + Decimal("0.5"))).quantize(desk.TICK)
        tag = f"{feed}-{secrets.token_hex(3)}"
        racer, oracle = f"race-{tag}", f"oracle-{tag}"
        for subaccount in (racer, oracle):
            desk.fund_subaccount(service.url, ADMIN_KEY, subaccount, usdc)

        def bodies(subaccount: str) -> list[bytes]:
            return [
                check_body(
                    subaccount,
                    i,
                    "buy",
                    str(size),
                    client_order_id=f"{subaccount}-{n}",
                    reservation_ttl_s=RACE_RESERVATION_TTL_S,
                )
                for n in range(args.race_orders)
            ]

        headers = {"Authorization": f"Bearer {trader_key}", "Content-Type": "application/json"}
        decisions = []
        with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
            for body in bodies(oracle):
                response = client.post("/v1/pretrade/check", content=body)
                decisions.append(
                    response.status_code == 200 and response.json()["decision"] == "accept"
                )
        fit = sum(decisions)
        in_order = decisions == [True] * fit + [False] * (len(decisions) - fit)
        with serving(self.env) as second:
            warm = check_body(racer, i, "buy", str(size))  # non-reserving: changes nothing
            for url in (service.url, second.url):
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                    for _ in range(5):
                        client.post("/v1/pretrade/check", content=warm).raise_for_status()
            race = run_race([service.url, second.url], trader_key, bodies(racer))
            failed = {a.server for a in race.answers if a.status >= 500 and a.status != 503}
            server_log = "\n".join(
                f"[{report.PROCESS_NAMES[n]}]\n{server.output()[-SERVER_LOG_TAIL:]}"
                for n, server in enumerate((service, second))
                if n in failed
            )
        orders = f"{RACE_NOTIONAL} USDC buys of {desk.symbol(i)}, TTL {RACE_RESERVATION_TTL_S} s"
        by_hand = fit_by_hand(i, size, usdc, args.race_orders)
        outcome = RaceOutcome(race, fit, by_hand, in_order, usdc, orders)
        row = Row(
            "race",
            f"race: {args.race_orders} reserving, 2 procs",
            feed,
            args.race_orders,
            race=outcome,
            server_log=server_log,
        )
        log(
            f"  {feed:<5} race: {race.accepted} of {args.race_orders} accepted in "
            f"{race.wall_s * 1e3:.0f} ms (fits: {fit} by the oracle, {outcome.fit_by_hand} by hand)"
        )
        return row

    def phase(
        self, feed: str, service: ServerProcess, ping: ServerProcess, trader_key: str
    ) -> list[Row]:
        rows = [
            self.measure(ping, "ping", Row("ping", "ping (bare FastAPI)", feed, LOAD_CONNECTIONS)),
            self.measure(service, "healthz", Row("healthz", "/healthz", feed, LOAD_CONNECTIONS)),
            self.measure(service, "check", Row("check", "check", feed, LOAD_CONNECTIONS)),
            self.measure(service, "check", Row("latency", "check", feed, LATENCY_CONNECTIONS)),
            self.measure(
                service,
                "reserve",
                Row(
                    "reserve",
                    f"check, reserving (TTL {RESERVATION_TTL_S} s)",
                    feed,
                    LOAD_CONNECTIONS,
                ),
            ),
            self.race(service, trader_key, feed),
        ]
        with serving({**self.env, **TWO_WORKER_BUDGET}, workers=2) as two:
            row = Row("workers", "check, 2 workers", feed, LOAD_CONNECTIONS)
            rows.append(self.measure(two, "check", row))
        return rows


def race_cost(i: int, size: Decimal) -> Decimal:
    """What one filled buy of ``size`` at the best ask takes from free collateral, in the first
    margin tier: the fee, the loss to the mark, and initial margin on the notional at the mark."""
    ask, mark = desk.best_ask(i), desk.PRICES[i]
    return size * ask * desk.TAKER_FEE + size * (ask - mark) + desk.FIRST_TIER_IMF * size * mark


def fit_by_hand(i: int, size: Decimal, usdc: Decimal, orders: int) -> int:
    """How many of ``orders`` identical buys fit, by /work/shared/spec/margin.md (cross mode):
    F = E − IM ≥ 0 after each, with E rounded down and IM up to 6 dp. Every check walks the
    visible book on its own (a reservation takes no depth) and the order is smaller than the
    first level, so each fills at the best ask, and every reservation counts as that fill."""
    ask, mark, places = desk.best_ask(i), desk.PRICES[i], Decimal("0.000001")
    assert size <= desk.level_size(i)
    for n in range(1, orders + 1):
        q = size * n
        equity = usdc - n * (size * ask * desk.TAKER_FEE) + q * (mark - ask)
        initial = desk.FIRST_TIER_IMF * q * mark
        assert q * mark < 1_000_000  # the first tier
        if equity.quantize(places, ROUND_FLOOR) - initial.quantize(places, ROUND_CEILING) < 0:
            return n - 1
    return orders


def imported_app_root(env: dict[str, str]) -> str:
    """Where a server on this command line imports ``app`` from, as its own interpreter says
    (a server started with PYTHONVERBOSE logs the file of every import)."""
    with serving({**env, "PYTHONVERBOSE": "1"}) as probe:
        probe.log.seek(0)
        text = probe.log.read().decode(errors="replace")
    match = re.search(r"(/\S+?)/app/main\.py\b", text)
    if match is None:
        raise RuntimeError("could not tell where the server imported app.main from")
    return match[1]


# --- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each row")
    parser.add_argument("--quick", action="store_true", help="3-s rows after 1-s warm-ups")
    parser.add_argument("--feed", choices=["both", "quiet", "live"], default="both")
    parser.add_argument(
        "--marks-every", type=float, default=0.25, help="live feed: seconds between mark posts"
    )
    parser.add_argument(
        "--books-every", type=float, default=0.5, help="live feed: seconds between book updates"
    )
    parser.add_argument("--race-orders", type=int, default=64)
    parser.add_argument("--race-fit", type=int, default=30, help="orders the race's funding fits")
    parser.add_argument(
        "--profile-s", type=float, default=0.0, help="py-spy the non-reserving load for N s"
    )
    parser.add_argument("--profile-feed", choices=["quiet", "live"], default="live")
    parser.add_argument("--driver", choices=["auto", "wrk", "fallback"], default="auto")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    if not 0 < args.marks_every <= 2 or not 0 < args.books_every <= 2:
        parser.error("the live feed must post marks and books at least every 2 s (stale after 5 s)")
    if args.feed != "both" and args.profile_s:
        args.profile_feed = args.feed
    return args


@contextlib.contextmanager
def servers(env: dict[str, str]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The service (one worker) and the bare /ping app, on the same uvicorn command line."""
    service = start_server(env)
    try:
        with serving(
            env, app_target="bench.ping_app:app", factory=False, ready_path="/ping"
        ) as ping:
            yield service, ping
    except BaseException:
        log(f"--- the service's output (tail) ---\n{service.output()}\n---")
        raise
    finally:
        service.close()


def main() -> None:
    args = parse_args()
    use_wrk = args.driver == "wrk" or (args.driver == "auto" and shutil.which("wrk") is not None)
    if args.driver == "wrk" and not use_wrk:
        sys.exit("wrk not on PATH: apt-get install -y wrk")
    feeds = ["quiet", "live"] if args.feed == "both" else [args.feed]
    started = time.monotonic()
    with desk.stores() as stores, tempfile.TemporaryDirectory() as tmp:
        env = server_env(stores.database_url, stores.redis_url)
        app_root = imported_app_root(env)
        if Path(app_root).resolve() != ROOT:
            sys.exit(f"the servers would import app from {app_root}, not from {ROOT}")
        with servers(env) as (service, ping):
            keys = asyncio.run(
                desk.seed_reference(
                    service.url,
                    ADMIN_KEY,
                    stale_after_s=desk.QUIET_STALE_AFTER_S if feeds[0] == "quiet" else None,
                )
            )
            min_free = asyncio.run(desk.seed_subaccounts(service.url, ADMIN_KEY))
            feeder = desk.Feeder(
                service.url, keys.feeder, marks_every=args.marks_every, books_every=args.books_every
            )
            feeder.feed_now()
            desk.sanity(service.url, keys.trader)
            driver = Driver(
                Path(tmp), keys.trader, use_wrk=use_wrk, reservation_ttl_s=RESERVATION_TTL_S
            )
            info = report.environment(
                ROOT, stores.database_url, stores.redis_url, driver.name, app_root
            )
            bench, rows, profile_out = Bench(args, env, driver), [], ""
            try:
                for feed in feeds:
                    if feed == "live":
                        feeder.start()
                        bench.feeder = feeder
                        desk.set_staleness(service.url, ADMIN_KEY, None)  # the default, 5 s
                        time.sleep(2)
                        desk.sanity(service.url, keys.trader)
                    log(f"feed {feed}:")
                    rows += bench.phase(feed, service, ping, keys.trader)
                    if args.profile_s > 0 and feed == args.profile_feed:
                        assert service.proc is not None
                        profile_out = spy.record(
                            service.proc.pid, args.profile_s,
                            lambda s: driver.run(service.url, "check", LOAD_CONNECTIONS, s),
                            Path(tempfile.gettempdir()),
                        )  # fmt: skip
            finally:
                feeder.stop()
    report.judge(rows)
    print_report(args, feeds, info, min_free, rows, profile_out)
    if feeder.errors:
        log(f"feeder: {len(feeder.errors)} failed requests, e.g. {feeder.errors[:3]}")
    log(f"total {time.monotonic() - started:.0f} s")


def print_report(
    args: argparse.Namespace, feeds: list[str], info: list[str], min_free: Decimal,
    rows: list[Row], profile_out: str,
) -> None:  # fmt: skip
    feed_text = {
        "quiet": "quiet = marks and books posted once, instruments' stale_after_s "
        f"{desk.QUIET_STALE_AFTER_S} s",
        "live": f"live = marks (2 sources × 20) every {args.marks_every:g} s and the 20 books "
        f"every {args.books_every:g} s, on their own connections, stale_after_s 5 s",
    }
    hold = max(race_cost(i, desk.order_size(i)) for i in range(desk.N_INSTRUMENTS))
    log("")
    log("=" * 110)
    log(
        f"Pre-trade benchmark: {desk.N_SUBS} cross subaccounts × {desk.N_INSTRUMENTS} positions, "
        f"{desk.N_INSTRUMENTS} perpetuals with {desk.BOOK_LEVELS}-level books; one uvicorn worker "
        f"unless said; {args.duration:g} s per row after {args.warmup:g} s of warm-up"
    )
    for line in [*info, *(feed_text[feed] for feed in feeds)]:
        log(line)
    log(
        f"desk: smallest free collateral {min_free:,.0f} USDC; a {desk.ORDER_NOTIONAL} USDC "
        f"reservation holds at most {hold:.2f} USDC, for {RESERVATION_TTL_S} s"
    )
    log("× ping: against the quiet-feed ping; × healthz: against the same feed's /healthz")
    log("")
    log(report.table(rows))
    log("")
    for line in report.details(rows):
        log(line)
    for r in rows:
        if r.role == "reserve" and r.measured:
            live = r.measured.rps * RESERVATION_TTL_S / desk.N_SUBS
            log(
                f"  {r.feed} reserving row: ~{live:.1f} live reservations per subaccount on "
                f"average ({r.measured.rps:.0f}/s × {RESERVATION_TTL_S} s / {desk.N_SUBS}), "
                f"holding ~{live * float(hold):.0f} USDC of ≥ {min_free:,.0f} free"
            )
    if profile_out:
        log("")
        log(
            f"Profile of the service under non-reserving checks ({LOAD_CONNECTIONS} connections, "
            f"{args.profile_s:g} s, feed {args.profile_feed}):"
        )
        log(profile_out)


if __name__ == "__main__":
    main()
