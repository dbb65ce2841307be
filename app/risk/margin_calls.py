"""Margin calls: evaluated for the subaccounts holding what moved — by the sweep after mark posts
(off the post's request, below), and in the transaction of every fill, transfer and snapshot —
in one batch engine call; each raise or resolve writes an outbox event that a worker delivers
to the webhook.

The sweep: a mark post stores its marks, notes the symbols that moved (``marks_moved``, in its
own transaction) and answers. A sweep takes every noted symbol and evaluates their holders in
one batch, in one transaction: a sweep that fails leaves its symbols noted for the next. One
sweep runs at a time across processes (an advisory lock); every process runs
:func:`sweep_forever`, so a process that dies hands over at the next tick, and posts arriving
faster than that are coalesced into one sweep. Readers of margin calls sweep first (waiting for
a running sweep), so they see the calls of every mark posted before their request.

Levels (risk parameters): ``warning`` when ``maintenance_margin_ratio ≥ margin_call_warning``
(default 0.8), ``liquidation`` when ``≥ margin_call_liquidation`` (1.0); equity ≤ 0 with
anything open counts as past both. Shortfall: what a deposit must bring to get back below the
level, ``max(0, MM / level − E)``. A limit with ``warn_at`` raises a ``limit`` call when its
usage (``gross notional / max_gross_notional``, ``leverage / max_leverage``) reaches
``warn_at``; the per-symbol caps (``max_position_notional`` per instrument,
``max_underlying_notional`` per underlying) raise one call per symbol, subject
``<limit>:<symbol>``, each resolving on its own. A call resolves itself when the subaccount is
back below its level. The automatic circuit breaker (app/risk/breaker.py) is evaluated with
them, from the same batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.limits import limit_value, symbol_cap
from app.audit import service as audit
from app.auth.principal import Principal
from app.core.db import COUNTED
from app.core.errors import Conflict, NotFound
from app.core.outages import Outage
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import MarginMode, isolated_positions
from app.engine.rounding import requirement_to_decimal
from app.marketdata import repository as marketdata_repository
from app.risk import breaker, repository, resident, service
from app.risk.batch import BatchEvaluation, evaluate_subaccounts, risk_order
from app.risk.models import MarginCall, WebhookEvent
from app.risk.schemas import MarginCallOut

log = logging.getLogger("preflight.risk")


@dataclass(frozen=True)
class Breach:
    level: str
    subject: str
    ratio: float | None
    shortfall: Decimal


def margin_call_out(call: MarginCall) -> MarginCallOut:
    return MarginCallOut.model_validate(call, from_attributes=True)


def _breaches(
    ratio: float,
    equity: float,
    maintenance: float,
    gross: float,
    limits: dict[str, Any],
    warning: float,
    liquidation: float,
    decimals: int,
) -> list[Breach]:
    shown = None if math.isinf(ratio) else ratio
    found = []
    for level, threshold in (("warning", warning), ("liquidation", liquidation)):
        if maintenance > 0 and ratio >= threshold:
            shortfall = requirement_to_decimal(max(0.0, maintenance / threshold - equity), decimals)
            found.append(Breach(level, "", shown, shortfall))
    for name, usage in (
        ("max_gross_notional", gross),
        (
            "max_leverage",
            math.inf if equity <= 0 and gross > 0 else (gross / equity if equity > 0 else 0.0),
        ),
    ):
        cap = limit_value(limits, name)
        if cap is None:
            continue
        warn_at = float(limits[name]["warn_at"])
        share = usage / float(cap)
        if share >= warn_at:
            found.append(Breach("limit", name, None if math.isinf(share) else share, Decimal(0)))
    return found


SYMBOL_LIMITS = ("max_position_notional", "max_underlying_notional")


@dataclass(frozen=True)
class _Exposure:
    """One subaccount's notionals as the per-symbol caps measure them (floats, as the batch)."""

    by_instrument: dict[str, float]
    """|q|·k·m per instrument."""
    by_underlying: dict[str, float]
    """Σ q·k·m per underlying (signed: long and short netted)."""


def _exposures(evaluation: BatchEvaluation, owners: set[int]) -> dict[int, _Exposure]:
    """Per-symbol exposure of the subaccounts ``owners`` (those with a per-symbol cap)."""
    if not owners:
        return {}
    positions, owner = evaluation.batch.positions, evaluation.batch.position_owner
    notional = positions.size * positions.contract_size * positions.mark
    universe = evaluation.risk.universe
    found: dict[int, _Exposure] = {}
    for row in np.flatnonzero(np.isin(owner, list(owners)) & (positions.size != 0)).tolist():
        exposure = found.setdefault(int(owner[row]), _Exposure({}, {}))
        symbol = evaluation.position_instruments[row]
        underlying = universe[int(positions.underlying[row])]
        value = float(notional[row])
        exposure.by_instrument[symbol] = exposure.by_instrument.get(symbol, 0.0) + abs(value)
        exposure.by_underlying[underlying] = exposure.by_underlying.get(underlying, 0.0) + value
    return found


def _symbol_breaches(limits: dict[str, Any], exposure: _Exposure) -> list[Breach]:
    """A ``limit`` call per symbol whose usage (its notional / its cap) reaches its warn_at."""
    found = []
    for name, usage in (
        ("max_position_notional", exposure.by_instrument),
        ("max_underlying_notional", exposure.by_underlying),
    ):
        if name not in limits:
            continue
        for symbol, notional in sorted(usage.items()):
            cap = symbol_cap(limits, name, symbol)
            if cap is None:
                continue
            share = abs(notional) / float(cap.value)
            if share >= float(cap.warn_at):
                found.append(Breach("limit", f"{name}:{symbol}", share, Decimal(0)))
    return found


def _isolated_positions(
    evaluation: BatchEvaluation, lowest: float
) -> dict[int, list[tuple[str, float, float, float]]]:
    """The isolated subaccounts' positions past ``lowest`` on their own ratio, by owner:
    ``(instrument, MM_i / (A_i + u_i), A_i + u_i, MM_i)``. In isolated mode a position is
    liquidated on its own, however calm the subaccount's summary looks, so each is called (and
    resolved) by itself, its instrument as the call's subject."""
    batch = evaluation.batch
    positions = batch.positions
    isolated = batch.modes[batch.position_owner] == MarginMode.ISOLATED.code
    if not isolated.any():
        return {}
    alone = isolated_positions(positions)
    ratios, equity, maintenance = (
        alone.maintenance_margin_ratio,
        alone.equity,
        alone.maintenance_margin,
    )
    found: dict[int, list[tuple[str, float, float, float]]] = defaultdict(list)
    for row in np.flatnonzero(isolated & (ratios >= lowest)).tolist():
        found[int(batch.position_owner[row])].append(
            (
                evaluation.position_instruments[row],
                float(ratios[row]),
                float(equity[row]),
                float(maintenance[row]),
            )
        )
    return found


YIELD_EVERY = 500
"""Subaccounts looked at one by one between two looks at the event loop."""

FEW_SUBACCOUNTS = 64
"""Up to this many, an evaluation reads its subaccounts' rows (a fill's own subaccount); more
go through the resident book (app/risk/resident.py)."""


async def evaluate(
    session: AsyncSession,
    runtime: Runtime,
    subaccount_ids: Sequence[str],
    view: resident.BookView | None = None,
) -> None:
    """Raise and resolve the calls of ``subaccount_ids`` (one batch engine call; only the
    subaccounts past a level, holding a call, or with limits are looked at one by one)."""
    if not subaccount_ids:
        return
    if view is None and len(subaccount_ids) > FEW_SUBACCOUNTS:
        view = await resident.current_view(session, runtime)
    subaccounts = (
        view.get(subaccount_ids)
        if view is not None
        else await accounts_repository.get_subaccounts(session, subaccount_ids)
    )
    parameters = await service.parameters(session)
    evaluation = await evaluate_subaccounts(session, runtime, subaccounts, parameters, view=view)
    ratios = risk_order(evaluation)
    summary = evaluation.summary
    held: dict[str, dict[tuple[str, str], MarginCall]] = defaultdict(dict)
    for (sid, level, subject), call in (
        await repository.unresolved_calls(session, [s.subaccount_id for s in subaccounts])
    ).items():
        held[sid][(level, subject)] = call
    lowest = min(parameters.margin_call_warning, parameters.margin_call_liquidation)
    past = np.flatnonzero((summary.maintenance_margin > 0) & (ratios >= lowest))
    by_position = _isolated_positions(evaluation, lowest)
    look = (
        set(past.tolist())
        | set(by_position)
        | {i for i, s in enumerate(subaccounts) if s.subaccount_id in held or s.limits}
    )
    exposures = _exposures(
        evaluation,
        {i for i, s in enumerate(subaccounts) if any(name in s.limits for name in SYMBOL_LIMITS)},
    )
    now = utcnow()
    raised: list[MarginCall] = []
    for count, i in enumerate(sorted(look)):
        if count % YIELD_EVERY == YIELD_EVERY - 1:
            # Thousands of calls (a first sweep of a large book): let requests run meanwhile.
            await asyncio.sleep(0)
        subaccount = subaccounts[i]
        breaches = _breaches(
            float(ratios[i]),
            float(summary.equity[i]),
            float(summary.maintenance_margin[i]),
            float(summary.gross_notional[i]),
            subaccount.limits,
            parameters.margin_call_warning,
            parameters.margin_call_liquidation,
            parameters.settlement_decimals,
        )
        if i in exposures:
            breaches += _symbol_breaches(subaccount.limits, exposures[i])
        for symbol, ratio, equity, maintenance in by_position.get(i, []):
            breaches += [
                replace(breach, subject=symbol)
                for breach in _breaches(
                    ratio,
                    equity,
                    maintenance,
                    0.0,
                    {},
                    parameters.margin_call_warning,
                    parameters.margin_call_liquidation,
                    parameters.settlement_decimals,
                )
            ]
        current = {(b.level, b.subject): b for b in breaches}
        mine = held.get(subaccount.subaccount_id, {})
        for key, breach in current.items():
            if key not in mine:
                raised.append(
                    MarginCall(
                        id=uuid.uuid4().hex,
                        subaccount_id=subaccount.subaccount_id,
                        account_id=subaccount.account_id,
                        level=breach.level,
                        subject=breach.subject,
                        status="open",
                        ratio=breach.ratio,
                        shortfall=breach.shortfall,
                        raised_at=now,
                        resolved_at=None,
                        acknowledged_at=None,
                        acknowledged_by=None,
                    )
                )
        for key, call in mine.items():
            if key not in current:
                call.status, call.resolved_at = "resolved", now
                _outbox(session, "margin_call.resolved", call, now)
    inserted = await repository.insert_calls(session, raised)
    for call in raised:
        if call.id in inserted:
            _outbox(session, "margin_call.raised", call, now)
    await breaker.evaluate(session, parameters.auto_reduce_only, evaluation, ratios)
    await session.flush()


def _outbox(session: AsyncSession, event: str, call: MarginCall, now: datetime) -> None:
    repository.add_event(
        session,
        WebhookEvent(
            event=event,
            payload=margin_call_out(call).model_dump(mode="json"),
            created_at=now,
            attempts=0,
            next_attempt_at=now,
            delivered_at=None,
            last_error=None,
        ),
    )


async def after_marks(session: AsyncSession, runtime: Runtime, symbols: Sequence[str]) -> None:
    """Evaluate every subaccount holding one of ``symbols`` (a position or a balance)."""
    view = await resident.current_view(session, runtime)
    if view is not None:
        holders = view.holding(symbols)
        for start in range(0, len(holders), SWEEP_CHUNK):
            await evaluate(session, runtime, holders[start : start + SWEEP_CHUNK], view)
            # A whole book takes a while: the requests that came meanwhile (mark posts, checks)
            # run between the chunks, not after the last.
            await asyncio.sleep(0)
        return
    await evaluate(
        session, runtime, await accounts_repository.subaccounts_holding(session, symbols)
    )


async def list_calls(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    status: str | None,
    subaccount_id: str | None,
) -> list[MarginCall]:
    """The calls, after a sweep of every mark posted before the request."""
    await sweep(session, runtime)
    return await repository.list_calls(session, principal.accounts, status, subaccount_id)


async def acknowledge(session: AsyncSession, principal: Principal, call_id: str) -> MarginCall:
    call = await repository.get_call(session, call_id)
    if call is None or not principal.sees(call.account_id):
        raise NotFound(f"margin call {call_id!r} not found")
    if call.status == "resolved":
        raise Conflict(f"margin call {call_id!r} is already resolved")
    if call.status == "open":
        call.status, call.acknowledged_at, call.acknowledged_by = (
            "acknowledged",
            utcnow(),
            principal.key_id,
        )
        await session.flush()
        await audit.record(
            session,
            "margin_call.acknowledged",
            principal.actor,
            {"id": call_id},
            account_id=call.account_id,
            subaccount_id=call.subaccount_id,
        )
    return call


# --- the sweep after mark posts ------------------------------------------------------------

SWEEP_EVERY_S = 0.1
"""How often each process looks for marks to sweep: calls lag a mark by about this."""

SWEEP_CHUNK = 1000
"""Holders evaluated per batch engine call in a sweep (every rule is per subaccount)."""


async def sweep(session: AsyncSession, runtime: Runtime, *, wait: bool = True) -> int:
    """Sweep every symbol noted since the last sweep, in the caller's transaction (commit
    promptly: the lock is held until it ends); answer how many. With ``wait=False`` a sweep
    another process is running is not waited for (0: that one or a later one sweeps)."""
    if not await marketdata_repository.any_moved(session):
        return 0
    if not await repository.lock_sweep(session, wait=wait):
        return 0
    # Read, not taken: the rows stay unlocked while the holders are evaluated, so the mark
    # posts that note them meanwhile do not wait for the sweep (they are swept next time).
    noted = await marketdata_repository.noted_moved(session)
    if noted:
        await after_marks(session, runtime, [symbol for symbol, _ in noted])
        await marketdata_repository.forget_moved(session, noted)
    return len(noted)


async def sweep_forever(
    runtime: Runtime, every_s: float = SWEEP_EVERY_S, retry_s: float = 1.0
) -> None:
    """Sweep every ``every_s``; failures (a database outage) are logged once per outage and
    retried every ``retry_s``."""
    outage = Outage(log, "the margin-call sweep")
    try:
        # The resident book loaded at start, not by the first view or sweep to need it.
        async with runtime.session_factory() as session, session.begin():
            await resident.current_view(session, runtime)
    except Exception:
        log.debug("the resident book was not loaded at start", exc_info=True)
    COUNTED.set(False)  # this task's statements are not the checks'
    while True:
        await asyncio.sleep(every_s)
        try:
            moved = True
            if runtime.hot.pooled:
                # Most ticks find nothing moved: asked on a bare connection, not in a session.
                async with runtime.hot.connect() as db:
                    moved = await marketdata_repository.any_moved(db)
            if moved:
                async with runtime.session_factory() as session, session.begin():
                    await sweep(session, runtime, wait=False)
        except Exception:
            outage.failed()
            await asyncio.sleep(retry_s)
            continue
        outage.passed()
