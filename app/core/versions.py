"""State versions: what lets a process keep state resident and still answer as if it had read
it (design note, Resident, versioned state).

Database triggers (migration 8b2e4d0f3c21) give ``state_versions`` a new random token, in the
writing transaction, whenever a subaccount (its positions, balances, leverage, reservations,
fills or own row), an account (its row, or a new subaccount), an API key or any trading state
changes. A process keeps what it loaded with the token read *in the same snapshot* (or before
it), and each check reads the current tokens of everything that governs it in one statement: on
a match the resident copy is exactly what PostgreSQL holds, whichever process wrote last.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, String, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

VersionKey = tuple[str, str]
"""``(scope, id)``: ``("subaccount", id)``, ``("account", id)``, ``("key", key_id)`` or
``("trading", "")``."""

TRADING: VersionKey = ("trading", "")


class StateVersion(Base):
    __tablename__ = "state_versions"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)


async def tokens(session: AsyncSession, keys: Sequence[VersionKey]) -> dict[VersionKey, int]:
    """The current tokens of ``keys`` (absent: no row, nothing may be cached under it)."""
    if not keys:
        return {}
    query = select(StateVersion.scope, StateVersion.id, StateVersion.token).where(
        or_(*(and_(StateVersion.scope == scope, StateVersion.id == ident) for scope, ident in keys))
    )
    return {(row.scope, row.id): row.token for row in await session.execute(query)}


ABSENT = 0
"""The token of a key without a row (never written since the table was created or emptied):
the triggers only ever write random tokens, so the first write after it differs."""


class Resident:
    """Values a process keeps, each under the version token it was loaded at: ``get`` answers
    only while the caller's freshly read token is the same (None: no row, ``ABSENT``)."""

    def __init__(self) -> None:
        self._values: dict[VersionKey, tuple[int, object]] = {}

    def get(self, key: VersionKey, token: int | None) -> object | None:
        entry = self._values.get(key)
        current = ABSENT if token is None else token
        return entry[1] if entry is not None and entry[0] == current else None

    def peek(self, key: VersionKey) -> object | None:
        """The value last kept, however current (to know what to ask the database about)."""
        entry = self._values.get(key)
        return None if entry is None else entry[1]

    def token_of(self, key: VersionKey, value: object) -> int | None:
        """The token ``value`` is kept under at ``key`` (None when another value replaced it,
        or it was never kept there)."""
        entry = self._values.get(key)
        return entry[0] if entry is not None and entry[1] is value else None

    def put(self, key: VersionKey, token: int | None, value: object) -> None:
        self._values[key] = (ABSENT if token is None else token, value)
