"""Where the server's CPU goes under load: ``py-spy record`` of the server process while a driver
runs the non-reserving check (``.venv/bin/pip install py-spy``), summarised by endpoint, leaf
function, package and stage of the check. Folded stacks and a flame graph are left in /tmp.

Stages are matched on function names in the stacks, so the breakdown outlives a redesign: a
stage that no longer exists shows as absent rather than breaking the profile.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
IDLE_LEAVES = {"Condition.wait", "Event.wait", "Thread.join", "SimpleQueue.get", "Queue.get"}

Frames = list[tuple[str, str]]

# (label, function names, file fragments): inclusive share = samples with such a frame anywhere.
STAGES = [
    ("auth dependency (key lookup)", "authenticate", "app/auth/"),
    ("check handler, all of it", "check", "app/pretrade/service"),
    ("  subaccount + instruments", "_subaccount|_known_instruments", "app/pretrade/service"),
    ("  idempotency lookup", "checks_for_order_ids", "app/pretrade/repository"),
    ("  load_context", "load_context", "app/pretrade/service"),
    ("    load_book (positions, balances, instruments)", "load_book", "app/risk/book"),
    ("      current_marks (marks + TWAP)", "current_marks", "app/marketdata/service"),
    ("        judge / mark_history / twap", "judge|mark_history|twap", "app/marketdata/"),
    ("    risk.parameters", "parameters", "app/risk/service"),
    ("    get_book (visible book)", "get_book", "app/marketdata/service"),
    ("    active_reservations", "active_reservations", "app/accounts/repository"),
    ("    realized_since", "realized_since", "app/accounts/repository"),
    ("    trading states", "_states", "app/pretrade/service"),
    ("  evaluate_basket", "evaluate_basket", "app/pretrade/service"),
    ("    risk.evaluate (engine inputs + margin)", "evaluate", "app/risk/service"),
    ("    rules", "judge", "app/pretrade/rules"),
    (
        "  summaries / positions_out",
        "summary_out|positions_out|marks_out|_summary",
        "app/risk/service|app/pretrade/service",
    ),
    ("  _persist (records, audit, rate window)", "_persist", "app/pretrade/service"),
    ("    audit.record", "record", "app/audit/service"),
    ("    session.flush (ORM unit of work)", "flush", "sqlalchemy/orm/session"),
    ("request validation (pydantic in)", "request_body_to_args|_validate_unwrapped", "fastapi/"),
    ("response serialisation (FastAPI)", "serialize_response", "fastapi/routing"),
    ("commit", "commit", "sqlalchemy/|asyncpg/"),
    ("SQLAlchemy, anywhere", "*", "sqlalchemy/"),
    ("asyncpg, anywhere", "*", "asyncpg/"),
    ("redis-py, anywhere", "*", "redis/"),
    ("pydantic, anywhere", "*", "pydantic"),
    ("numpy, anywhere", "*", "numpy/"),
    ("app code's own lines (leaf frame in app/*)", "<leaf-app>", ""),
    ("margin-call sweep after marks", "after_marks", "app/risk/margin_calls"),
]


def _package(path: str) -> str:
    """py-spy names files relative to their root: ``app/risk/batch.py``, ``sqlalchemy/orm/…``,
    ``asyncio/runners.py``, ``threading.py``, ``<frozen runpy>``."""
    if path.startswith("app/"):
        return path.removesuffix(".py")
    if path.startswith("asyncio/runners"):
        return "event loop (uvloop, native)"
    return path.split("/", 1)[0].removesuffix(".py")


def _frames(stack: str) -> Frames:
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        frames.append((match["func"], match["file"]) if match else (raw.strip(), ""))
    return frames


def _endpoint(frames: Frames) -> str:
    for func, file in frames:
        if file.startswith("app/") and file.endswith(("router.py", "ops.py")):
            return f"{func} ({file})"
    if any(file.startswith(("uvicorn/protocols", "starlette/", "fastapi/")) for _, file in frames):
        return "HTTP handling outside an endpoint (uvicorn / starlette / fastapi)"
    root = frames[0][1] if frames else ""
    if root.startswith(("sqlalchemy/", "asyncpg/", "redis/", "greenlet")):
        return "driver code on a greenlet or callback stack (its request is not visible)"
    if frames and frames[-1][0] == "Runner.run":
        return "uvloop / native code (sockets, parsing, callbacks)"
    app_frames = [f"{func} ({file})" for func, file in frames if file.startswith("app/")]
    return f"other app code: {app_frames[-1]}" if app_frames else "other"


def _in_stage(frames: Frames, funcs: str, files: str) -> bool:
    if funcs == "<leaf-app>":
        return frames[-1][1].startswith("app/")
    names, fragments = set(funcs.split("|")), files.split("|")
    return any(
        (funcs == "*" or func.rsplit(".", 1)[-1] in names) and any(f in file for f in fragments)
        for func, file in frames
    )


def summarise(folded: Path, top: int = 25) -> str:
    samples: list[tuple[Frames, int]] = []
    waiting = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            frames = _frames(stack)
            if frames and frames[-1][0] in IDLE_LEAVES:
                waiting += int(number)  # a thread blocked in a wait: not CPU
                continue
            samples.append((frames, int(number)))
    total = sum(count for _, count in samples)
    if not total:
        return "(no samples)"
    leaf_fn, leaf_pkg, endpoint = (
        collections.Counter[str](),
        collections.Counter[str](),
        collections.Counter[str](),
    )
    for frames, count in samples:
        func, file = frames[-1]
        leaf_fn["uvloop / native code" if func == "Runner.run" else f"{func} ({file})"] += count
        leaf_pkg[_package(file)] += count
        endpoint[_endpoint(frames)] += count

    def share(count: int) -> str:
        return f"{100 * count / total:5.1f}%"

    lines = [
        f"py-spy: {total} samples of the server's CPU ({waiting} more of threads blocked in a "
        "wait dropped)",
        "",
        "By endpoint (the request a sample belongs to):",
        *(f"  {share(c)}  {name}" for name, c in endpoint.most_common(10)),
        "",
        "Top functions by self time:",
        *(f"  {share(c)}  {name}" for name, c in leaf_fn.most_common(top)),
        "",
        "Self time by package / app module:",
        *(f"  {share(c)}  {name}" for name, c in leaf_pkg.most_common(top)),
        "",
        "Inclusive time by stage (each stack counted once per stage; '—' = no such frame):",
    ]
    for label, funcs, files in STAGES:
        hit = sum(count for frames, count in samples if _in_stage(frames, funcs, files))
        lines.append(f"  {share(hit) if hit else '    — '}  {label}")
    return "\n".join(lines)


def record(pid: int, seconds: float, load: Callable[[float], object], outdir: Path) -> str:
    """Samples ``pid`` for ``seconds`` while ``load(seconds + 1.5)`` runs; the summary."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(pyspy, os.X_OK):
        return "(py-spy not installed: .venv/bin/pip install py-spy)"
    folded, svg = outdir / "pretrade.folded", outdir / "pretrade.svg"
    # Blocking mode (the default) pauses the server for each sample, so stacks are never torn;
    # two samplers at 100 Hz cost the server about 2 %.
    common = ["record", "--pid", str(pid), "--rate", "100", "--function"]
    common += ["--duration", str(max(1, round(seconds)))]
    spies = [
        subprocess.Popen(
            [pyspy, *common, "--format", fmt, "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for fmt, out in (("raw", folded), ("flamegraph", svg))
    ]
    try:
        time.sleep(0.5)  # both samplers attached
        load(seconds + 1.5)
        for spy in spies:
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                return f"(py-spy failed: {err[-800:]})"
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
    return summarise(folded) + f"\n\nfolded stacks: {folded}\nflame graph:   {svg}"
