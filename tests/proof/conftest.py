"""The proof suite (issue 6): the service's promises under hostile input, concurrency, crashes,
outages and every role, each test recording the figures it proves.

Two scales. In CI (the default) every proof runs small enough to keep the suite short; with
``PREFLIGHT_PROOF=full`` (``python3 dev.py proof``) they run at the sizes the issue names
(100 examples per endpoint, 1,000 rounds, ...). Figures are printed as a table at the end of the
pytest run and, when ``PREFLIGHT_PROOF_RESULTS`` names a file, appended to it as JSON lines for
``dev.py proof`` to merge with the load benchmark's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import pytest

FULL = os.environ.get("PREFLIGHT_PROOF", "").strip().lower() == "full"


def scale(ci: int, full: int) -> int:
    """``full`` under ``PREFLIGHT_PROOF=full``, else the CI size ``ci``."""
    return full if FULL else ci


@dataclass(frozen=True)
class Figure:
    proof: str
    figure: str
    value: str
    target: str


_recorded: list[Figure] = []


class Figures:
    """What a proof measured, for the summary table."""

    def __init__(self, proof: str) -> None:
        self.proof = proof

    def record(self, figure: str, value: Any, target: Any = "") -> None:
        row = Figure(self.proof, figure, str(value), str(target))
        _recorded.append(row)
        path = os.environ.get("PREFLIGHT_PROOF_RESULTS")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(row)) + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Record figures under the proof named by the test module's ``PROOF`` constant."""
    return Figures(getattr(request.module, "PROOF", request.module.__name__))


def table(rows: list[dict[str, str]]) -> str:
    """A plain-text table of proof / figure / value / target rows."""
    header = {"proof": "proof", "figure": "figure", "value": "value", "target": "target"}
    widths = {k: max(len(r[k]) for r in [header, *rows]) for k in header}
    lines = [" | ".join(r[k].ljust(widths[k]) for k in header).rstrip() for r in [header, *rows]]
    lines.insert(1, "-+-".join("-" * widths[k] for k in header))
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _recorded:
        terminalreporter.section("proof figures")
        terminalreporter.write_line(table([asdict(r) for r in _recorded]))
