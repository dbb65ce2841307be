"""Database wiring: the ORM base, exact column types, and the engine/session factory.

PostgreSQL (asyncpg) is the production store; SQLite (aiosqlite) is the embedded default.
Money is ``NUMERIC`` on PostgreSQL and exact decimal text on SQLite (whose NUMERIC is a float).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias, get_args

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import JSON, DateTime, Dialect, MetaData, Numeric, String, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Exact(TypeDecorator[Decimal]):
    """An exact decimal: unconstrained NUMERIC on PostgreSQL, canonical text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format(Decimal(value), "f")
        return Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        # asyncpg already answers Decimal; SQLite answers the stored text.
        return value if value is None or isinstance(value, Decimal) else Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def driver_fetch(session: AsyncSession, sql: str, *args: Any) -> Sequence[Any]:
    """Rows straight from asyncpg on the session's own connection (same transaction), for the
    hot and bulk reads where SQLAlchemy's per-statement and per-row processing dominates.
    PostgreSQL only: callers keep an ORM path for SQLite."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    rows: Sequence[Any] = await driver.fetch(sql, *args)
    return rows


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


ORM_COMMAND_TIMEOUT_S = 10.0
"""A statement of any other endpoint (fills, transfers, views, reports) ends within this: a hung
PostgreSQL answers 503 after it, not after the driver's default; the longest statement here
(a whole-book read) takes about a second on 100,000 positions."""


def create_engine(url: str, pool_size: int) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin (see below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin_immediate(connection: Any) -> None:
            # One writer at a time, taken at BEGIN: avoids SQLite's upgrade deadlocks.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs round trips on every checkout, and a dead connection already
        # fails the request into a 503 (core/http.py) and is discarded.
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": ORM_COMMAND_TIMEOUT_S},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


HotDb: TypeAlias = "asyncpg.Connection | LazyConnection | AsyncSession"
"""What the pre-trade check reads and writes through: a bare asyncpg connection on PostgreSQL
(no ORM, no pool reset, no transaction unless asked), a session on SQLite. Repositories
branch on it, as they branch on the dialect elsewhere."""

CHECK_COMMAND_TIMEOUT_S = 5.0
IDLE_CONNECTION_S = 2.0
"""A hung PostgreSQL fails a check within this, not after the driver's default."""


async def _keep(connection: asyncpg.Connection) -> None:
    """Pool reset: nothing. The hot path leaves no session state behind (no LISTEN, no
    session locks, no SET), and the default reset costs a round trip on every release."""


SerialUser = Literal["versions", "records"]
SERIAL_USERS: tuple[SerialUser, ...] = get_args(SerialUser)
"""The group calls that keep a connection each (``HotStore.serial``): the pool has a slot for
each beside the requests' own."""


class HotStore:
    """Connections for the pre-trade check."""

    def __init__(
        self, pool: asyncpg.Pool | None, session_factory: async_sessionmaker[AsyncSession]
    ) -> None:
        self._pool = pool
        self._session_factory = session_factory
        self._serial: dict[SerialUser, asyncpg.Connection] = {}

    @property
    def pooled(self) -> bool:
        """PostgreSQL (a pool of bare connections), not SQLite's sessions."""
        return self._pool is not None

    @asynccontextmanager
    async def connect(
        self,
        *,
        transaction: bool = False,
        deadline: float | None = None,
        lazy: bool = False,
    ) -> AsyncIterator[HotDb]:
        """A connection; with ``transaction`` its statements commit together on the way out
        (rolled back on an error). Without, each statement commits on its own. Waiting for it
        ends at ``deadline`` (the event loop's clock), by default ``CHECK_COMMAND_TIMEOUT_S``
        from now. ``lazy`` (no transaction): taken from the pool at its first statement, so a
        check that finds everything it holds current never takes one."""
        if self._pool is None:
            async with self._session_factory() as session, session.begin():
                yield session
            return
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + CHECK_COMMAND_TIMEOUT_S
        if lazy and not transaction:
            pending = LazyConnection(self._pool, deadline)
            try:
                yield pending
            except BaseException as exc:
                if pending.held is not None and _connection_suspect(exc):
                    pending.held.terminate()
                raise
            finally:
                if pending.held is not None:
                    await self._pool.release(pending.held)
            return
        held = await _acquire(self._pool, deadline)
        try:
            if transaction:
                async with held.transaction():
                    yield held
            else:
                yield held
        except BaseException as exc:
            if _connection_suspect(exc):
                # The pool's reset is a no-op (_keep), so it would hand this connection out
                # again as it is: after a failure of the connection itself (a server shutting
                # down mid-statement, a cancelled or timed-out statement) it may still have an
                # operation in flight, and the next request's first statement would fail with
                # "another operation is in progress". It goes; the pool opens a new one.
                held.terminate()
            raise
        finally:
            await self._pool.release(held)

    @asynccontextmanager
    async def serial(self, name: SerialUser) -> AsyncIterator[asyncpg.Connection]:
        """A connection kept for ``name``, a caller that never runs two statements at once
        (a group call: its batches run one after another). Taken from the pool once, not per
        batch — taking and giving back a connection costs the event loop more than a batch's
        statement; one that failed goes, and the next batch takes another. PostgreSQL only."""
        assert self._pool is not None
        held = self._serial.get(name)
        if held is None or not _usable(held):
            held = await _acquire(
                self._pool, asyncio.get_running_loop().time() + CHECK_COMMAND_TIMEOUT_S
            )
            self._serial[name] = held
        try:
            yield held
        except BaseException as exc:
            if _connection_suspect(exc):
                del self._serial[name]
                if _usable(held):
                    held.terminate()  # see ``connect``: it may still have an operation in flight
                    await self._pool.release(held)
            raise

    async def close(self) -> None:
        if self._pool is not None:
            for held in self._serial.values():
                if _usable(held):
                    await self._pool.release(held)
            self._serial.clear()
            await self._pool.close()


def _usable(held: asyncpg.Connection) -> bool:
    """An acquired connection still open and still ours: the pool takes a connection back by
    itself when PostgreSQL drops it, and then any call on it raises."""
    try:
        return not held.is_closed()
    except asyncpg.InterfaceError:
        return False


async def _acquire(pool: asyncpg.Pool, deadline: float) -> asyncpg.Connection:
    # As many connections as requests admitted (main.py): waiting here means PostgreSQL is
    # slow or away, and the deadline answers 503. (asyncio.timeout, not acquire's own
    # timeout, which wraps every acquire in a task of its own.)
    async with asyncio.timeout_at(deadline):
        return await pool.acquire()


class LazyConnection:
    """A pooled connection taken at the first statement (``HotStore.connect(lazy=True)``)."""

    def __init__(self, pool: asyncpg.Pool, deadline: float) -> None:
        self._pool = pool
        self._deadline = deadline
        self.held: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self.held is None:
            self.held = await _acquire(self._pool, self._deadline)
        return self.held

    async def execute(self, query: str, *args: Any) -> Any:
        return await (await self._connection()).execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> Any:
        return await (await self._connection()).fetch(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await (await self._connection()).fetchval(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await (await self._connection()).fetchrow(query, *args)


COUNTED: ContextVar[bool] = ContextVar("preflight_statements_counted", default=True)
"""Whether the statements of the current task count among the checks' (the background sealer's
and sweeper's, on the same pool, do not)."""


class CountingConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that counts the statements it sends (the metric the check's cost
    test reads), BEGIN and COMMIT included: a call per statement, where a query logger wraps
    each in a context manager and schedules a callback."""

    on_statement: Callable[[], None] = staticmethod(lambda: None)

    def _count(self) -> None:
        if COUNTED.get():
            self.on_statement()

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return await super().execute(query, *args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return await super().fetch(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return await super().fetchval(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return await super().fetchrow(query, *args, **kwargs)


UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
"""SQLSTATEs that say the database is away, not that the statement is wrong: class 08
(connection exception) and 57P01–57P03 (admin shutdown, crash shutdown, cannot connect now: a
server stopping or starting). asyncpg reports these as plain errors, not OperationalError."""


BROKEN_CONNECTION = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
"""Errors of the connection itself, not of a statement. ``InternalClientError`` ("cannot switch
to state …; another operation is in progress") is a connection the server dropped while the
pool held it: the server's goodbye (57P01, a shutdown) arrived, its closing had not yet."""


def _connection_suspect(exc: BaseException) -> bool:
    """Whether ``exc`` may leave the connection it came from unusable: anything but an error
    PostgreSQL answered to a statement outside ``UNREACHABLE_SQLSTATES``, or an error of the
    request itself (raised between statements)."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "").startswith(UNREACHABLE_SQLSTATES)
    return isinstance(exc, (*BROKEN_CONNECTION, asyncio.CancelledError))


async def create_hot_store(
    url: str,
    pool_size: int,
    session_factory: async_sessionmaker[AsyncSession],
    on_statement: Callable[[], None],
) -> HotStore:
    """``on_statement`` is called for every statement sent (metrics count them)."""
    if is_sqlite(url):
        return HotStore(None, session_factory)

    async def count_statements(connection: CountingConnection) -> None:
        connection.on_statement = on_statement

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=pool_size + len(SERIAL_USERS),  # the serial ones beside the requests
        connection_class=CountingConnection,
        init=count_statements,
        reset=_keep,
        # PostgreSQL's connection slots are shared by every process: a burst's connections are
        # handed back soon after it, not kept idle for the default five minutes.
        max_inactive_connection_lifetime=IDLE_CONNECTION_S,
        timeout=CHECK_COMMAND_TIMEOUT_S,
        command_timeout=CHECK_COMMAND_TIMEOUT_S,
    )
    return HotStore(pool, session_factory)
