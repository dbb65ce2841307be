"""The embedded default (SQLite + in-process cache) serves the API end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.core.config import Settings
from app.core.migrations import upgrade
from app.main import create_app
from tests.conftest import Api
from tests.factories import desk, fill, marks


async def test_api_smoke_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'smoke.db'}"
    await asyncio.to_thread(upgrade, url)
    app = create_app(Settings(database_url=url, redis_url=None, admin_key="k" * 32))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://preflight") as client:
            api = Api(client, "k" * 32)
            await desk(api)
            await api.ok("POST", "/v1/fills", json={"fills": [fill("s1", "buy", "2", "65000.5")]})
            positions = await api.ok("GET", "/v1/subaccounts/sub-cross/positions")
            assert positions["positions"][0]["entry_price"] == "65000.5"
            # The check on SQLite runs in one session; a second one would wait for its lock.
            await marks(api, {"BTC-PERP": "65000"})
            body = {
                "subaccount_id": "sub-cross",
                "orders": [
                    {"instrument": "BTC-PERP", "side": "buy", "size": "0.1", "type": "market"}
                ],
            }
            check = await asyncio.wait_for(api.ok("POST", "/v1/pretrade/check", json=body), 10)
            # No book: a market buy fills at mark · (1 + default_slippage) = 65,000 · 1.005.
            assert check["executions"][0]["avg_price"] == "65325"
            assert check["executions"][0]["price_source"] == "mark"
            ready = await api.ok("GET", "/readyz")
            assert ready["cache"] == "in-process"


def test_cli_mints_a_key_on_a_fresh_database(tmp_path: Path) -> None:
    """README's `preflight keys create` on a clone that has never served: the embedded
    default migrates itself, as `serve` does; an unknown account is a message, not a
    traceback."""
    url = f"sqlite+aiosqlite:///{tmp_path}/new/preflight.db"
    env = {**os.environ, "PREFLIGHT_DATABASE_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app.cli", "keys", "create", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    created = cli("--role", "admin", "--label", "first")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("pf_") and len(created.stdout.split()) == 1
    unknown = cli("--role", "trader", "--account", "fund-a")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "preflight: accounts[0]: unknown account 'fund-a'"
