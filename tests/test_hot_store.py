"""The check's connections (app/core/db.py, HotStore): a connection that failed itself is never
handed to the next request; one whose statement was refused is kept.

The pool here holds one connection, so the next request gets the same one unless it was
dropped. (A connection the server dropped while pooled failed the next request's BEGIN with
asyncpg's InternalClientError, "another operation is in progress", answered 500 in the
PostgreSQL-outage proof about one run in ten.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from app.core.config import Settings
from app.core.db import HotStore, create_engine, create_hot_store, create_session_factory


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[HotStore]:
    engine = create_engine(settings.database_url, 1)
    hot = await create_hot_store(
        settings.database_url, 1, create_session_factory(engine), lambda: None
    )
    yield hot
    await hot.close()
    await engine.dispose()


async def _backend(store: HotStore) -> int:
    async with store.connect() as db:
        assert isinstance(db, asyncpg.Connection)
        pid: int = await db.fetchval("SELECT pg_backend_pid()")
        return pid


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["protocol state", "interface", "socket"],
)
async def test_a_connection_that_failed_itself_is_replaced(
    store: HotStore, failure: Exception
) -> None:
    before = await _backend(store)
    with pytest.raises(type(failure)):
        async with store.connect(transaction=True):
            raise failure
    assert await _backend(store) != before


async def test_a_connection_whose_statement_was_refused_is_kept(store: HotStore) -> None:
    before = await _backend(store)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with store.connect(transaction=True) as db:
            assert isinstance(db, asyncpg.Connection)
            await db.execute("SELECT * FROM no_such_table")
    assert await _backend(store) == before
