"""One-at-a-time gates by key, inside one process, and which keys were contended lately.

Reserving checks of one subaccount are judged one after another inside a process here, holding
no connection while they wait: a burst of them on one subaccount then opens no connection per
waiter. Across processes a reservation is written only if its subaccount has not moved since it
was judged; when it had (another process reserved there meanwhile), the key is noted as
contended, and for a while its reserving checks in this process take the subaccount's row lock
in PostgreSQL from the start — so a race between processes queues on the lock instead of
judging twice, each losing to the other in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.core.errors import Unavailable

CONTENDED_S = 1.0
"""How long a key stays contended after its last conflict."""


class Gates:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._contended: dict[str, float] = {}

    def contended(self, key: str) -> bool:
        """Whether ``key`` lost a race to another process within ``CONTENDED_S``."""
        until = self._contended.get(key)
        if until is None:
            return False
        if until > asyncio.get_running_loop().time():
            return True
        del self._contended[key]
        return False

    def note_contention(self, key: str) -> None:
        self._contended[key] = asyncio.get_running_loop().time() + CONTENDED_S

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
