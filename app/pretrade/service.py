"""The pre-trade check (margin.md, Pre-trade): load once, simulate the basket against the
visible book, apply it with every active reservation to a copy of the book, recompute, judge.

``load_context`` does all the I/O; ``evaluate_basket`` is synchronous, so ``max_size`` can
search many sizes against one snapshot of the state.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import Account, Subaccount
from app.audit import service as audit
from app.audit.chain import canonical_json
from app.auth.principal import Principal
from app.core.cache import CacheUnavailable
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import RiskParameters
from app.engine.rounding import summary_to_decimals
from app.instruments import service as instruments_service
from app.marketdata import service as marketdata
from app.marketdata.marks import age_ms
from app.pretrade import repository, reservations
from app.pretrade.models import CheckRecord, OrderId, Reservation
from app.pretrade.rules import Basket, OrderView, Totals, judge
from app.pretrade.schemas import (
    CheckIn,
    CheckOut,
    ExecutionOut,
    MaxSizeIn,
    MaxSizeOut,
    OrderIn,
    Reason,
)
from app.pretrade.simulate import BookStatus, Execution, Leg, Level, execute
from app.risk import service as risk
from app.risk.book import Book, MarkUsed, SimulatedFill, load_book
from app.risk.reference import Reference, reference

log = logging.getLogger("preflight.pretrade")
ZERO = Decimal(0)
RATE_WINDOW_MS = 1000.0


@dataclass(frozen=True)
class VisibleBook:
    status: BookStatus
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class Context:
    """Everything a check reads, loaded once."""

    subaccount: Subaccount
    account: Account
    book: Book
    """Positions and balances as stored (reservations not yet applied)."""
    reservations: tuple[Reservation, ...]
    parameters: RiskParameters
    states: Mapping[str, str]
    books: Mapping[str, VisibleBook]
    realized_today: Decimal
    recent_orders: int
    account_recent_orders: int
    siblings: Totals
    strategy_siblings_gross: Decimal


@dataclass(frozen=True)
class Outcome:
    executions: list[ExecutionOut]
    reasons: list[Reason]
    before: risk.Evaluation
    after: risk.Evaluation
    reserved_legs: list[dict[str, str | None]]

    @property
    def accepted(self) -> bool:
        return not self.reasons


# --- loading ---------------------------------------------------------------------------------


def _rate_key(kind: str, ident: str) -> str:
    return f"pf:rate:{kind}:{ident}"


async def _recent_orders(
    session: AsyncSession, runtime: Runtime, subaccount: Subaccount, now: datetime
) -> tuple[int, int]:
    """Orders accepted in the last second for the subaccount and for its account."""
    now_ms = now.timestamp() * 1000
    keys = [_rate_key("sub", subaccount.subaccount_id), _rate_key("acct", subaccount.account_id)]
    try:
        members = await runtime.cache.zrange_many(keys, now_ms - RATE_WINDOW_MS)
        return len(members[0]), len(members[1])
    except CacheUnavailable:
        runtime.metrics.dependency_errors.labels("redis").inc()
    # Without Redis's shared window the cap still holds: count this second's accepted checks
    # in PostgreSQL (every process writes them there too).
    since = now - timedelta(milliseconds=RATE_WINDOW_MS)
    return (
        await repository.accepted_orders_since(
            session, since=since, subaccount_id=subaccount.subaccount_id
        ),
        await repository.accepted_orders_since(
            session, since=since, account_id=subaccount.account_id
        ),
    )


async def _states(
    session: AsyncSession, subaccount: Subaccount, instruments: Sequence[str]
) -> dict[str, str]:
    states = {}
    for scope, scope_id, state in await accounts_repository.trading_states_over(
        session, subaccount.account_id, subaccount.subaccount_id, instruments
    ):
        states[f"instrument:{scope_id}" if scope == "instrument" else scope] = state
    return states


def totals(book: Book, evaluation: risk.Evaluation, decimals: int) -> Totals:
    """Exposure of one book, exactly in decimals (limits compare exact notionals)."""
    by_instrument: dict[str, Decimal] = {}
    by_underlying: dict[str, Decimal] = {}
    for holding in book.holdings:
        instrument = book.instruments[holding.instrument]
        value = holding.size * instrument.contract_size * book.marks[holding.instrument].price
        by_instrument[holding.instrument] = abs(value)
        by_underlying[instrument.underlying] = (
            by_underlying.get(instrument.underlying, ZERO) + value
        )
    summary = summary_to_decimals(evaluation.summary, book.margin_mode, decimals)
    equity, unrealized = summary["equity"], summary["unrealized_pnl"]
    assert isinstance(equity, Decimal) and isinstance(unrealized, Decimal)
    return Totals(
        gross_notional=sum(by_instrument.values(), ZERO),
        equity=equity,
        unrealized_pnl=unrealized,
        by_instrument=by_instrument,
        by_underlying=by_underlying,
    )


async def _siblings(
    session: AsyncSession,
    runtime: Runtime,
    context_subaccount: Subaccount,
    known: Reference,
    since: datetime,
    now: datetime,
) -> tuple[Totals, Decimal]:
    """The account's other subaccounts (their reservations counted), and the gross notional
    of those sharing this subaccount's strategy label."""
    total, strategy_gross = Totals(), ZERO
    for sibling in await accounts_repository.list_subaccounts(
        session, context_subaccount.account_id, None
    ):
        if sibling.subaccount_id == context_subaccount.subaccount_id:
            continue
        held = await repository.active_reservations(session, [sibling.subaccount_id], now)
        book = (await load_book(session, runtime, sibling, (), known)).with_fills(
            reservations.as_fills(held)
        )
        evaluation = risk.evaluate(book, known.parameters, liquidation=False)
        realized = await accounts_repository.realized_since(
            session, sibling.subaccount_id, since, book.settlement
        )
        sibling_totals = replace(
            totals(book, evaluation, known.parameters.settlement_decimals),
            realized_today=realized,
            open_orders=reservations.open_orders(held),
        )
        total = total + sibling_totals
        if sibling.strategy is not None and sibling.strategy == context_subaccount.strategy:
            strategy_gross += sibling_totals.gross_notional
    return total, strategy_gross


async def load_context(
    session: AsyncSession,
    runtime: Runtime,
    subaccount: Subaccount,
    instruments: Sequence[str],
    now: datetime,
    known: Reference,
) -> Context:
    account = await accounts_repository.get_account(session, subaccount.account_id)
    assert account is not None
    book = await load_book(session, runtime, subaccount, instruments, known)
    parameters = known.parameters
    held = await repository.active_reservations(session, [subaccount.subaccount_id], now)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    books = {}
    for symbol in dict.fromkeys(instruments):
        visible = await marketdata.get_book(session, runtime, symbol)
        stale_after = instruments_service.stale_after_s(book.instruments[symbol], runtime.settings)
        if visible is None:
            books[symbol] = VisibleBook("missing", (), ())
        else:
            fresh = age_ms(now, visible.ts) <= stale_after * 1000
            books[symbol] = VisibleBook(
                "fresh" if fresh else "stale", tuple(visible.bids), tuple(visible.asks)
            )
    recent, account_recent = await _recent_orders(session, runtime, subaccount, now)
    siblings, strategy_gross = Totals(), ZERO
    if account.limits:
        siblings, strategy_gross = await _siblings(
            session, runtime, subaccount, known, midnight, now
        )
    return Context(
        subaccount=subaccount,
        account=account,
        book=book,
        reservations=tuple(held),
        parameters=parameters,
        states=await _states(session, subaccount, instruments),
        books=books,
        realized_today=await accounts_repository.realized_since(
            session, subaccount.subaccount_id, midnight, book.settlement
        ),
        recent_orders=recent,
        account_recent_orders=account_recent,
        siblings=siblings,
        strategy_siblings_gross=strategy_gross,
    )


# --- evaluating ------------------------------------------------------------------------------


def _reference_price(order: OrderIn, mark: MarkUsed, visible: VisibleBook) -> Decimal | None:
    """The price to value an order at when its instrument has no mark at all."""
    if mark.status != "missing":
        return mark.price
    if order.limit_price is not None:
        return order.limit_price
    side = visible.asks if order.side == "buy" else visible.bids
    return side[0][0] if side else None


def evaluate_basket(
    ctx: Context,
    orders: Sequence[OrderIn],
    *,
    reserving: bool = False,
    liquidation: bool = True,
) -> Outcome:
    parameters = ctx.parameters
    decimals = parameters.settlement_decimals
    before_book = ctx.book.with_fills(reservations.as_fills(ctx.reservations))
    before = risk.evaluate(before_book, parameters, liquidation=False)

    marks = dict(before_book.marks)
    levels: dict[tuple[str, str], list[Level]] = {}
    fills: list[SimulatedFill] = []
    executions: list[Execution] = []
    for order in orders:
        instrument = before_book.instruments[order.instrument]
        visible = ctx.books[order.instrument]
        reference = _reference_price(order, marks[order.instrument], visible)
        if reference is None:
            # No mark, no limit, no book: nothing to value the order at. It is not applied;
            # the mark rule rejects it (fail closed).
            executions.append(
                Execution(
                    ZERO, None, order.size, ZERO, None, ZERO, ZERO, visible.status, "mark", None
                )
            )
            continue
        if marks[order.instrument].status == "missing":
            marks[order.instrument] = replace(marks[order.instrument], price=reference)
        side_levels = None
        if visible.status == "fresh":
            key = (order.instrument, order.side)
            if key not in levels:
                levels[key] = list(visible.asks if order.side == "buy" else visible.bids)
            side_levels = levels[key]
        execution = execute(
            Leg(order.side, order.size, order.type, order.limit_price, order.time_in_force),
            side_levels,
            visible.status,
            reference,
            instrument.contract_size,
            instrument.taker_fee_rate,
            instrument.maker_fee_rate,
            Decimal(repr(parameters.default_slippage)),
        )
        executions.append(execution)
        fee = execution.fee
        for size, price in execution.counted():
            fills.append(SimulatedFill(order.instrument, order.side, size, price, fee))
            fee = ZERO
    priced_before = replace(before_book, marks=marks)
    after_book = priced_before.with_fills(fills)
    after = risk.evaluate(after_book, parameters, liquidation=liquidation)
    before = (
        risk.evaluate(priced_before, parameters, liquidation=False)
        if marks != before_book.marks
        else before
    )

    sizes = {h.instrument: h.size for h in priced_before.holdings}
    views = []
    for index, (order, execution) in enumerate(zip(orders, executions, strict=True)):
        instrument = priced_before.instruments[order.instrument]
        held = sizes.get(order.instrument, ZERO)
        delta = order.size if order.side == "buy" else -order.size
        grows = abs(held + delta) > abs(held) or (held + delta) * held < 0
        sizes[order.instrument] = held + delta
        price = execution.avg_price or order.limit_price or marks[order.instrument].price
        views.append(
            OrderView(
                index=index,
                instrument=instrument,
                side=order.side,
                size=order.size,
                limit_price=order.limit_price,
                reduce_only=order.reduce_only,
                mark=ctx.book.marks[order.instrument],
                execution=execution,
                adds_risk=grows,
                notional=order.size * instrument.contract_size * price,
            )
        )

    before_totals = replace(
        totals(priced_before, before, decimals),
        realized_today=ctx.realized_today,
        open_orders=reservations.open_orders(ctx.reservations),
        recent_orders=ctx.recent_orders,
    )
    after_totals = replace(totals(after_book, after, decimals), realized_today=ctx.realized_today)
    after_values = summary_to_decimals(after.summary, after_book.margin_mode, decimals)
    before_values = summary_to_decimals(before.summary, priced_before.margin_mode, decimals)
    free_after = after_values["free_collateral"]
    assert isinstance(free_after, Decimal)
    mm_after, mm_before = after_values["maintenance_margin"], before_values["maintenance_margin"]
    assert isinstance(mm_after, Decimal) and isinstance(mm_before, Decimal)
    collateral_marks = {
        symbol: mark
        for symbol, mark in marks.items()
        if symbol in after_book.assets and after_book.balances.get(symbol, ZERO) != 0
    }
    basket = Basket(
        orders=views,
        reducing_only=not any(v.adds_risk for v in views) and mm_after <= mm_before,
        free_collateral_after=free_after,
        before=before_totals,
        after=after_totals,
        siblings=ctx.siblings,
        strategy_siblings_gross=ctx.strategy_siblings_gross,
        states=ctx.states,
        subaccount_limits=ctx.subaccount.limits,
        account_limits=ctx.account.limits,
        strategy=ctx.subaccount.strategy,
        collateral_marks=collateral_marks,
        reserving=reserving,
        account_recent_orders=ctx.account_recent_orders,
    )

    if ctx.reservations:
        base = risk.evaluate(ctx.book, parameters, liquidation=False)
        reserved = risk.reserved_margin(base, before)
        before = replace(before, reserved_initial_margin=reserved)
        after = replace(after, reserved_initial_margin=reserved)
    return Outcome(
        executions=[_execution_out(i, e) for i, e in enumerate(executions)],
        reasons=judge(basket),
        before=before,
        after=after,
        reserved_legs=[
            {
                "client_order_id": order.client_order_id,
                "instrument": order.instrument,
                "side": order.side,
                **_reserved_size_and_price(execution),
            }
            for order, execution in zip(orders, executions, strict=True)
        ],
    )


def _reserved_size_and_price(execution: Execution) -> dict[str, str | None]:
    parts = execution.counted()
    size = sum((s for s, _ in parts), ZERO)
    notional = sum((s * p for s, p in parts), ZERO)
    price = notional / size if size else ZERO
    return {"size": str(size), "price": str(price), "fee": str(execution.fee)}


def _execution_out(index: int, execution: Execution) -> ExecutionOut:
    return ExecutionOut(
        order_index=index,
        filled_size=execution.filled_size,
        avg_price=execution.avg_price,
        unfilled_size=execution.unfilled_size,
        slippage_bps=execution.slippage_bps,
        fee=execution.fee,
        book=execution.book,
        price_source=execution.price_source,
    )


# --- the check -------------------------------------------------------------------------------


async def _subaccount(
    session: AsyncSession, principal: Principal, subaccount_id: str
) -> Subaccount:
    subaccount = await accounts_repository.get_subaccount(session, subaccount_id)
    if subaccount is None or not principal.sees(subaccount.account_id):
        raise NotFound(f"subaccount {subaccount_id!r} not found")
    return subaccount


def _known_instruments(known: Reference, symbols: Sequence[tuple[str, str]]) -> None:
    for field, symbol in symbols:
        if symbol not in known.instruments:
            raise InvalidInput(field, f"unknown instrument {symbol!r}")


def _request_hash(body: CheckIn) -> str:
    return hashlib.sha256(canonical_json(body.model_dump(mode="json")).encode()).hexdigest()


async def check(
    session: AsyncSession, runtime: Runtime, principal: Principal, body: CheckIn
) -> CheckOut:
    subaccount = await _subaccount(session, principal, body.subaccount_id)
    # Read once per check: the process cache is as current as this read (app/core/reference.py).
    known = await reference(session, runtime)
    _known_instruments(
        known, [(f"orders[{i}].instrument", o.instrument) for i, o in enumerate(body.orders)]
    )
    if body.reserve:
        # Reserving checks on one account queue here, across processes: the second sees the
        # first's reservation (account and strategy caps span the account's subaccounts).
        await accounts_repository.lock_account(session, subaccount.account_id)
        await accounts_repository.lock_subaccounts(session, [subaccount.subaccount_id])
    digest = _request_hash(body)
    order_ids = [o.client_order_id for o in body.orders if o.client_order_id is not None]
    earlier = await repository.checks_for_order_ids(session, subaccount.subaccount_id, order_ids)
    if earlier:
        if len(earlier) == 1 and earlier[0].request_hash == digest:
            return CheckOut.model_validate(earlier[0].response)
        raise Conflict("a client_order_id of this basket was already checked with other content")

    now = utcnow()
    ctx = await load_context(
        session, runtime, subaccount, [o.instrument for o in body.orders], now, known
    )
    outcome = evaluate_basket(ctx, body.orders, reserving=body.reserve)
    reasons = outcome.reasons
    accepted = outcome.accepted
    check_id = uuid.uuid4().hex
    reservation_id, expires_at = None, None
    if accepted and body.reserve:
        reservation_id = uuid.uuid4().hex
        expires_at = now + timedelta(seconds=body.reservation_ttl_s)
    after = outcome.after
    if reservation_id is not None:
        # This basket becomes a reservation too: what it adds is reserved afterwards.
        added = risk.reserved_margin(outcome.before, outcome.after)
        after = replace(after, reserved_initial_margin=after.reserved_initial_margin + added)
    response = CheckOut(
        check_id=check_id,
        decision="accept" if accepted else "reject",
        reasons=reasons,
        as_of=now,
        margin_mode=subaccount.margin_mode,
        executions=outcome.executions,
        before=outcome.before.summary_out(),
        after=after.summary_out(),
        positions_after=outcome.after.positions_out(),
        marks=outcome.after.marks_out(),
        reservation_id=reservation_id,
        expires_at=expires_at,
    )
    await _persist(session, runtime, principal, ctx, body, response, digest, outcome, now)
    return response


async def _persist(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    ctx: Context,
    body: CheckIn,
    response: CheckOut,
    digest: str,
    outcome: Outcome,
    now: datetime,
) -> None:
    document = response.model_dump(mode="json")
    repository.add(
        session,
        CheckRecord(
            check_id=response.check_id,
            subaccount_id=body.subaccount_id,
            request_hash=digest,
            response=document,
            created_at=now,
        ),
    )
    await session.flush()
    for order in body.orders:
        if order.client_order_id is not None:
            repository.add(
                session,
                OrderId(
                    subaccount_id=body.subaccount_id,
                    client_order_id=order.client_order_id,
                    check_id=response.check_id,
                ),
            )
    if response.reservation_id is not None and response.expires_at is not None:
        repository.add(
            session,
            Reservation(
                reservation_id=response.reservation_id,
                check_id=response.check_id,
                subaccount_id=body.subaccount_id,
                status="active",
                legs=outcome.reserved_legs,
                created_at=now,
                expires_at=response.expires_at,
                closed_at=None,
            ),
        )
    await session.flush()
    codes: list[str] = [reason.code for reason in response.reasons]
    for code in codes or ["none"]:
        runtime.metrics.check_decisions.labels(response.decision, code).inc()
    if response.decision == "accept":
        await _count_orders(runtime, ctx, response.check_id, len(body.orders), now)
    # Last: the audit append holds the chain's lock until commit.
    await audit.record(
        session,
        "check",
        principal.actor,
        {
            "check_id": response.check_id,
            "request": body.model_dump(mode="json"),
            "decision": response.decision,
            "reasons": document["reasons"],
            "marks": document["marks"],
            "executions": document["executions"],
            "free_collateral_after": document["after"]["free_collateral"],
            "reservation_id": response.reservation_id,
        },
        account_id=ctx.account.account_id,
        subaccount_id=body.subaccount_id,
    )


async def _count_orders(
    runtime: Runtime, ctx: Context, check_id: str, count: int, now: datetime
) -> None:
    now_ms = now.timestamp() * 1000
    members = {f"{now_ms:.3f}|{check_id}|{i}": now_ms for i in range(count)}
    try:
        await runtime.cache.zadd_many(
            [
                (_rate_key("sub", ctx.subaccount.subaccount_id), members),
                (_rate_key("acct", ctx.account.account_id), members),
            ],
            keep_after=now_ms - RATE_WINDOW_MS,
        )
    except CacheUnavailable:
        runtime.metrics.dependency_errors.labels("redis").inc()


# --- max size --------------------------------------------------------------------------------


async def max_size(
    session: AsyncSession, runtime: Runtime, principal: Principal, body: MaxSizeIn
) -> MaxSizeOut:
    """The largest multiple of ``lot_size`` the check accepts now, found by search: the check
    passes at that size and fails one lot above, naming the rule that binds."""
    subaccount = await _subaccount(session, principal, body.subaccount_id)
    known = await reference(session, runtime)
    _known_instruments(known, [("instrument", body.instrument)])
    ctx = await load_context(session, runtime, subaccount, [body.instrument], utcnow(), known)
    lot = ctx.book.instruments[body.instrument].lot_size

    def attempt(lots: int, liquidation: bool = False) -> Outcome:
        order = OrderIn(
            instrument=body.instrument,
            side=body.side,
            size=lot * lots,
            type=body.type,
            limit_price=body.limit_price,
        )
        return evaluate_basket(ctx, [order], liquidation=liquidation)

    passing, failing = 0, 1
    while attempt(failing).accepted:
        passing, failing = failing, failing * 2
        if failing > 2**62:
            raise Conflict("no rule bounds this order's size")
    while failing - passing > 1:
        middle = (passing + failing) // 2
        if attempt(middle).accepted:
            passing = middle
        else:
            failing = middle
    above = attempt(failing)
    binding = above.reasons[0].code if above.reasons else None
    if passing:
        final = attempt(passing, liquidation=True)
        after = final.after.summary_out()
    else:
        after = above.before.summary_out()
    return MaxSizeOut(
        subaccount_id=subaccount.subaccount_id,
        instrument=body.instrument,
        side=body.side,
        size=lot * passing,
        binding=binding,
        after=after,
    )


# --- reservations --------------------------------------------------------------------------


async def list_reservations(
    session: AsyncSession, principal: Principal, subaccount_id: str
) -> tuple[Subaccount, list[Reservation]]:
    subaccount = await _subaccount(session, principal, subaccount_id)
    return subaccount, await repository.reservations_of(session, subaccount_id)
