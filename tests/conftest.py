"""The test harness: one real PostgreSQL database and one real Redis database per test run
(per xdist worker), migrated once by Alembic; every test starts from empty tables and an empty
cache. Found by ``tests/services.py``: configured URLs, else localhost, else throwaway servers."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.db import Base
from app.core.migrations import upgrade
from app.main import create_app
from app.models import load_all_models
from tests import services
from tests.servers import ADMIN_KEY, server_env, serving


def _claim_redis_database() -> int:
    """A Redis database number no other test process on this machine holds (1–15), claimed
    with a file lock for this process's lifetime: concurrent runs never flush each other."""
    for number in range(1, 16):
        handle = open(Path(tempfile.gettempdir()) / f"preflight-test-redis-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held_locks.append(handle)
        return number
    raise RuntimeError("all Redis test databases 1–15 are in use by other test runs")


_held_locks: list[IO[str]] = []


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    server = services.postgres_server_url()
    name = f"preflight_test_{os.getpid()}"
    url = services.create_database(server, name)
    upgrade(url)
    yield url
    services.drop_database(server, name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    base = services.redis_server_url().rsplit("/", 1)[0]
    yield f"{base}/{_claim_redis_database()}"
    while _held_locks:
        _held_locks.pop().close()


@pytest.fixture(scope="session")
def settings(postgres_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=postgres_url,
        redis_url=redis_url,
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        log_level="WARNING",
        db_pool_size=10,
        # The in-process app runs its background passes as its own tasks: the tests drive
        # and observe them here (tests/servers.py's processes run them in a process).
        background="inline",
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def raw_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://preflight") as client:
        yield client


async def empty_everything(settings: Settings) -> None:
    """Empty every table and the test Redis database. The one ``reference_version`` row
    stays (the app caches reference data under its token; the triggers renew the token as the
    reference tables are emptied)."""
    load_all_models()
    tables = ", ".join(
        table.name for table in Base.metadata.sorted_tables if table.name != "reference_version"
    )
    engine = create_async_engine(settings.database_url)
    try:
        for attempt in range(5):
            try:
                async with engine.begin() as connection:
                    await connection.execute(text(f"TRUNCATE {tables}"))
                break
            except DBAPIError as error:
                # The app's background work (the audit sealer, the outbox) may still hold one
                # table while the TRUNCATE holds another; PostgreSQL aborts one side — retry ours.
                if "deadlock detected" not in str(error) or attempt == 4:
                    raise
    finally:
        await engine.dispose()
    await flush_redis(settings)


async def flush_redis(settings: Settings) -> None:
    """Empty the test Redis database: also what a Redis restart without persistence does."""
    assert settings.redis_url is not None
    client = redis_asyncio.Redis.from_url(settings.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def clean(settings: Settings, raw_client: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every test starts from empty tables and an empty cache."""
    await empty_everything(settings)
    yield


class Api:
    """An HTTP client that speaks as one API key."""

    def __init__(self, client: httpx.AsyncClient, key: str | None) -> None:
        self.client = client
        self.key = key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        """The JSON of a request that must succeed (the failure message shows the problem)."""
        response = await self.request(method, url, **kwargs)
        assert response.status_code < 300, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()

    def as_(self, key: str | None) -> Api:
        return Api(self.client, key)


@pytest.fixture
async def admin(clean: None, raw_client: httpx.AsyncClient) -> Api:
    return Api(raw_client, ADMIN_KEY)


@pytest.fixture(scope="module")
def servers(postgres_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """Two real server processes on the test database and Redis (what one process writes,
    the other must see at once)."""
    env = server_env(postgres_url, redis_url)
    with serving(env) as a, serving(env) as b:
        yield a.url, b.url


@pytest.fixture
async def apis(clean: None, servers: tuple[str, str]) -> AsyncIterator[tuple[Api, Api]]:
    """The admin of each of ``servers``."""
    async with (
        httpx.AsyncClient(base_url=servers[0], timeout=30) as a,
        httpx.AsyncClient(base_url=servers[1], timeout=30) as b,
    ):
        yield Api(a, ADMIN_KEY), Api(b, ADMIN_KEY)
