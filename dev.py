#!/usr/bin/env python3
"""Developer entry point for Preflight. Standard library only; any Python >= 3.11.

    python3 dev.py demo [--port N ...]   run the demo server (extra args go to `preflight serve`)
    python3 dev.py test [pytest args]    run the test suite, exit with pytest's code
    python3 dev.py lint                  ruff check, ruff format --check, mypy app, lint-imports
    python3 dev.py proof [--skip-load]   the proof suite at full size, then 500 checks/s for
                                         60 s; prints the table of figures (tests/proof/)

The virtualenv lives in .venv (created when missing). The project is installed editable,
and the install is skipped while a stamp inside .venv matches pyproject.toml's hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# pip -q still warns about every configured index/find-links location that does not exist
# (this machine's pip.conf names some); those lines are noise, everything else is shown.
PIP_NOISE = re.compile(r"WARNING: Location '.*' is ignored: it is neither a file nor a directory")


def say(msg: str) -> None:
    print(f"dev.py: {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str | Path]) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


def pip_install(target: str) -> int:
    cmd = [PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", target]
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if not PIP_NOISE.match(line):
            sys.stderr.write(line)
    return proc.wait()


def stamp(extra: str) -> Path:
    return VENV / f".preflight-installed-{extra or 'base'}"


def ensure_venv(extra: str = "") -> None:
    """Create .venv if needed and install the project (with `extra`) unless already current."""
    if not PYTHON.exists():
        say(f"creating {VENV.name} with {sys.executable}")
        if run([sys.executable, "-m", "venv", VENV]) != 0:
            sys.exit("dev.py: could not create the virtualenv")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # A dev install also satisfies the plain one.
    candidates = [stamp(extra)] if extra else [stamp(""), stamp("dev")]
    if any(p.is_file() and p.read_text().strip() == digest for p in candidates):
        return
    target = f".[{extra}]" if extra else "."
    say(f"installing {target} into {VENV.name} (pyproject.toml changed or first run)")
    if pip_install(target) != 0:
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
        ["mypy", "app"],
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
