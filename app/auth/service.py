"""API keys: ``pf_<key_id>_<secret>``, shown once, stored as a sha256 hash, checked in
constant time. The secret carries 256 random bits, so a fast hash is enough."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import repository
from app.auth.principal import Principal, Role
from app.auth.repository import KeyRecord
from app.core.db import HotDb, HotStore
from app.core.errors import Forbidden, Unauthorized
from app.core.versions import ABSENT, Resident

BOOTSTRAP_KEY_ID = "bootstrap-admin"
KEY_PREFIX = "pf_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(key: str) -> str | None:
    """The key id inside a presented key, or None when it is not shaped like one of ours."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and key_id and secret else None


def _admit(key_id: str | None, presented_hash: str, record: KeyRecord | None) -> Principal:
    # Compare even when nothing was found, so timing does not reveal which ids exist.
    stored = record.key_hash if record is not None else "0" * 64
    if not hmac.compare_digest(presented_hash, stored) or record is None or key_id is None:
        raise Unauthorized("missing or invalid API key")
    if record.revoked:
        raise Unauthorized("this API key was revoked")
    accounts = None if record.accounts is None else frozenset(record.accounts)
    return Principal(key_id, Role(record.role), accounts)


async def authenticate(
    session: AsyncSession, presented: str, bootstrap_hash: str | None
) -> Principal:
    presented_hash = hash_key(presented)
    if bootstrap_hash is not None and hmac.compare_digest(presented_hash, bootstrap_hash):
        return Principal(BOOTSTRAP_KEY_ID, Role.ADMIN, None)
    key_id = _parse(presented)
    record = await repository.key_record(session, key_id) if key_id else None
    return _admit(key_id, presented_hash, record)


@dataclass(frozen=True)
class Caller:
    """A principal admitted from the process's copy of its key: ``key_token`` is the version
    that copy was loaded at, which the check confirms in its one read (None: the bootstrap
    key, which lives in the environment, not the database)."""

    principal: Principal
    key_token: int | None
    presented_hash: str


def _kept_key(resident: Resident, key_id: str) -> tuple[int, KeyRecord] | None:
    return cast(tuple[int, KeyRecord] | None, resident.peek(("key", key_id)))


async def caller(
    store: HotStore, resident: Resident, presented: str, bootstrap_hash: str | None
) -> Caller:
    """Authenticate from the resident copy of the key (loaded once per version)."""
    presented_hash = hash_key(presented)
    if bootstrap_hash is not None and hmac.compare_digest(presented_hash, bootstrap_hash):
        return Caller(Principal(BOOTSTRAP_KEY_ID, Role.ADMIN, None), None, presented_hash)
    key_id = _parse(presented)
    kept = _kept_key(resident, key_id) if key_id else None
    if kept is None and key_id:
        async with store.connect() as db:
            kept = await _load_key(db, resident, key_id)
    token, record = kept if kept is not None else (None, None)
    return Caller(_admit(key_id, presented_hash, record), token, presented_hash)


async def _load_key(db: HotDb, resident: Resident, key_id: str) -> tuple[int, KeyRecord] | None:
    loaded = await repository.load_key(db, key_id)
    if loaded is None:
        return None
    token, record = loaded[0] or ABSENT, loaded[1]
    resident.put(("key", key_id), token, (token, record))
    return token, record


def require_role(principal: Principal, roles: frozenset[Role], *, unscoped: bool = False) -> None:
    """Refuse (403) a principal outside ``roles``; with ``unscoped``, also a key scoped to some
    accounts (api.md, Auth: a write every account shares reaches outside any scope)."""
    if principal.role not in roles:
        raise Forbidden(f"the {principal.role.value} role may not do this")
    if unscoped and principal.accounts is not None:
        raise Forbidden(
            "a key scoped to accounts cannot change what every account shares "
            "(reference data, risk parameters, market data)"
        )


async def confirm(
    db: HotDb, resident: Resident, who: Caller, current_token: int | None
) -> Principal:
    """The caller's principal as of now: its key's ``current_token`` (just read) is the one
    it was admitted under, else the key is read again (revoked or changed since)."""
    if who.key_token is None or who.key_token == (current_token or ABSENT):
        return who.principal
    key_id = who.principal.key_id
    kept = await _load_key(db, resident, key_id)
    return _admit(key_id, who.presented_hash, None if kept is None else kept[1])
