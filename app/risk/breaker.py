"""The automatic circuit breaker (risk parameter ``auto_reduce_only = {at, release_below}``).

A subaccount with positions open whose ``maintenance_margin_ratio`` reaches ``at`` — or whose
equity is ≤ 0 — is put in ``reduce_only``; it is released when its ratio falls below
``release_below`` (between the two it stays as it is, so a book hovering at ``at`` does not
flap). The breaker runs wherever margin calls are evaluated (:func:`app.risk.margin_calls.evaluate`:
the sweep after marks, every fill, transfer and snapshot), in the same transaction.

Its state is a ``trading_states`` row with ``source = 'auto'``, beside (never instead of) a
state set by hand: the check applies the stricter (app/pretrade/state.py). Writing the row
renews the ``trading`` version in the same transaction (a trigger), so every process's next
check sees it. Each set and release is audited (``trading_state.set``, ``source: "auto"``) and
written to the webhook outbox (``trading_state.auto_set`` / ``trading_state.auto_released``).
Only transitions write: a subaccount that stays past ``at`` is not written again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import TradingState
from app.accounts.schemas import TradingStateOut
from app.audit import service as audit
from app.core.types import utcnow
from app.engine import AutoReduceOnly
from app.risk import repository
from app.risk.batch import BatchEvaluation
from app.risk.models import WebhookEvent

SYSTEM = audit.Actor(None)
"""The breaker acts on no key's behalf."""


def _shown(ratio: float) -> float | None:
    return None if math.isinf(ratio) else ratio


def tripped(
    breaker: AutoReduceOnly, ratios: np.ndarray, equity: np.ndarray, holding: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(set, release)`` masks over s subaccounts: ``set`` where positions are open and
    ``ratio ≥ at`` or ``equity ≤ 0``; ``release`` where ``ratio < release_below`` and not
    ``set``. ``ratios`` as :func:`app.risk.batch.risk_order` (+inf below zero equity)."""
    trip = holding & ((ratios >= breaker.at) | (equity <= 0))
    return trip, (ratios < breaker.release_below) & ~trip


async def evaluate(
    session: AsyncSession,
    breaker: AutoReduceOnly | None,
    evaluation: BatchEvaluation,
    ratios: np.ndarray,
) -> None:
    """Set and release the automatic states of ``evaluation``'s subaccounts (``ratios``: their
    :func:`app.risk.batch.risk_order`)."""
    subaccounts = evaluation.subaccounts
    ids = [s.subaccount_id for s in subaccounts]
    account_of = {s.subaccount_id: s.account_id for s in subaccounts}
    now = utcnow()
    if breaker is None:
        # Off. Turning it off released every automatic state; one an evaluation that read the
        # parameters just before set since then goes here.
        released = await accounts_repository.delete_auto_states(session, ids)
        await _released(session, released, account_of, {}, "auto_reduce_only is off", now)
        return
    batch = evaluation.batch
    open_rows = batch.positions.size != 0
    holding = np.bincount(batch.position_owner[open_rows], minlength=len(ids)) > 0
    trip, release = tripped(breaker, ratios, np.asarray(evaluation.summary.equity), holding)
    held = await accounts_repository.auto_reduce_only_of(session, ids)
    ratio_of = {sid: _shown(float(ratios[i])) for i, sid in enumerate(ids)}
    to_set = [i for i in np.flatnonzero(trip).tolist() if ids[i] not in held]
    to_release = [ids[i] for i in np.flatnonzero(release).tolist() if ids[i] in held]
    rows = [
        TradingState(
            scope="subaccount",
            scope_id=ids[i],
            source="auto",
            state="reduce_only",
            reason=(
                f"auto_reduce_only: maintenance margin ratio {float(ratios[i]):.6g}"
                f" reached {breaker.at:g}"
                if math.isfinite(ratios[i]) and float(evaluation.summary.equity[i]) > 0
                else "auto_reduce_only: equity at or below zero with positions open"
            ),
            updated_at=now,
        )
        for i in to_set
    ]
    inserted = await accounts_repository.insert_auto_states(session, rows)
    for row in rows:
        if row.scope_id in inserted:
            await _record(session, row, account_of[row.scope_id], ratio_of[row.scope_id], now)
    released = await accounts_repository.delete_auto_states(session, to_release)
    await _released(
        session,
        released,
        account_of,
        ratio_of,
        f"auto_reduce_only: maintenance margin ratio below {breaker.release_below:g}",
        now,
    )


async def release_all(session: AsyncSession) -> None:
    """Release every automatic state (the breaker was turned off)."""
    released = await accounts_repository.delete_auto_states(session, None)
    if not released:
        return
    subaccounts = await accounts_repository.get_subaccounts(
        session, [row.scope_id for row in released]
    )
    account_of = {s.subaccount_id: s.account_id for s in subaccounts}
    await _released(session, released, account_of, {}, "auto_reduce_only is off", utcnow())


async def _released(
    session: AsyncSession,
    rows: Sequence[TradingState],
    account_of: Mapping[str, str],
    ratio_of: Mapping[str, float | None],
    reason: str,
    now: datetime,
) -> None:
    for row in rows:
        active = TradingState(
            scope=row.scope,
            scope_id=row.scope_id,
            source="auto",
            state="active",
            reason=reason,
            updated_at=now,
        )
        await _record(
            session, active, account_of.get(row.scope_id), ratio_of.get(row.scope_id), now
        )


async def _record(
    session: AsyncSession,
    row: TradingState,
    account_id: str | None,
    ratio: float | None,
    now: datetime,
) -> None:
    """The audit entry and the webhook event of one transition."""
    out = TradingStateOut(
        scope=row.scope,
        id=row.scope_id,
        state=row.state,
        source="auto",
        reason=row.reason,
        updated_at=now,
    )
    await audit.record(
        session,
        "trading_state.set",
        SYSTEM,
        {**out.model_dump(mode="json", exclude={"updated_at"}), "ratio": ratio},
        account_id=account_id,
        subaccount_id=row.scope_id,
    )
    repository.add_event(
        session,
        WebhookEvent(
            event="trading_state.auto_set"
            if row.state != "active"
            else "trading_state.auto_released",
            payload={**out.model_dump(mode="json"), "account_id": account_id, "ratio": ratio},
            created_at=now,
            attempts=0,
            next_attempt_at=now,
            delivered_at=None,
            last_error=None,
        ),
    )
