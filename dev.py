#!/usr/bin/env python3
"""Developer entry point for Preflight. Standard library only; any Python >= 3.11.

    python3 dev.py demo [--port N ...]   run the demo server (extra args go to `preflight serve`)
    python3 dev.py test [pytest args]    run the test suite, exit with pytest's code
    python3 dev.py lint                  ruff check, ruff format --check, mypy (app and the
                                         client), lint-imports
    python3 dev.py proof [--skip-load]   the proof suite at full size, then 500 checks/s for
                                         60 s; prints the table of figures (tests/proof/)

The virtualenv lives in .venv (created when missing). The project and its Python client
(clients/python) are installed editable, and the install is skipped while a stamp inside .venv
matches the hash of their pyproject.toml files. A first install takes a minute or so; dev.py
says what it is doing meanwhile, with the seconds elapsed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# Installed editable beside the project: the tests use the client (tests/test_client.py).
CLIENT = "clients/python"
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / CLIENT / "pyproject.toml")
# pip -q still warns about every configured index/find-links location that does not exist
# (this machine's pip.conf names some); those lines are noise, everything else is shown.
PIP_NOISE = re.compile(r"WARNING: Location '.*' is ignored: it is neither a file nor a directory")


def say(msg: str) -> None:
    print(f"dev.py: {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | Path]) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


class Status:
    """A long step's progress on stderr, with the seconds since ``started``. On a terminal one
    line is redrawn in place (twice a second, so the clock moves while pip is silent); in a
    log, a line per phase, and a reminder after each 10 s without one."""

    QUIET_S = 10.0

    def __init__(self, started: float) -> None:
        self.started = started
        self.tty = sys.stderr.isatty()
        self.phase = ""
        self.detail = ""
        self.printed = time.monotonic()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def _draw(self) -> None:
        text = f"dev.py: {self._elapsed()} {self.phase}"
        text += f" ({self.detail})" if self.detail else ""
        width = max(20, shutil.get_terminal_size().columns - 1)
        sys.stderr.write("\r\033[K" + text[:width])
        sys.stderr.flush()

    def _tick(self) -> None:
        while not self.done.wait(0.5):
            with self.lock:
                if self.tty and self.phase:
                    self._draw()
                elif self.phase and time.monotonic() - self.printed >= self.QUIET_S:
                    self._line(f"still {self.phase}" + (f" ({self.detail})" * bool(self.detail)))

    def update(self, phase: str, detail: str = "") -> None:
        with self.lock:
            changed = phase != self.phase
            self.phase, self.detail = phase, detail
            if self.tty:
                self._draw()
            elif changed:
                self._line(phase)

    def note(self, text: str) -> None:
        """A line that stays (a warning of pip's)."""
        with self.lock:
            self._line(text)

    def _line(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"dev.py: {self._elapsed()} {text}\n")
        sys.stderr.flush()
        self.printed = time.monotonic()
        if self.tty and self.phase:
            self._draw()

    def close(self, result: str) -> None:
        self.done.set()
        self.ticker.join()
        with self.lock:
            self.phase = ""
            self._line(result)


def pip_install(targets: Sequence[str], status: Status) -> int:
    """``pip install -e`` each target, its output told as phases (resolving, downloading,
    building, installing N packages); pip's warnings and errors are shown as they come, and
    everything it said is shown if it fails."""
    cmd = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    cmd += [arg for target in targets for arg in ("-e", target)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # pip's lines as they come, not per 8 KiB
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    said: list[str] = []
    fetched: list[str] = []
    installed = 0
    status.update("preparing the editable builds")
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line.strip() or PIP_NOISE.match(line):
            continue
        said.append(line)
        words = line.split()
        if line.startswith(("ERROR", "WARNING")):
            status.note(line)
        elif words[0] == "Collecting" or line.startswith("Requirement already satisfied"):
            fetched.append(words[1] if words[0] == "Collecting" else words[3])
            status.update("fetching dependencies", f"{len(fetched)} so far: {fetched[-1]}")
        elif words[0] == "Downloading" and fetched:
            size = " ".join(words[2:]).strip("()")
            status.update("fetching dependencies", f"{len(fetched)} so far: {fetched[-1]} {size}")
        elif line.startswith(("Building editable", "Building wheel")):
            status.update("building the editable installs")
        elif line.startswith("Installing collected packages:"):
            installed = len(line.split(":", 1)[1].split(","))
            status.update(f"installing {installed} packages")
    rc = proc.wait()
    if rc != 0:
        status.close(f"pip failed (exit {rc}); it said:")
        sys.stderr.write("".join(f"    {line}\n" for line in said[-80:]))
    else:
        status.close(f"installed {installed} packages")
    return rc


def stamp(extra: str) -> Path:
    return VENV / f".preflight-installed-{extra or 'base'}"


def ensure_venv(extra: str = "") -> None:
    """Create .venv if needed and install the project (with `extra`) and the client unless
    already current."""
    started = time.monotonic()
    if not PYTHON.exists():
        say(f"creating {VENV.name} with {sys.executable} (then a first install, about a minute)")
        if run([sys.executable, "-m", "venv", VENV]) != 0:
            sys.exit("dev.py: could not create the virtualenv")
        say(f"[{time.monotonic() - started:5.1f}s] created {VENV.name}")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in PYPROJECTS)).hexdigest()
    # A dev install also satisfies the plain one.
    candidates = [stamp(extra)] if extra else [stamp(""), stamp("dev")]
    if any(p.is_file() and p.read_text().strip() == digest for p in candidates):
        return
    targets = [f".[{extra}]" if extra else ".", CLIENT]
    say(f"installing {' and '.join(targets)} into {VENV.name} (first run, or a pyproject changed)")
    if pip_install(targets, Status(started)) != 0:
        sys.exit("dev.py: pip install failed (see the errors above)")
    stamp(extra).write_text(digest + "\n")


def demo(args: list[str]) -> int:
    ensure_venv()
    exe = str(BIN / "preflight")
    argv = [exe, "serve", "--demo", *args]
    if os.name == "nt":  # no real exec on Windows
        return run(argv)
    os.chdir(ROOT)
    os.execv(exe, argv)


def test(args: list[str]) -> int:
    ensure_venv("dev")
    return run([PYTHON, "-m", "pytest", *args])


def lint(args: list[str]) -> int:
    if args:
        sys.exit("dev.py: lint takes no arguments")
    ensure_venv("dev")
    checks = [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "app", CLIENT],
        ["lint-imports"],
    ]
    failed = []
    for check in checks:
        say("$ " + " ".join(check))
        if run([BIN / check[0], *check[1:]]) != 0:
            failed.append(" ".join(check))
    if failed:
        say("lint FAILED: " + "; ".join(failed))
        return 1
    say("lint passed")
    return 0


def proof(args: list[str]) -> int:
    """tests/proof at the sizes issue 6 names (PREFLIGHT_PROOF=full), then the fixed-rate load
    benchmark; every figure they record is printed as one table at the end."""
    if args not in ([], ["--skip-load"]):
        sys.exit("dev.py: proof takes only --skip-load")
    ensure_venv("dev")
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="preflight-proof-") as tmp:
        results = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "PREFLIGHT_PROOF": "full", "PREFLIGHT_PROOF_RESULTS": str(results)}
        say("$ pytest tests/proof (full size)")
        tests_rc = subprocess.call(
            [str(PYTHON), "-m", "pytest", "tests/proof", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
        )
        load_rc = 0
        if not args:
            say("$ bench/load.py --rate 500 --duration 60 --workers 2 (the production shape)")
            load_rc = subprocess.call(
                [str(PYTHON), "bench/load.py", "--rate", "500", "--duration", "60",
                 "--workers", "2", "--results", str(results)],
                cwd=ROOT,
                env=env,
            )  # fmt: skip
        rows = (
            [json.loads(line) for line in results.read_text().splitlines()]
            if results.exists()
            else []
        )
    header = {"proof": "proof", "figure": "figure", "value": "value", "target": "target"}
    widths = {k: max(len(str(r[k])) for r in [header, *rows]) for k in header}
    print()
    for n, row in enumerate([header, *rows]):
        print(" | ".join(str(row[k]).ljust(widths[k]) for k in header).rstrip())
        if n == 0:
            print("-+-".join("-" * widths[k] for k in header))
    print(f"\ntests exit {tests_rc}, load benchmark exit {load_rc}")
    return tests_rc or load_rc


COMMANDS = {"demo": demo, "test": test, "lint": lint, "proof": proof}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - friendly message on an old python3
        sys.exit("dev.py: Python >= 3.11 is required")
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
