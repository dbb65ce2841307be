"""One-at-a-time gates by key, inside one process.

Reserving checks of one subaccount are judged one after another across processes by its row
lock in PostgreSQL. Inside a process they also queue here first, holding no connection while
they wait: a burst of them on one subaccount then opens no connection per waiter (each costs
milliseconds of both processes' CPU) and leaves one waiter per process in PostgreSQL's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.core.errors import Unavailable


class Gates:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, key: str, deadline: float) -> AsyncIterator[None]:
        """Hold ``key``'s gate for the block, waiting until ``deadline`` (the event loop's
        clock) at most; past it, 503 ``UNAVAILABLE`` (nothing done: retry), as the database's
        own lock wait would have been answered — a gate is held that long only while the
        database is slow or away. A gate is forgotten when nobody holds or awaits it."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await lock.acquire()
            except TimeoutError:
                raise Unavailable(
                    f"earlier reserving checks on {key!r} held it past this check's deadline "
                    "(the database is slow or unreachable); retry"
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
