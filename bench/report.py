"""The pre-trade benchmark's report: the rows it measured, their verdicts against the targets of
issue 10, the table, the details under it, and the environment it ran in."""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from bench.drivers import Measured, Race
from tests.services import asyncpg_dsn

MIN_ACCEPT_SHARE = 0.95  # below it, a row measures rejects, not the check
PROCESS_NAMES = ("the service", "second process")  # of the race, in the order of its URLs

Role = Literal["ping", "healthz", "check", "latency", "reserve", "race", "workers"]
TARGETS: dict[Role, str] = {
    "ping": "reference",
    "healthz": "reference",
    "check": "≥ 0.10× ping",
    "latency": "p99 ≤ 5 ms",
    "reserve": "≥ 0.05× ping",
    "race": "≤ 0.5 s, = fit",
    "workers": "watch",
}


@dataclass
class RaceOutcome:
    race: Race
    fit_oracle: int  # accepted when the same orders are sent one by one
    fit_by_hand: int  # from the margin formula
    oracle_in_order: bool  # the oracle accepted a prefix, then rejected the rest
    usdc: Decimal  # each subaccount's funding
    orders: str  # what the orders were, for the details


@dataclass
class Row:
    role: Role
    name: str
    feed: str
    connections: int
    measured: Measured | None = None
    race: RaceOutcome | None = None
    ratio_ping: float = math.nan
    ratio_healthz: float = math.nan
    verdict: str = ""
    cpu_ms: float = math.nan  # server CPU per request
    cpu_share: float = math.nan  # of one core
    machine_busy: float = math.nan  # of every core
    feed_latency: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    server_log: str = ""  # the tail of the server's output, when it answered 500 or hung up

    @property
    def target(self) -> str:
        return TARGETS[self.role]


# --- verdicts --------------------------------------------------------------------------------


def judge(rows: list[Row]) -> None:
    """Ratios and verdicts: × ping against the quiet ping (the machine without the feed), so
    the live feed's cost counts against the check; × healthz against the same feed's."""

    def by_feed(role: Role) -> dict[str, Measured]:
        return {r.feed: r.measured for r in rows if r.role == role and r.measured}

    ping, healthz, one_worker = by_feed("ping"), by_feed("healthz"), by_feed("check")
    reference = ping.get("quiet") or ping.get("live")
    for r in rows:
        if r.measured is not None:
            _judge_load(r, r.measured, reference, healthz.get(r.feed), one_worker.get(r.feed))
        if r.race is not None:
            _judge_race(r, r.race)


def _judge_load(
    r: Row, m: Measured, ping: Measured | None, healthz: Measured | None,
    one_worker: Measured | None,
) -> None:  # fmt: skip
    if ping and ping.rps:
        r.ratio_ping = m.rps / ping.rps
    if healthz and healthz.rps:
        r.ratio_healthz = m.rps / healthz.rps
    valid = m.accept_share >= MIN_ACCEPT_SHARE
    if not valid:
        r.notes.append(f"only {m.accept_share:.0%} accepted: not a measurement of passing checks")
    if r.role == "workers" and one_worker and one_worker.rps:
        r.notes.append(f"{m.rps / one_worker.rps:.2f}× one worker")
    passed = {
        "check": r.ratio_ping >= 0.10,
        "latency": m.p99_ms <= 5.0,
        "reserve": r.ratio_ping >= 0.05,
    }.get(r.role)
    if not valid:
        r.verdict = "INVALID"
    elif passed is None:
        r.verdict = "—"  # a reference or a figure to watch
    else:
        r.verdict = "PASS" if passed else "FAIL"


def _judge_race(r: Row, o: RaceOutcome) -> None:
    race = o.race
    passed = race.wall_s <= 0.5 and race.accepted == o.fit_oracle
    plausible = 20 <= o.fit_oracle <= 40 and o.oracle_in_order
    r.verdict = ("PASS" if passed else "FAIL") if plausible else "INVALID"
    r.notes.append(
        f"{race.wall_s * 1e3:.0f} ms, {race.accepted} accepted, fit {o.fit_oracle} "
        f"(oracle) / {o.fit_by_hand} (by hand)"
    )
    if o.fit_oracle != o.fit_by_hand:
        r.notes.append("the oracle and the margin formula disagree: look at the spec or the app")
    if not plausible:
        r.notes.append("the oracle did not accept K then reject the rest with K in 20–40")


# --- the table and the details ---------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = (
        f"{'row':<30}{'feed':<7}{'conns':>5}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'× ping':>8}"
        f"{'× healthz':>10}{'accept':>8}  {'target':<16}{'verdict':<8} notes"
    )
    lines = [head, "-" * (len(head) + 20)]
    for r in rows:
        if r.race is not None:
            answers = r.race.race.answers
            latencies = sorted(a.latency_s * 1e3 for a in answers)
            rps, p50, p99 = f"{'—':>8}", statistics.median(latencies), _p99(latencies)
            accept = r.race.race.accepted / len(answers)
        else:
            assert r.measured is not None
            rps, p50, p99 = f"{r.measured.rps:>8.0f}", r.measured.p50_ms, r.measured.p99_ms
            accept = r.measured.accept_share
        lines.append(
            f"{r.name:<30}{r.feed:<7}{r.connections:>5}{rps}{p50:>9.2f}{p99:>9.2f}"
            f"{_ratio(r.ratio_ping):>8}{_ratio(r.ratio_healthz):>10}{accept:>8.0%}  "
            f"{r.target:<16}{r.verdict:<8} {'; '.join(r.notes)}".rstrip()
        )
    return "\n".join(lines)


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def describe(m: Measured) -> str:
    parts = [f"{m.accepted} accepted"]
    if m.rejected:
        parts.append(f"{m.rejected} rejected {dict(Counter(m.reasons).most_common(5))}")
    if m.non200:
        parts.append(f"non-200 {m.non200}")
    if m.socket_errors:
        parts.append(f"{m.socket_errors} socket errors")
    return ", ".join(parts)


def details(rows: list[Row]) -> list[str]:
    lines = ["Answers and server cost per row:"]
    for r in rows:
        label = f"  {r.feed:<5} {r.name} @ {r.connections}"
        if r.measured is not None:
            lines.append(
                f"{label}: {describe(r.measured)}; server CPU {r.cpu_ms:.2f} ms/request "
                f"({r.cpu_share:.0%} of a core), machine {r.machine_busy:.0%} busy"
            )
        if r.feed_latency:
            lines.append(f"{'':8}feed during the row: {_feed_summary(r.feed_latency)}")
        if r.race is not None:
            lines.extend(_race_details(label, r.race))
        if r.server_log:
            lines.append(f"{'':8}the server's output (tail):")
            lines.extend(f"{'':10}{line}" for line in r.server_log.splitlines())
    return lines


def _feed_summary(latency: dict[str, list[float]]) -> str:
    parts = []
    for kind, what in (("marks", "POST /v1/marks (40 marks)"), ("books", "PUT /v1/books/{s}")):
        values = [x * 1e3 for x in latency.get(kind, [])]
        if values:
            parts.append(
                f"{len(values)} × {what} p50 {statistics.median(values):.1f} ms, "
                f"max {max(values):.0f} ms"
            )
    return "; ".join(parts) or "no feed request answered"


def _race_details(label: str, o: RaceOutcome) -> list[str]:
    order = "accepts then rejects" if o.oracle_in_order else "NOT accepts then rejects"
    lines = [
        f"{label}: {o.race.accepted} accepted in {o.race.wall_s * 1e3:.0f} ms; {o.orders}; each "
        f"subaccount funded with {o.usdc} USDC; fit {o.fit_oracle} by the oracle ({order}), "
        f"{o.fit_by_hand} by hand"
    ]
    for server in sorted({a.server for a in o.race.answers}):
        answers = [a for a in o.race.answers if a.server == server]
        reasons = Counter(
            code for a in answers if a.status == 200 and not a.accepted for code in a.reasons
        )
        statuses = Counter(a.status for a in answers if a.status != 200)
        latencies = sorted(a.latency_s * 1e3 for a in answers)
        lines.append(
            f"{'':8}{PROCESS_NAMES[server]}: {sum(a.accepted for a in answers)} of "
            f"{len(answers)} accepted, latency p50 {statistics.median(latencies):.0f} ms, max "
            f"{latencies[-1]:.0f} ms; rejects {dict(reasons)}"
            + (f", non-200 {dict(statuses)}" if statuses else "")
        )
    return lines


# --- the environment -------------------------------------------------------------------------


def environment(
    root: Path, database_url: str, redis_url: str, driver_name: str, app_root: str
) -> list[str]:
    import asyncpg
    import redis

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "—"

    async def postgres() -> str:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            server = await connection.fetchval("SHOW server_version")
            return f"{server} (max_connections {await connection.fetchval('SHOW max_connections')})"
        finally:
            await connection.close()

    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = shutil.which("wrk")
    wrk_version = (
        subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout
        if wrk
        else "wrk not installed"
    ).split("\n")[0]
    packages = [
        "fastapi",
        "starlette",
        "pydantic",
        "uvicorn",
        "uvloop",
        "httptools",
        "asyncpg",
        "sqlalchemy",
        "redis",
        "hiredis",
        "numpy",
        "orjson",
    ]
    return [
        f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}",
        f"python {platform.python_version()} at {sys.executable}",
        "packages: " + ", ".join(f"{name} {version(name)}" for name in packages),
        f"PostgreSQL {asyncio.run(postgres())}, Redis {redis_version}",
        f"load: {driver_name}; {wrk_version}",
        f"checkout: {root} at {git_state(root)}; servers import app from {app_root}",
    ]


def git_state(root: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return out.stdout.strip()

    commit = git("log", "-1", "--format=%h (%cs)")
    dirty = git("status", "--porcelain", "--", "app", "migrations")
    return commit + (" + uncommitted changes under app/ or migrations/" if dirty else "")
