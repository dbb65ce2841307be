from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.core import versions
from app.core.db import HotDb, dialect_name, driver_fetch


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


async def load_key(db: HotDb, key_id: str) -> tuple[int | None, KeyRecord] | None:
    """The stored key ``key_id`` with its version token (one snapshot on PostgreSQL)."""
    if isinstance(db, AsyncSession):
        token = (await versions.tokens(db, [("key", key_id)])).get(("key", key_id))
        record = await key_record(db, key_id)
        return None if record is None else (token, record)
    rows = await db.fetch(
        "SELECT k.key_hash, k.role, k.accounts::text, k.revoked_at IS NOT NULL, v.token"
        " FROM api_keys k LEFT JOIN state_versions v ON v.scope = 'key' AND v.id = k.key_id"
        " WHERE k.key_id = $1",
        key_id,
    )
    if not rows:
        return None
    key_hash, role, accounts, revoked, token = rows[0]
    return token, KeyRecord(key_hash, role, json.loads(accounts) if accounts else None, revoked)
