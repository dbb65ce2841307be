from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.core.db import dialect_name, driver_fetch


@dataclass(frozen=True)
class KeyRecord:
    """What authenticating a request needs of a stored key."""

    key_hash: str
    role: str
    accounts: list[str] | None
    revoked: bool


async def key_record(session: AsyncSession, key_id: str) -> KeyRecord | None:
    """The stored key ``key_id`` (every request reads one: on PostgreSQL straight from asyncpg,
    without the ORM's per-statement cost)."""
    if dialect_name(session) == "postgresql":
        rows = await driver_fetch(
            session,
            "SELECT key_hash, role, accounts, revoked_at IS NOT NULL FROM api_keys"
            " WHERE key_id = $1",
            key_id,
        )
        if not rows:
            return None
        # SQLAlchemy's asyncpg dialect registers the JSON codecs: ``accounts`` arrives decoded.
        key_hash, role, accounts, revoked = rows[0]
        return KeyRecord(key_hash, role, accounts, revoked)
    key = await session.get(ApiKey, key_id)
    if key is None:
        return None
    return KeyRecord(key.key_hash, key.role, key.accounts, key.revoked_at is not None)


async def get(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def list_all(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()


def add(session: AsyncSession, key: ApiKey) -> None:
    session.add(key)
