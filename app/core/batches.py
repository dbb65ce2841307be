"""Group commit: the records of concurrent requests written by one statement and one commit.

A request hands its record over and waits until it is committed (acknowledged = committed).
Records handed over while a batch is being written go together in the next one; the first
record of an idle writer is written at once, so a lone request waits for nothing but its own
write, and under load each batch costs one round trip and one commit (one WAL flush) for all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")

WriteBatch = Callable[[list[_T]], Awaitable[list[Exception | None]]]
"""Writes a batch; answers, per record, None (committed) or the error its request answers
with. An error it raises fails every record of the batch (nothing of it was committed)."""


class GroupCommit(Generic[_T]):
    def __init__(self, write: WriteBatch[_T]) -> None:
        self._write = write
        self._pending: list[tuple[_T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, record: _T) -> None:
        """Return once ``record`` is committed; raise what its write raised."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    errors = await self._write([record for record, _ in batch])
                except Exception as exc:
                    errors = [exc] * len(batch)
                except BaseException:  # cancelled (shutdown): nobody waits forever
                    for _, future in [*batch, *self._pending]:
                        future.cancel()
                    self._pending = []
                    raise
                for (_, future), error in zip(batch, errors, strict=True):
                    if future.done():  # its request was cancelled; the record is written
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._writer = None
