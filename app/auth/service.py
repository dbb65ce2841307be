"""API keys: ``pf_<key_id>_<secret>``, shown once, stored as a sha256 hash, checked in
constant time. The secret carries 256 random bits, so a fast hash is enough."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.audit import service as audit
from app.auth import repository
from app.auth.models import ApiKey
from app.auth.principal import Principal, Role
from app.auth.repository import KeyRecord
from app.core.db import HotDb, HotStore
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from app.core.types import utcnow
from app.core.versions import ABSENT, Resident

BOOTSTRAP_KEY_ID = "bootstrap-admin"
_PREFIX = "pf_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: str
    record: ApiKey


def _parse(key: str) -> str | None:
    """The key id inside a presented key, or None when it is not shaped like one of ours."""
    if not key.startswith(_PREFIX):
        return None
    key_id, sep, secret = key[len(_PREFIX) :].partition("_")
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


def _within(scope: frozenset[str] | None, accounts: Sequence[str] | None) -> bool:
    """Whether a key limited to ``scope`` may hand out (or see) a key for ``accounts``."""
    return scope is None or (accounts is not None and set(accounts) <= scope)


async def create(
    session: AsyncSession,
    actor: audit.Actor,
    role: Role,
    accounts: Sequence[str] | None,
    label: str | None,
    scope: frozenset[str] | None = None,
) -> CreatedKey:
    """Create a key. A creator limited to ``scope`` can only create keys limited to (a part of)
    that scope: a scope never grows by minting keys."""
    if not _within(scope, accounts):
        raise Forbidden("a scoped key can only create keys scoped to its own accounts")
    if accounts is not None:
        for index, account_id in enumerate(accounts):
            if await accounts_repository.get_account(session, account_id) is None:
                raise InvalidInput(f"accounts[{index}]", f"unknown account {account_id!r}")
    key_id = secrets.token_hex(8)
    key = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        key_id=key_id,
        key_hash=hash_key(key),
        role=role.value,
        accounts=sorted(set(accounts)) if accounts is not None else None,
        label=label,
        created_at=utcnow(),
        revoked_at=None,
    )
    repository.add(session, record)
    await session.flush()
    await audit.record(
        session,
        "api_key.created",
        actor,
        {"key_id": key_id, "role": role.value, "accounts": record.accounts, "label": label},
    )
    return CreatedKey(key, record)


async def list_keys(session: AsyncSession, scope: frozenset[str] | None) -> list[ApiKey]:
    return [key for key in await repository.list_all(session) if _within(scope, key.accounts)]


async def revoke(
    session: AsyncSession, actor: audit.Actor, key_id: str, scope: frozenset[str] | None
) -> ApiKey:
    record = await repository.get(session, key_id)
    if record is None or not _within(scope, record.accounts):
        raise NotFound(f"API key {key_id!r} not found")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        await session.flush()
        await audit.record(session, "api_key.revoked", actor, {"key_id": key_id})
    return record
