"""The committed OpenAPI document is the app's: regenerate it with `preflight openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


async def test_committed_spec_matches_the_app(app: FastAPI) -> None:
    committed = json.loads(SPEC.read_text())
    assert committed == app.openapi(), "openapi/openapi.json is stale: run `preflight openapi`"
