"""The engine imports numpy and the standard library only (import-linter holds it too)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import app.engine

ENGINE = Path(app.engine.__file__).parent


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            roots.add("app.engine")  # a relative import stays inside the package
    return roots


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    return (
        top in sys.stdlib_module_names
        or top == "numpy"
        or module == "app.engine"
        or module.startswith("app.engine.")
    )


def test_engine_imports_only_numpy_and_the_standard_library():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    offenders = {
        f"{path.name}: {module}"
        for path in files
        for module in imported_roots(path)
        if not allowed(module)
    }
    assert not offenders
