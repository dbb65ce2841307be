"""Group calls: what concurrent requests hand over, done by one statement for all of them.

A request hands its item over and waits for its own result. Items handed over while a batch is
running go together in the next one; the first item of an idle group runs at once, so a lone
request waits for nothing but its own call, and under load each batch costs one round trip
for all. Two uses: the records of checks (group commit: one statement and one commit, one WAL
flush, for a batch; acknowledged = committed) and the versions the checks read (one statement
for a batch; each item is read by a statement that starts after it was handed over, so a check
still sees every write acknowledged before it began).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

RunBatch = Callable[[list[_T]], Awaitable[Sequence[_R | Exception]]]
"""Runs a batch; answers, per item, its result or the error its request answers with. An error
it raises fails every item of the batch."""


class GroupCall(Generic[_T, _R]):
    def __init__(self, run: RunBatch[_T, _R]) -> None:
        self._run = run
        self._pending: list[tuple[_T, asyncio.Future[_R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def call(self, item: _T) -> _R:
        """``item``'s result, once the batch it went in has run; raise what it failed with."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                except BaseException:  # cancelled (shutdown): nobody waits forever
                    for _, future in [*batch, *self._pending]:
                        future.cancel()
                    self._pending = []
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request was cancelled (a write is done all the same)
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._runner = None
