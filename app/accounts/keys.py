"""API-key management: create, list and revoke keys (audited). A key's accounts must exist, and
a key limited to some accounts only hands out or sees keys within them. Authentication itself
(the key format, its hash, admitting a presented key) is app/auth's."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.audit import service as audit
from app.auth import repository
from app.auth.models import ApiKey
from app.auth.principal import Role
from app.auth.service import KEY_PREFIX, hash_key
from app.core.errors import Forbidden, InvalidInput, NotFound
from app.core.types import utcnow


@dataclass(frozen=True)
class CreatedKey:
    key: str
    record: ApiKey


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
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
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
