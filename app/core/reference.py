"""Reference data cached in the process, as current as PostgreSQL.

Every check reads the instruments, the assets and the risk parameters; they change a few times
a day. Database triggers (migration c41d7a0e9b52) give the one ``reference_version`` row a new
random token whenever any of those tables changes, in the same transaction. A process keeps
what it loaded under the token it read *before* loading, and each use reads the token again
(one primary-key read): a change committed by any process is seen by the next request of every
process, exactly as if nothing were cached.

Random rather than counted: a transaction that changes reference data and rolls back leaves a
token that no committed state ever has, so nothing loaded under it is ever taken for current.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, dialect_name, driver_fetch

T = TypeVar("T")


class ReferenceVersion(Base):
    __tablename__ = "reference_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)


async def reference_token(session: AsyncSession) -> int | None:
    """The current token; None when the row is missing (then nothing is cached)."""
    if dialect_name(session) == "postgresql":
        rows = await driver_fetch(session, "SELECT token FROM reference_version WHERE id = 1")
        return int(rows[0][0]) if rows else None
    return await session.scalar(select(ReferenceVersion.token).where(ReferenceVersion.id == 1))


class ReferenceCache:
    """A value derived from the reference tables, kept with the token it was loaded at."""

    def __init__(self) -> None:
        self._entry: tuple[int, Any] | None = None

    def at(self, token: int | None) -> Any | None:
        """The value kept under ``token`` (a token the caller just read), else None."""
        entry = self._entry
        return entry[1] if token is not None and entry is not None and entry[0] == token else None

    async def get(self, session: AsyncSession, load: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``load(session)``'s value, reused while the token stays the same."""
        token = await reference_token(session)
        if token is not None and self._entry is not None and self._entry[0] == token:
            return cast(T, self._entry[1])
        value = await load(session)
        # A session holding unflushed changes might hand the loader its own uncommitted view.
        if token is not None and not (session.new or session.dirty or session.deleted):
            self._entry = (token, value)
        return value
