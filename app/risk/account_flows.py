"""Account writes that risk must check, and what follows them: the margin checks behind a
mode change and a withdrawal, and the margin calls after fills, transfers and snapshots. The
writes themselves are app/accounts' (service, venue); these put the check before and the
evaluation after, in the caller's transaction."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.accounts import venue
from app.accounts.models import Fill, Subaccount, Transfer
from app.accounts.schemas import (
    FillIn,
    SnapshotIn,
    SubaccountPatch,
    TradingStateOut,
    TransferIn,
)
from app.auth.principal import Principal
from app.core.runtime import Runtime
from app.risk import margin_calls, service


async def update_subaccount(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    subaccount_id: str,
    body: SubaccountPatch,
) -> Subaccount:
    """Change the mode or strategy label; a new mode must keep the subaccount above water."""
    subaccount = await accounts_service.get_subaccount(session, principal, subaccount_id, lock=True)
    if body.margin_mode is not None and body.margin_mode != subaccount.margin_mode:
        await service.check_mode_change(session, runtime, subaccount, body.margin_mode)
    await accounts_service.update_subaccount(session, principal, subaccount, body)
    return subaccount


async def trading_states(
    session: AsyncSession, runtime: Runtime, principal: Principal
) -> list[TradingStateOut]:
    """The trading states the key may see, with the automatic states of every mark posted
    before this request (as margin calls)."""
    await margin_calls.sweep(session, runtime)
    return await accounts_service.list_trading_states(session, principal)


async def record_transfer(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    subaccount_id: str,
    body: TransferIn,
) -> tuple[Transfer, bool]:
    """A deposit, withdrawal or transfer (a withdrawal checked against the margin it leaves),
    then the margin calls of the subaccounts it moved; the second value is False for a
    replay."""
    subaccount = await accounts_service.get_subaccount(session, principal, subaccount_id)
    transfer, created = await venue.record_transfer(
        session,
        principal,
        subaccount,
        body,
        check_withdrawal=functools.partial(service.check_withdrawal, session, runtime),
    )
    if created:
        moved = [subaccount.subaccount_id, *filter(None, [transfer.to_subaccount_id])]
        await margin_calls.evaluate(session, runtime, moved)
    return transfer, created


async def record_fills(
    session: AsyncSession, runtime: Runtime, principal: Principal, fills: Sequence[FillIn]
) -> list[Fill]:
    """A batch of fills, then the margin calls of their subaccounts."""
    recorded = await venue.record_fills(session, principal, fills)
    await margin_calls.evaluate(session, runtime, sorted({f.subaccount_id for f in fills}))
    return recorded


async def load_snapshot(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    subaccount_id: str,
    body: SnapshotIn,
) -> Subaccount:
    """The venue's snapshot in place of the subaccount's state, then its margin calls."""
    subaccount = await accounts_service.get_subaccount(session, principal, subaccount_id)
    await venue.load_snapshot(session, principal, subaccount, body)
    await margin_calls.evaluate(session, runtime, [subaccount.subaccount_id])
    return subaccount
