"""The embedded default (SQLite + in-process cache) serves the API end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from app.core.config import Settings
from app.core.migrations import upgrade
from app.main import create_app
from tests.conftest import Api
from tests.factories import desk, fill


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
            ready = await api.ok("GET", "/readyz")
            assert ready["cache"] == "in-process"
