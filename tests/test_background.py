"""The background passes in a process of their own: on PostgreSQL (``PREFLIGHT_BACKGROUND`` at
its default) a server starts ``preflight background``, which seals what the server writes with
no reader asking, is started again when it dies, and goes when the server goes, kill -9
included."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from app.background import environment
from app.core.config import Settings
from app.core.migrations import upgrade
from tests.conftest import ADMIN_KEY, Api
from tests.factories import desk, marks
from tests.servers import server_env, serving
from tests.services import asyncpg_dsn, create_database, drop_database, postgres_server_url


def _background_processes(parent: int) -> list[int]:
    listed = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True, text=True
    ).stdout
    return [int(line.split()[0]) for line in listed.splitlines() if "app.cli background" in line]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _unsealed(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM audit_log WHERE seq IS NULL")
        return count
    finally:
        await connection.close()


async def test_the_background_process_seals_and_goes_with_its_server() -> None:
    # A database of its own: the tests' in-process app seals what it finds in theirs.
    server_url, name = postgres_server_url(), f"preflight_background_{os.getpid()}"
    database_url = await asyncio.to_thread(create_database, server_url, name)
    try:
        await asyncio.to_thread(upgrade, database_url)
        with serving(server_env(database_url, None)) as server:
            assert server.proc is not None
            [background] = _background_processes(server.proc.pid)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                await desk(Api(client, ADMIN_KEY))
            # Nobody reads the audit log (a reader seals first): the background process seals.
            deadline = time.monotonic() + 5
            while await _unsealed(database_url) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert await _unsealed(database_url) == 0

            # Killed, it is started again, and what is written meanwhile is sealed all the same.
            os.kill(background, signal.SIGKILL)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                await marks(Api(client, ADMIN_KEY), {"BTC-PERP": "60000"})
            deadline = time.monotonic() + 10
            while (  # noqa: ASYNC110
                not _background_processes(server.proc.pid) or await _unsealed(database_url)
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            [background] = _background_processes(server.proc.pid)
            assert await _unsealed(database_url) == 0

            server.kill()  # kill -9: no shutdown hook stops the background process
            deadline = time.monotonic() + 5
            while _running(background) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert not _running(background)
    finally:
        await asyncio.to_thread(drop_database, server_url, name)


def test_the_background_process_gets_the_settings_the_app_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An app given its settings (``create_app(settings)``, not read from the environment)
    starts its background process on those settings, not on the environment's."""
    given = Settings(
        database_url="postgresql+asyncpg://someone@db.example:5433/desk",
        redis_url="redis://cache.example:6380/3",
        admin_key="not-from-the-environment",  # type: ignore[arg-type]
        db_pool_size=7,
        log_json=False,
        mark_future_skew_s=1.5,
        background="process",
    )
    monkeypatch.setenv("PREFLIGHT_DATABASE_URL", "sqlite+aiosqlite:///elsewhere.db")
    monkeypatch.setenv("PREFLIGHT_WEBHOOK_URL", "http://not-given.example/")
    passed = environment(given)
    for name in [n for n in os.environ if n.startswith("PREFLIGHT_")]:
        monkeypatch.delenv(name)
    for name, value in passed.items():
        monkeypatch.setenv(name, value)
    read = Settings()
    assert read.admin_key is not None and given.admin_key is not None
    assert read.admin_key.get_secret_value() == given.admin_key.get_secret_value()
    assert read.model_dump(exclude={"admin_key"}) == given.model_dump(exclude={"admin_key"})
