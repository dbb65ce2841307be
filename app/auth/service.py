"""API keys: ``pf_<key_id>_<secret>``, shown once, stored as a sha256 hash, checked in
constant time. The secret carries 256 random bits, so a fast hash is enough."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.audit import service as audit
from app.auth import repository
from app.auth.models import ApiKey
from app.auth.principal import Principal, Role
from app.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from app.core.types import utcnow

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


async def authenticate(
    session: AsyncSession, presented: str, bootstrap_hash: str | None
) -> Principal:
    presented_hash = hash_key(presented)
    if bootstrap_hash is not None and hmac.compare_digest(presented_hash, bootstrap_hash):
        return Principal(BOOTSTRAP_KEY_ID, Role.ADMIN, None)
    key_id = _parse(presented)
    record = await repository.key_record(session, key_id) if key_id else None
    # Compare even when nothing was found, so timing does not reveal which ids exist.
    stored = record.key_hash if record is not None else "0" * 64
    if not hmac.compare_digest(presented_hash, stored) or record is None or key_id is None:
        raise Unauthorized("missing or invalid API key")
    if record.revoked:
        raise Unauthorized("this API key was revoked")
    accounts = None if record.accounts is None else frozenset(record.accounts)
    return Principal(key_id, Role(record.role), accounts)


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
