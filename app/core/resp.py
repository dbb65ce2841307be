"""One Redis connection that carries many callers' commands at once.

The pre-trade check's one round trip to Redis is a single command. Through redis-py that costs
more of the event loop's time than the rest of its I/O together (a connection checked out of a
pool, the command encoded by a generic layer, a reply parsed through several). Redis answers
the commands of one connection in the order it received them, so concurrent callers can share
one: each writes its command and waits for the answer at its place in the queue. Encoding and
parsing are hiredis's (C).

A failure of the connection (refused, reset, a reply that does not come within the timeout)
fails every command in flight with an ``OSError`` and closes it; the next command opens a new
one. Whether to try again is the caller's decision (app/core/cache.py fails fast for a while).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.exceptions import ResponseError


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:  # an answer nobody asked for: the stream is out of step
                self.fail(ConnectionError("Redis answered more than it was asked"))
                return
            future = self.waiting.popleft()
            if future.done():  # its caller gave up (the connection is being closed)
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("Redis closed the connection")
        self._fail_waiting(self.lost)

    def fail(self, exc: Exception) -> None:
        self.lost = exc
        if self.transport is not None:
            self.transport.abort()
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(str(exc)))


class SharedConnection:
    """``host:port`` (or the Unix socket ``path``), database ``db``; every wait bounded by
    ``timeout`` seconds."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 0.5,
    ) -> None:
        self._address = (host, port, path)
        self._setup: list[tuple[str | int, ...]] = []
        if password is not None:
            self._setup.append(("AUTH", password) if username is None else
                               ("AUTH", username, password))  # fmt: skip
        if db:
            self._setup.append(("SELECT", db))
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # one opening for the callers that arrive meanwhile
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol
            loop = asyncio.get_running_loop()
            host, port, path = self._address
            async with asyncio.timeout(self._timeout):
                if path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, path)
                else:
                    _, protocol = await loop.create_connection(_Protocol, host, port)
            try:
                if self._setup:
                    await self._send(protocol, self._setup)
            except BaseException:
                protocol.fail(ConnectionError("Redis refused the connection's setup"))
                raise
            self._protocol = protocol
            return protocol

    async def _send(
        self, protocol: _Protocol, commands: Sequence[tuple[str | int, ...]]
    ) -> list[Any]:
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        protocol.waiting.extend(futures)
        # One write for them all; the stubs of pack_command want 1-tuples.
        protocol.transport.write(b"".join(hiredis.pack_command(cast(Any, c)) for c in commands))
        try:
            async with asyncio.timeout(self._timeout):
                # Every answer is awaited (an error answer does not leave the others behind).
                answers = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            # Their answers may still come, and would be taken for the next commands'.
            protocol.fail(TimeoutError("Redis did not answer in time"))
            raise
        except asyncio.CancelledError:
            if not all(f.done() for f in futures):  # same: the stream would be out of step
                protocol.fail(ConnectionError("a command was abandoned"))
            raise
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers

    async def execute(self, *command: str | int) -> Any:
        """The answer to ``command``: bulk strings decoded as UTF-8, errors raised as
        ``ResponseError``, connection failures as ``OSError``."""
        [answer] = await self._send(await self._connected(), [command])
        return answer

    async def pipeline(self, commands: Sequence[tuple[str | int, ...]]) -> list[Any]:
        """The answers to ``commands``, sent in one write and run by Redis in order (not as a
        transaction); the first error answer is raised once every answer has come."""
        if not commands:
            return []
        return await self._send(await self._connected(), commands)

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(ConnectionError("closed"))
            self._protocol = None
