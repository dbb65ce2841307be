"""Accounts, subaccounts, their limits and chosen leverage, and trading states."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.models import Account, Leverage, Subaccount, TradingState
from app.accounts.schemas import (
    AccountIn,
    AccountLimitsIn,
    AccountOut,
    LeverageIn,
    LimitsOut,
    SubaccountIn,
    SubaccountLimitsIn,
    SubaccountOut,
    SubaccountPatch,
    SymbolLimitIn,
    TradingStateIn,
    TradingStateOut,
)
from app.audit import service as audit
from app.auth.principal import Principal
from app.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.core.types import utcnow
from app.instruments import repository as instruments_repository
from app.instruments import service as instruments_service

# --- accounts -----------------------------------------------------------------------------


async def create_account(
    session: AsyncSession, principal: Principal, body: AccountIn
) -> tuple[Account, bool]:
    """Create an account; replaying the same body answers the existing one (not created)."""
    principal.require_account(body.account_id, f"account {body.account_id!r}")
    existing = await repository.get_account(session, body.account_id)
    if existing is not None:
        if existing.name != body.name:
            raise Conflict(f"account {body.account_id!r} already exists with another name")
        return existing, False
    account = Account(account_id=body.account_id, name=body.name, limits={}, created_at=utcnow())
    repository.add(session, account)
    await session.flush()
    await audit.record(
        session, "account.created", principal.actor, body.model_dump(), account_id=body.account_id
    )
    return account, True


async def get_account(session: AsyncSession, principal: Principal, account_id: str) -> Account:
    principal.require_account(account_id, f"account {account_id!r}")
    account = await repository.get_account(session, account_id)
    if account is None:
        raise NotFound(f"account {account_id!r} not found")
    return account


async def list_accounts(session: AsyncSession, principal: Principal) -> Sequence[Account]:
    return await repository.list_accounts(session, principal.accounts)


async def account_out(session: AsyncSession, account: Account) -> AccountOut:
    return AccountOut(
        account_id=account.account_id,
        name=account.name,
        limits=limits_out(account.limits),
        subaccounts=await repository.subaccount_ids_of(session, account.account_id),
        created_at=account.created_at,
    )


# --- subaccounts --------------------------------------------------------------------------


async def create_subaccount(
    session: AsyncSession, principal: Principal, body: SubaccountIn
) -> tuple[Subaccount, bool]:
    principal.require_account(body.account_id, f"account {body.account_id!r}")
    if await repository.get_account(session, body.account_id) is None:
        raise InvalidInput("account_id", f"unknown account {body.account_id!r}")
    existing = await repository.get_subaccount(session, body.subaccount_id)
    if existing is not None:
        same = (existing.account_id, existing.margin_mode, existing.strategy) == (
            body.account_id,
            body.margin_mode,
            body.strategy,
        )
        if not same or not principal.sees(existing.account_id):
            raise Conflict(f"subaccount {body.subaccount_id!r} already exists")
        return existing, False
    subaccount = Subaccount(
        subaccount_id=body.subaccount_id,
        account_id=body.account_id,
        margin_mode=body.margin_mode,
        strategy=body.strategy,
        limits={},
        created_at=utcnow(),
    )
    repository.add(session, subaccount)
    await session.flush()
    await audit.record(
        session,
        "subaccount.created",
        principal.actor,
        body.model_dump(),
        account_id=body.account_id,
        subaccount_id=body.subaccount_id,
    )
    return subaccount, True


async def get_subaccount(
    session: AsyncSession, principal: Principal, subaccount_id: str, *, lock: bool = False
) -> Subaccount:
    """The subaccount, if the key may see it (else 404); ``lock`` row-locks it for writing."""
    subaccount = await repository.get_subaccount(session, subaccount_id)
    if subaccount is None or not principal.sees(subaccount.account_id):
        raise NotFound(f"subaccount {subaccount_id!r} not found")
    if lock:
        await repository.lock_subaccounts(session, [subaccount_id])
    return subaccount


async def list_subaccounts(
    session: AsyncSession, principal: Principal, account_id: str | None
) -> Sequence[Subaccount]:
    return await repository.list_subaccounts(session, account_id, principal.accounts)


async def update_subaccount(
    session: AsyncSession, principal: Principal, subaccount: Subaccount, body: SubaccountPatch
) -> Subaccount:
    """Change the mode or strategy label. The caller has checked that the new mode keeps the
    subaccount above water."""
    changes = body.model_dump(exclude_unset=True)
    if "margin_mode" in changes and changes["margin_mode"] is None:
        raise InvalidInput("margin_mode", "must be isolated, cross or portfolio")
    for name, value in changes.items():
        setattr(subaccount, name, value)
    await session.flush()
    await audit.record(
        session,
        "subaccount.updated",
        principal.actor,
        {"subaccount_id": subaccount.subaccount_id, **changes},
        account_id=subaccount.account_id,
        subaccount_id=subaccount.subaccount_id,
    )
    return subaccount


async def subaccount_out(session: AsyncSession, subaccount: Subaccount) -> SubaccountOut:
    leverage = await repository.leverage_of(session, subaccount.subaccount_id)
    return SubaccountOut(
        subaccount_id=subaccount.subaccount_id,
        account_id=subaccount.account_id,
        margin_mode=subaccount.margin_mode,
        strategy=subaccount.strategy,
        limits=limits_out(subaccount.limits),
        leverage={symbol: row.leverage for symbol, row in sorted(leverage.items())},
        created_at=subaccount.created_at,
    )


# --- limits ---------------------------------------------------------------------------------


def _stored_symbol_limit(limit: SymbolLimitIn) -> dict[str, Any]:
    """``{"value"?, "warn_at", "by_symbol"?: {symbol: {"value", "warn_at"}}}``: a symbol's
    bare number takes the limit's ``warn_at``, written out so readers need no default."""
    stored: dict[str, Any] = {"warn_at": str(limit.warn_at)}
    if limit.value is not None:
        stored["value"] = str(limit.value)
    if limit.by_symbol:
        stored["by_symbol"] = {
            symbol: {
                "value": str(cap.value),
                "warn_at": str(limit.warn_at if cap.warn_at is None else cap.warn_at),
            }
            for symbol, cap in sorted(limit.by_symbol.items())
        }
    return stored


def _stored_limits(body: BaseModel) -> dict[str, Any]:
    """Limits as stored: every limit becomes ``{"value": "…", "warn_at": "…"}`` (the per-symbol
    ones also carry ``by_symbol``, and ``value`` only when given)."""
    stored: dict[str, Any] = {}
    for name, value in body:
        if value is None:
            continue
        if name == "strategy_limits":
            stored[name] = {strategy: _stored_limits(caps) for strategy, caps in value.items()}
        elif isinstance(value, SymbolLimitIn):
            stored[name] = _stored_symbol_limit(value)
        else:
            stored[name] = {"value": str(value.value), "warn_at": str(value.warn_at)}
    return stored


def limits_out(stored: dict[str, Any]) -> LimitsOut:
    return LimitsOut.model_validate(stored)


async def put_account_limits(
    session: AsyncSession, principal: Principal, account: Account, body: AccountLimitsIn
) -> Account:
    account.limits = _stored_limits(body)
    await session.flush()
    await audit.record(
        session,
        "limits.account",
        principal.actor,
        {"account_id": account.account_id, "limits": account.limits},
        account_id=account.account_id,
    )
    return account


async def put_subaccount_limits(
    session: AsyncSession, principal: Principal, subaccount: Subaccount, body: SubaccountLimitsIn
) -> Subaccount:
    subaccount.limits = _stored_limits(body)
    await session.flush()
    await audit.record(
        session,
        "limits.subaccount",
        principal.actor,
        {"subaccount_id": subaccount.subaccount_id, "limits": subaccount.limits},
        account_id=subaccount.account_id,
        subaccount_id=subaccount.subaccount_id,
    )
    return subaccount


# --- chosen leverage -----------------------------------------------------------------------


async def set_leverage(
    session: AsyncSession, principal: Principal, subaccount: Subaccount, body: LeverageIn
) -> Subaccount:
    """Chosen leverage runs from 1 to the instrument's first-tier maximum (1 / its IMF)."""
    instrument = await instruments_repository.get_instrument(session, body.instrument)
    if instrument is None:
        raise InvalidInput("instrument", f"unknown instrument {body.instrument!r}")
    maximum = instruments_service.max_leverage(instrument)
    if maximum is None:
        raise InvalidInput(
            "instrument", f"{body.instrument} is an option: chosen leverage does not apply to it"
        )
    if not 1 <= body.leverage <= maximum:
        raise InvalidInput("leverage", f"must be between 1 and {maximum.normalize():f}")
    rows = await repository.leverage_of(session, subaccount.subaccount_id)
    row = rows.get(body.instrument)
    if row is None:
        row = Leverage(subaccount_id=subaccount.subaccount_id, instrument=body.instrument)
        repository.add(session, row)
    row.leverage = body.leverage
    await session.flush()
    await audit.record(
        session,
        "leverage.set",
        principal.actor,
        {"subaccount_id": subaccount.subaccount_id, **body.model_dump()},
        account_id=subaccount.account_id,
        subaccount_id=subaccount.subaccount_id,
    )
    return subaccount


# --- trading states -------------------------------------------------------------------------


async def _scope_exists(session: AsyncSession, principal: Principal, body: TradingStateIn) -> None:
    assert body.id is not None
    if body.scope == "account":
        if not principal.sees(body.id) or await repository.get_account(session, body.id) is None:
            raise InvalidInput("id", f"unknown account {body.id!r}")
    elif body.scope == "subaccount":
        subaccount = await repository.get_subaccount(session, body.id)
        if subaccount is None or not principal.sees(subaccount.account_id):
            raise InvalidInput("id", f"unknown subaccount {body.id!r}")
    elif await instruments_repository.get_instrument(session, body.id) is None:
        raise InvalidInput("id", f"unknown instrument {body.id!r}")


async def set_trading_state(
    session: AsyncSession, principal: Principal, body: TradingStateIn
) -> TradingStateOut:
    if body.scope in ("global", "instrument") and principal.accounts is not None:
        raise Forbidden(f"a key scoped to accounts cannot set the {body.scope} trading state")
    if body.scope != "global":
        await _scope_exists(session, principal, body)
    scope_id = body.id or ""
    # Only the manual state: the circuit breaker's own state of the same scope stands apart.
    row = await repository.get_trading_state(session, body.scope, scope_id, "manual")
    now = utcnow()
    if body.state == "active":
        # Active is the default: only non-active states are kept.
        if row is not None:
            await repository.remove(session, row)
    else:
        if row is None:
            row = TradingState(scope=body.scope, scope_id=scope_id, source="manual")
            repository.add(session, row)
        row.state, row.reason, row.updated_at = body.state, body.reason, now
    await session.flush()
    await audit.record(session, "trading_state.set", principal.actor, body.model_dump())
    return TradingStateOut(
        scope=body.scope,
        id=body.id,
        state=body.state,
        source="manual",
        reason=body.reason,
        updated_at=now,
    )


async def _visible(session: AsyncSession, principal: Principal, row: TradingState) -> bool:
    if principal.accounts is None or row.scope in ("global", "instrument"):
        return True
    if row.scope == "account":
        return principal.sees(row.scope_id)
    subaccount = await repository.get_subaccount(session, row.scope_id)
    return subaccount is not None and principal.sees(subaccount.account_id)


async def list_trading_states(session: AsyncSession, principal: Principal) -> list[TradingStateOut]:
    """Every non-active state the key may see (others' accounts are not revealed)."""
    rows = [
        row
        for row in await repository.list_trading_states(session)
        if await _visible(session, principal, row)
    ]
    return [
        TradingStateOut(
            scope=row.scope,
            id=row.scope_id or None,
            state=row.state,
            source=row.source,
            reason=row.reason,
            updated_at=row.updated_at,
        )
        for row in rows
    ]
