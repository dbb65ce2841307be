"""The pre-trade check (margin.md, Pre-trade): load once, simulate the basket against the
visible book, apply it with every active reservation to a copy of the book, recompute, judge.

``load_context`` does all the I/O; ``evaluate_basket`` is synchronous, so ``max_size`` can
search many sizes against one snapshot of the state.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts import reservations
from app.accounts.fills import SimulatedFill
from app.accounts.limits import limit_value
from app.accounts.models import Account, Reservation, Subaccount
from app.audit.chain import canonical_json
from app.audit.sealer import wake_sealers
from app.auth import service as auth_service
from app.auth.principal import Principal
from app.auth.service import Caller
from app.core.cache import RateCount, RateWindow
from app.core.db import CHECK_COMMAND_TIMEOUT_S, HotDb
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import format_decimal, format_timestamp, utcnow
from app.core.versions import TRADING, VersionKey
from app.engine import RiskParameters, black76
from app.engine.rounding import requirement_to_decimal
from app.instruments import service as instruments_service
from app.instruments.models import Instrument
from app.marketdata import service as marketdata
from app.marketdata.marks import Verdict, is_fresh, microseconds
from app.pretrade import repository, scaling
from app.pretrade import state as pretrade_state
from app.pretrade.rules import Basket, OrderView, Totals, caps_exposure, judge
from app.pretrade.schemas import (
    CheckIn,
    MaxScaleIn,
    MaxScaleOut,
    MaxSizeIn,
    MaxSizeOut,
    OrderIn,
    Reason,
    ReasonCode,
    ScaledOrderOut,
)
from app.pretrade.simulate import BookStatus, Execution, Leg, Level, execute
from app.pretrade.state import (
    AccountState,
    SubaccountState,
    TradingStates,
    account_key,
    known_account,
    known_subaccount,
    subaccount_key,
)
from app.risk import service as risk
from app.risk.book import Book, MarkUsed, option_indexes, option_inputs
from app.risk.reference import Reference, reference

log = logging.getLogger("preflight.pretrade")
ZERO = Decimal(0)
RATE_WINDOW_MS = 1000.0
MEMO_SIZE = 64
"""Entries a subaccount's memo keeps before it starts again (a few books and marks)."""


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
    unrealized_at_start: Decimal
    recent_orders: int
    account_recent_orders: int
    siblings: Totals
    strategy_siblings_gross: Decimal
    known: Reference | None = None
    """The reference data the book was valued with (its instruments' tiers, the parameters)."""
    memo: dict[object, Any] = field(default_factory=dict)
    """Evaluations of the book before the basket and their totals (``_before``,
    ``_before_totals``), shared by the subaccount's checks: keyed by everything they depend on."""


@dataclass(frozen=True)
class Outcome:
    executions: list[Execution]
    reasons: list[Reason]
    before: risk.Evaluation
    after: risk.Evaluation
    reserved_legs: list[dict[str, str | None]]

    @property
    def accepted(self) -> bool:
        return not self.reasons


# --- loading ---------------------------------------------------------------------------------


def rate_key(kind: str, ident: str) -> str:
    return f"pf:rate:{kind}:{ident}"


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
    summary = evaluation.values()
    equity, unrealized = summary["equity"], summary["unrealized_pnl"]
    assert isinstance(equity, Decimal) and isinstance(unrealized, Decimal)
    return Totals(
        gross_notional=sum(by_instrument.values(), ZERO),
        equity=equity,
        unrealized_pnl=unrealized,
        by_instrument=by_instrument,
        by_underlying=by_underlying,
    )


def _book(
    held: SubaccountState,
    known: Reference,
    marks: Mapping[str, Verdict],
    now: datetime,
    also: Sequence[str] = (),
) -> Book:
    """The subaccount's book at these marks (a symbol never marked: its entry price, or 0 for a
    collateral asset, stands in, as ``missing``). Kept in the subaccount's memo while its state,
    the reference data and the verdicts of its symbols are the same objects: checks between two
    changes share one book (and so, by identity, its evaluation). Its marks carry no age: an age
    is each check's own (``Verdict.age_ms`` at its ``now``). ``also``: instruments to value
    beside the holdings (an order's); one already held changes nothing, so the book of an
    order on a held instrument is the book of the subaccount, one object for all of them."""
    also = [symbol for symbol in also if symbol not in held.instruments]
    memo_key = ("book", tuple(also))
    kept = held.memo.get(memo_key)
    if (
        kept is not None
        and _same_book_rows(kept[0], held)
        and kept[1] is known
        and (kept[4] is marks or all(marks.get(symbol) is was for symbol, was in kept[2]))
    ):
        return cast(Book, kept[3])
    instruments = {
        symbol: known.instruments[symbol]
        for symbol in dict.fromkeys([*(h.instrument for h in held.holdings), *also])
        if symbol in known.instruments
    }
    entries = {h.instrument: h.entry_price for h in held.holdings}
    used: dict[str, MarkUsed] = {}
    verdicts: list[tuple[str, Verdict | None]] = []
    priced = _priced_assets(held, known)
    indexes = option_indexes(instruments.values(), priced)
    for symbol in [*instruments, *priced, *indexes]:
        mark = marks.get(symbol)
        verdicts.append((symbol, mark))
        if mark is not None:
            if symbol in instruments:
                used[symbol] = MarkUsed(mark.price, mark.status, None, mark.funding_rate, mark.iv)
            else:
                used[symbol] = MarkUsed(mark.price, mark.status, None)
        else:
            used[symbol] = MarkUsed(entries.get(symbol, ZERO), "missing", None)
    subaccount = held.subaccount
    book = Book(
        subaccount_id=subaccount.subaccount_id,
        account_id=subaccount.account_id,
        strategy=subaccount.strategy,
        margin_mode=subaccount.margin_mode,
        settlement=known.settlement,
        holdings=held.holdings,
        balances=held.balances,
        instruments=instruments,
        assets=known.assets,
        leverage=held.leverage,
        marks=used,
        as_of=now,
    )
    if indexes:
        # An option's time to expiry counts from this check's own time: not kept.
        return book
    if len(held.memo) >= MEMO_SIZE:
        held.memo.clear()
    # The verdicts themselves, and the mapping they came in: checks that share the cache's
    # judgement share the mapping too (marketdata.read_for_check), found by identity.
    held.memo[memo_key] = (held, known, tuple(verdicts), book, marks)
    return book


def _same_book_rows(kept: SubaccountState, held: SubaccountState) -> bool:
    """The two states value the same book: the same objects for everything a ``Book`` is made
    of. A reservation written here changes only the reservations (``with_reservation``), so
    what was computed from the book before it stays computed."""
    return kept is held or (
        kept.holdings is held.holdings
        and kept.balances is held.balances
        and kept.leverage is held.leverage
        and kept.subaccount is held.subaccount
    )


def mark_ages(marks: Mapping[str, Verdict], now_us: int) -> dict[str, int]:
    """Each judged mark's age at this check's ``now``: ms since its newest source."""
    return {symbol: verdict.age_ms(now_us) for symbol, verdict in marks.items()}


def _priced_assets(held: SubaccountState, known: Reference) -> list[str]:
    return [a for a in held.balances if a in known.assets and not known.assets[a].is_settlement]


def _siblings(
    siblings: Sequence[SubaccountState],
    strategy: str | None,
    known: Reference,
    marks: Mapping[str, Verdict],
    now: datetime,
) -> tuple[Totals, Decimal]:
    """The account's other subaccounts (their reservations counted), and the gross notional
    of those sharing this subaccount's strategy label."""
    total, strategy_gross = Totals(), ZERO
    for sibling in siblings:
        held = sibling.held(now)
        book = _book(sibling, known, marks, now).with_fills(reservations.as_fills(held))
        evaluation = risk.evaluate(book, known.parameters, liquidation=False)
        sibling_totals = replace(
            totals(book, evaluation, known.parameters.settlement_decimals),
            realized_today=sibling.realized_today,
            unrealized_at_start=sibling.unrealized_at_start,
            open_orders=reservations.open_orders(held),
        )
        total = total + sibling_totals
        if sibling.subaccount.strategy is not None and sibling.subaccount.strategy == strategy:
            strategy_gross += sibling_totals.gross_notional
    return total, strategy_gross


class _Relock(Exception):
    """The check must start again in a transaction holding more locks (the account's caps
    turned out to span subaccounts, or the rate cap must be counted in PostgreSQL)."""


@dataclass(frozen=True)
class _Attempt:
    transaction: bool
    lock_account: bool = False
    rate_in_postgres: bool = False
    reserving: bool = False


@dataclass(frozen=True)
class Loaded:
    """The state a check reads, current as of its one versions read."""

    principal: Principal
    known: Reference
    held: SubaccountState
    account: AccountState
    siblings: tuple[SubaccountState, ...]
    states: TradingStates
    used_order_ids: bool


async def _reference(db: HotDb, runtime: Runtime, token: int | None) -> Reference:
    kept = runtime.reference.at(token)
    if kept is not None:
        return cast(Reference, kept)
    if isinstance(db, AsyncSession):
        # SQLite: the check's own session already holds the database's write lock, which a
        # second session would wait for until it timed out.
        return await reference(db, runtime)
    # Under the check's deadline, not the ORM's longer statement timeout.
    async with asyncio.timeout(CHECK_COMMAND_TIMEOUT_S):
        async with runtime.session_factory() as session, session.begin():
            return await reference(session, runtime)


async def load(
    db: HotDb,
    runtime: Runtime,
    who: Caller,
    subaccount_id: str,
    order_ids: Sequence[str],
    now: datetime,
    attempt: _Attempt,
) -> Loaded:
    """One statement reads the versions of everything that governs the check; what is
    resident at those versions is used as is, the rest is loaded (and kept)."""
    resident = runtime.resident
    last = known_subaccount(resident, subaccount_id)
    account_id = None if last is None else last.subaccount.account_id
    last_account = None if account_id is None else known_account(resident, account_id)
    sibling_ids: tuple[str, ...] = ()
    if last_account is not None and last_account.account.limits:
        sibling_ids = tuple(s for s in last_account.subaccount_ids if s != subaccount_id)
    if attempt.lock_account or attempt.rate_in_postgres:
        assert account_id is not None
        if attempt.rate_in_postgres:
            await repository.lock_rate_window(db, account_id)
    if attempt.transaction:
        await repository.lock_for_reservation(
            db, subaccount_id, account_id if attempt.lock_account else None
        )
    keys: list[VersionKey] = [subaccount_key(subaccount_id), TRADING]
    if who.key_token is not None:
        keys.append(("key", who.principal.key_id))
    if account_id is not None:
        keys.append(account_key(account_id))
    keys.extend(subaccount_key(s) for s in sibling_ids)
    ask = repository.VersionsAsk(keys, subaccount_id, order_ids)
    if attempt.transaction or not runtime.hot.pooled:
        [versions] = await repository.read_versions(db, [ask])
    else:  # read with the concurrent checks' versions, by one statement
        versions = await runtime.versions_reads.call(ask)
    principal = await auth_service.confirm(
        db, resident, who, versions.tokens.get(("key", who.principal.key_id))
    )
    known = await _reference(db, runtime, versions.reference)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    found = await pretrade_state.subaccounts(
        db, resident, versions.tokens, [subaccount_id], midnight, now, known.settlement
    )
    held = found.get(subaccount_id)
    if held is None or not principal.sees(held.subaccount.account_id):
        raise NotFound(f"subaccount {subaccount_id!r} not found")
    account = await pretrade_state.account(
        db, resident, versions.tokens, held.subaccount.account_id
    )
    assert account is not None  # a subaccount's account exists (foreign key)
    siblings: tuple[SubaccountState, ...] = ()
    if account.account.limits:
        if attempt.reserving and not attempt.lock_account:
            raise _Relock  # account-wide caps: reserving checks queue on the account too
        ids = [s for s in account.subaccount_ids if s != subaccount_id]
        tokens = versions.tokens
        if set(ids) - set(sibling_ids):  # not asked above: ask now
            ask = repository.VersionsAsk([subaccount_key(s) for s in ids], subaccount_id, ())
            tokens = (await repository.read_versions(db, [ask]))[0].tokens
        loaded = await pretrade_state.subaccounts(
            db, resident, tokens, ids, midnight, now, known.settlement
        )
        siblings = tuple(loaded[s] for s in ids if s in loaded)
    return Loaded(
        principal=principal,
        known=known,
        held=held,
        account=account,
        siblings=siblings,
        states=await pretrade_state.trading_states(db, resident, versions.tokens),
        used_order_ids=versions.used_order_ids,
    )


def _rate_cap(limits: Mapping[str, object]) -> int | None:
    cap = limit_value(limits, "max_order_rate")
    return None if cap is None else int(cap)


def _valued_symbols(loaded: Loaded, books_of: Sequence[str]) -> list[str]:
    """Every symbol the check values (held instruments, priced collateral, the orders'
    instruments), sorted; kept in the subaccount's memo while its state, its siblings' and the
    reference data are the same objects."""
    memo_key = ("symbols", tuple(books_of))
    held, siblings = loaded.held, loaded.siblings
    kept = held.memo.get(memo_key)
    if (
        kept is not None
        and _same_book_rows(kept[0], held)
        and kept[1] is loaded.known
        and len(kept[2]) == len(siblings)
        and all(a is b for a, b in zip(kept[2], siblings, strict=True))
    ):
        return cast(list[str], kept[3])
    valued = {
        *books_of,
        *(h.instrument for s in (held, *siblings) for h in s.holdings),
        *(a for s in (held, *siblings) for a in _priced_assets(s, loaded.known)),
    }
    known = loaded.known.instruments
    symbols = sorted(valued.union(option_indexes(known[s] for s in valued if s in known)))
    if len(held.memo) >= MEMO_SIZE:
        held.memo.clear()
    held.memo[memo_key] = (held, loaded.known, siblings, symbols)
    return symbols


async def _market(
    db: HotDb,
    runtime: Runtime,
    loaded: Loaded,
    books_of: Sequence[str],
    rate: RateCount | None,
    now: datetime,
) -> tuple[dict[str, Verdict], dict[str, VisibleBook], RateWindow | None]:
    """Marks of every symbol the check values, books of the order's instruments and the
    order-rate window, in one cache round trip (PostgreSQL stands in for what it lacks)."""
    symbols = _valued_symbols(loaded, books_of)
    read = await marketdata.read_for_check(
        db, runtime, symbols, books_of, rate, loaded.known.instruments, now
    )
    books = {}
    for symbol in books_of:
        visible = read.books.get(symbol)
        if visible is None:
            books[symbol] = VisibleBook("missing", (), ())
            continue
        instrument = loaded.known.instruments[symbol]
        stale_after = instruments_service.stale_after_s(instrument, runtime.settings)
        fresh = is_fresh(now, visible.ts, stale_after)
        books[symbol] = VisibleBook(
            "fresh" if fresh else "stale", tuple(visible.bids), tuple(visible.asks)
        )
    marks = read.marks
    options = [loaded.known.instruments[s] for s in books_of]
    if any(instrument.kind == "option" for instrument in options):
        marks = _index_judged_by_options(marks, options, runtime, now)
    return marks, books, read.rate


def _index_judged_by_options(
    marks: dict[str, Verdict], instruments: Sequence[Instrument], runtime: Runtime, now: datetime
) -> dict[str, Verdict]:
    """An option's underlying index is judged fresh by the option's own ``stale_after_s``
    (margin.md "Options"): an index whose newest source is older than that is stale for this
    check, whatever its own threshold says."""
    now_us = microseconds(now)
    for instrument in instruments:
        index = marks.get(instrument.underlying)
        if instrument.kind != "option" or index is None or index.status == "stale":
            continue
        limit = instruments_service.stale_after_s(instrument, runtime.settings)
        if now_us - index.newest_us > limit * 1_000_000:
            marks = {**marks, instrument.underlying: replace(index, status="stale")}
    return marks


def context(
    loaded: Loaded,
    marks: Mapping[str, Verdict],
    books: Mapping[str, VisibleBook],
    instruments: Sequence[str],
    recent: RateWindow | None,
    now: datetime,
) -> Context:
    held = loaded.held
    subaccount = held.subaccount
    siblings, strategy_gross = Totals(), ZERO
    if loaded.siblings:
        siblings, strategy_gross = _siblings(
            loaded.siblings, subaccount.strategy, loaded.known, marks, now
        )
    return Context(
        subaccount=subaccount,
        account=loaded.account.account,
        book=_book(held, loaded.known, marks, now, instruments),
        reservations=held.held(now),
        parameters=loaded.known.parameters,
        states=loaded.states.governing(
            subaccount.account_id, subaccount.subaccount_id, instruments
        ),
        books=books,
        realized_today=held.realized_today,
        unrealized_at_start=held.unrealized_at_start,
        recent_orders=0 if recent is None else recent.subaccount,
        account_recent_orders=0 if recent is None else recent.account,
        siblings=siblings,
        strategy_siblings_gross=strategy_gross,
        known=loaded.known,
        memo=held.memo,
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


def _before(ctx: Context, book: Book, like: risk.Evaluation | None = None) -> risk.Evaluation:
    """The evaluation of the book as it stands, once per (state, marks, reservations, reference
    data): checks between two changes of any of them share one. ``like``: an evaluation of a
    book with the same rows, whose engine inputs are patched rather than rebuilt."""
    same = ctx.memo.get((_EVALUATED, id(book)))
    if same is not None and same[0] is book and same[1] is ctx.known:
        return cast(risk.Evaluation, same[2])  # the very book (``_book`` keeps it): no key built
    key = (
        book.margin_mode,
        tuple(book.holdings),
        tuple(sorted(book.balances.items())),
        tuple(sorted(book.leverage.items())),
        tuple((symbol, mark.price, mark.status, mark.funding_rate) for symbol, mark in
              sorted(book.marks.items())),
        id(ctx.known),
        _option_clock(book),
    )  # fmt: skip
    kept = ctx.memo.get(key)
    if kept is not None and kept[0] is ctx.known:
        evaluation = cast(risk.Evaluation, kept[1])
        ctx.memo[(_EVALUATED, id(book))] = (book, ctx.known, evaluation)
        return evaluation
    if like is None:
        # The last book evaluated here, when it is of the same reference data: usually the same
        # rows at marks that moved since, so its engine inputs are patched, not rebuilt.
        last = ctx.memo.get(_LAST)
        like = cast(risk.Evaluation, last[1]) if last is not None and last[0] is ctx.known else None
    evaluation = risk.evaluate(book, ctx.parameters, liquidation=False, like=like)
    if len(ctx.memo) >= MEMO_SIZE:
        ctx.memo.clear()
    ctx.memo[key] = (ctx.known, evaluation)  # the reference object kept: its id is not reused
    ctx.memo[_LAST] = (ctx.known, evaluation)
    ctx.memo[(_EVALUATED, id(book))] = (book, ctx.known, evaluation)
    return evaluation


def _option_clock(book: Book) -> datetime | None:
    """A book with options is valued at its own time (an option's T): part of its memo key."""
    return book.as_of if any(i.kind == "option" for i in book.instruments.values()) else None


_LAST = "last"
"""The memo's key of the last evaluation of the book before a basket."""
_EVALUATED = "evaluated"
"""With a book's id: its evaluation, found by identity (the book object is kept beside it)."""


_RESERVATION_FILLS: dict[str, tuple[Reservation, list[SimulatedFill]]] = {}
"""A reservation's legs as fills, by its id: converted once, not once per check (the object is
kept beside them, so a reloaded copy is converted again)."""


def _reservation_fills(ctx: Context) -> list[SimulatedFill]:
    """The active reservations as fills (fees included, conservatively)."""
    fills: list[SimulatedFill] = []
    for reservation in ctx.reservations:
        kept = _RESERVATION_FILLS.get(reservation.reservation_id)
        if kept is None or kept[0] is not reservation:
            if len(_RESERVATION_FILLS) >= 100_000:
                _RESERVATION_FILLS.clear()
            kept = _RESERVATION_FILLS[reservation.reservation_id] = (
                reservation,
                reservations.as_fills([reservation]),
            )
        fills.extend(kept[1])
    return fills


def _before_totals(ctx: Context, book: Book, before: risk.Evaluation) -> Totals:
    """``totals`` of the book before the basket, once per evaluation of it."""
    key = ("totals", id(before))
    kept = ctx.memo.get(key)
    if kept is not None and kept[0] is before:
        return cast(Totals, kept[1])
    computed = totals(book, before, ctx.parameters.settlement_decimals)
    if len(ctx.memo) >= MEMO_SIZE:
        ctx.memo.clear()
    ctx.memo[key] = (before, computed)
    return computed


def evaluate_basket(
    ctx: Context,
    orders: Sequence[OrderIn],
    *,
    reserving: bool = False,
    liquidation: bool = True,
) -> Outcome:
    parameters = ctx.parameters
    decimals = parameters.settlement_decimals
    base = _before(ctx, ctx.book)
    if ctx.reservations:
        before_book = ctx.book.with_fills(_reservation_fills(ctx))
        before = _before(ctx, before_book, like=base)
    else:
        before_book, before = ctx.book, base

    marks = before_book.marks
    repriced = False  # an order's instrument never marked, valued at its reference price
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
            marks = {**marks, order.instrument: replace(marks[order.instrument], price=reference)}
            repriced = True
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
    priced_before = replace(before_book, marks=marks) if repriced else before_book
    after_book = priced_before.with_fills(fills)
    after = risk.evaluate(after_book, parameters, liquidation=liquidation, like=before)
    if repriced:
        before = risk.evaluate(priced_before, parameters, liquidation=False)

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
                index_mark=ctx.book.marks.get(instrument.underlying)
                if instrument.kind == "option"
                else None,
                execution=execution,
                adds_risk=grows,
                notional=order.size * instrument.contract_size * price
                if instrument.kind != "option"
                else _option_notional(after_book, instrument, order.size, decimals),
            )
        )

    # The exact notionals only where a cap reads them (siblings are loaded only then too).
    exposure = caps_exposure(ctx.subaccount.limits, ctx.account.limits)
    before_totals = replace(
        _before_totals(ctx, priced_before, before) if exposure else Totals(),
        realized_today=ctx.realized_today,
        unrealized_at_start=ctx.unrealized_at_start,
        open_orders=reservations.open_orders(ctx.reservations),
        recent_orders=ctx.recent_orders,
    )
    after_totals = replace(
        totals(after_book, after, decimals) if exposure else Totals(),
        realized_today=ctx.realized_today,
        unrealized_at_start=ctx.unrealized_at_start,
    )
    after_values = after.values()
    before_values = before.values()
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
        margin_cover=risk.money(
            before_values["free_collateral"]
            if ctx.subaccount.margin_mode == "isolated"
            else after_values["equity"]
        ),
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
        reserved = risk.reserved_margin(base, before)
        before = before.with_reserved(reserved)
        after = after.with_reserved(reserved)
    return Outcome(
        executions=executions,
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


def _option_notional(book: Book, instrument: Instrument, size: Decimal, decimals: int) -> Decimal:
    """An option order's delta-adjusted notional ``|size·k·Δ|·S`` (margin.md "Options": the
    notional limits read), Δ by Black-76 as the book values the option; rounded up."""
    strike, years, volatility, spot = option_inputs(book, instrument)
    unit = black76(instrument.option_type == "call", spot, strike, volatility, years)
    exposure = float(size * instrument.contract_size) * abs(float(unit.delta)) * spot
    return requirement_to_decimal(exposure, decimals)


def _reserved_size_and_price(execution: Execution) -> dict[str, str | None]:
    parts = execution.counted()
    size = sum((s for s, _ in parts), ZERO)
    notional = sum((s * p for s, p in parts), ZERO)
    price = notional / size if size else ZERO
    return {"size": str(size), "price": str(price), "fee": str(execution.fee)}


def _execution_json(index: int, execution: Execution) -> dict[str, object]:
    """api.md ``Execution`` as the JSON object sent (``ExecutionOut`` documents it)."""
    avg_price = execution.avg_price
    return {
        "order_index": index,
        "filled_size": format_decimal(execution.filled_size),
        "avg_price": None if avg_price is None else format_decimal(avg_price),
        "unfilled_size": format_decimal(execution.unfilled_size),
        "slippage_bps": execution.slippage_bps,
        "fee": format_decimal(execution.fee),
        "book": execution.book,
        "price_source": execution.price_source,
    }


# --- the check -------------------------------------------------------------------------------


def _known_instruments(loaded: Loaded, symbols: Sequence[tuple[str, str]], now: datetime) -> None:
    """Every order's instrument exists and can be traded here: an option is held in cross and
    portfolio subaccounts only, and not past its expiry (margin.md "Options")."""
    known = loaded.known
    for name, symbol in symbols:
        instrument = known.instruments.get(symbol)
        if instrument is None:
            raise InvalidInput(name, f"unknown instrument {symbol!r}")
        if instrument.kind != "option":
            continue
        if loaded.held.subaccount.margin_mode == "isolated":
            raise InvalidInput(name, f"option {symbol!r}: options are not held in isolated mode")
        if instrument.expiry is not None and instrument.expiry <= now:
            raise InvalidInput(
                name, f"option {symbol!r} expired at {format_timestamp(instrument.expiry)}"
            )


async def check(runtime: Runtime, who: Caller, body: CheckIn) -> bytes:
    """The check's answer, as the JSON bytes sent, stored and audited.

    A non-reserving check on a warm process reads PostgreSQL once (the versions) and the cache
    once, then writes its record in one statement. So does a reserving check on PostgreSQL:
    its reservation is written only if the subaccount's token is still the one it was judged
    at, so reservations on one subaccount are judged one after another, across processes —
    and a check whose subaccount moved in between (``_Moved``) starts again in a transaction
    holding the subaccount's row lock (and the account's, when its caps span subaccounts), as
    do the process's reserving checks there for a while after (a race between processes
    queues on the lock, app/core/gates.py). Reserving checks of one subaccount queue in their
    own process first: within a process they never race one another."""
    request_json = canonical_json(body.model_dump(mode="json"))
    locked = not runtime.hot.pooled or runtime.gates.contended(body.subaccount_id)
    attempt = _Attempt(transaction=body.reserve and locked, reserving=body.reserve)
    for _ in range(4):
        try:
            # One deadline for the gate, the connection and the row lock.
            deadline = asyncio.get_running_loop().time() + CHECK_COMMAND_TIMEOUT_S
            gate: contextlib.AbstractAsyncContextManager[None] = (
                runtime.gates.one_at_a_time(body.subaccount_id, deadline)
                if body.reserve
                else contextlib.nullcontext()
            )
            async with gate:
                hot = runtime.hot.connect(
                    transaction=attempt.transaction, deadline=deadline, lazy=True
                )
                async with hot as db:
                    answer, record, keep = await _check(
                        db, runtime, who, body, request_json, attempt
                    )
                if record is not None:
                    # Written with the records of concurrent checks, on a connection of its
                    # own (this one is already free): one statement and one commit for all.
                    token = await _write(runtime, record, len(body.orders))
                    if keep is not None and token is not None:
                        keep(token)
            wake_sealers()  # committed: its audit entry can be linked now, not at the next tick
            return answer
        except _Relock as relock:
            attempt = (
                relock.args[0]
                if relock.args
                else replace(attempt, transaction=True, lock_account=True)
            )
        except _Moved:
            runtime.gates.note_contention(body.subaccount_id)
            attempt = replace(attempt, transaction=True)
    raise Conflict("the subaccount's state kept changing under the check; retry")


async def _write(runtime: Runtime, record: repository.CheckRow, orders: int) -> int | None:
    """Write ``record`` with the concurrent checks' (the subaccount's new token when it holds
    a reservation). A reservation the subaccount moved under is not written: its orders leave
    the order-rate window they were counted in, and ``_Moved`` is raised."""
    try:
        result = await runtime.check_records.call(record)
    except _Moved:
        await marketdata.forget_orders(
            runtime,
            [rate_key("sub", record.subaccount_id), rate_key("acct", record.account_id)],
            [f"{record.check_id}|{i}" for i in range(orders)],
        )
        raise
    return result if isinstance(result, int) else None


async def _check(
    db: HotDb,
    runtime: Runtime,
    who: Caller,
    body: CheckIn,
    request_json: str,
    attempt: _Attempt,
) -> tuple[bytes, repository.CheckRow | None, Callable[[int], None] | None]:
    """The answer; its record when the caller is to write it (a check without a transaction,
    on PostgreSQL: the concurrent checks' statement writes it), any other record being written
    here, in the check's transaction; and, for a reservation the caller writes, what to keep
    once the write answers the subaccount's new token."""
    now = utcnow()
    order_ids = [o.client_order_id for o in body.orders if o.client_order_id is not None]
    loaded = await load(db, runtime, who, body.subaccount_id, order_ids, now, attempt)
    _known_instruments(
        loaded,
        [(f"orders[{i}].instrument", o.instrument) for i, o in enumerate(body.orders)],
        now,
    )
    digest = hashlib.sha256(request_json.encode()).hexdigest()
    if loaded.used_order_ids:
        earlier = await repository.earlier_answers(db, body.subaccount_id, order_ids)
        if len(earlier) == 1 and earlier[0][0] == digest:
            return earlier[0][1].encode(), None, None
        raise Conflict("a client_order_id of this basket was already checked with other content")

    check_id = os.urandom(16).hex()  # 128 random bits, as uuid4 without its object
    instruments = list(dict.fromkeys(o.instrument for o in body.orders))
    subaccount = loaded.held.subaccount
    rate = RateCount(
        subaccount_key=rate_key("sub", subaccount.subaccount_id),
        account_key=rate_key("acct", subaccount.account_id),
        now_ms=now.timestamp() * 1000,
        window_ms=RATE_WINDOW_MS,
        members=[f"{check_id}|{i}" for i in range(len(body.orders))],
        subaccount_cap=_rate_cap(subaccount.limits),
        account_cap=_rate_cap(loaded.account.account.limits),
    )
    capped = rate.subaccount_cap is not None or rate.account_cap is not None
    marks, books, window = await _market(db, runtime, loaded, instruments, rate, now)
    if window is None:
        # Redis could not count: PostgreSQL's accepted checks do, under a lock on the account's
        # window held until this check is written, so the cap still holds across processes.
        if capped and not attempt.rate_in_postgres:
            raise _Relock(replace(attempt, transaction=True, rate_in_postgres=True))
        window = (
            await _window_from_postgres(db, subaccount, now)
            if capped
            else RateWindow(0, 0, admitted=False)
        )
    ctx = context(loaded, marks, books, instruments, window, now)
    outcome = evaluate_basket(ctx, body.orders, reserving=body.reserve)
    accepted = outcome.accepted
    if window.admitted and not accepted:
        await marketdata.forget_orders(runtime, [rate.subaccount_key, rate.account_key],
                                       rate.members)  # fmt: skip
    reservation = None
    after = outcome.after
    if accepted and body.reserve:
        reservation = (uuid.uuid4().hex, now + timedelta(seconds=body.reservation_ttl_s))
        # This basket becomes a reservation too: what it adds is reserved afterwards.
        added = risk.reserved_margin(outcome.before, outcome.after)
        after = after.with_reserved(after.reserved_initial_margin + added)
    decision = "accept" if accepted else "reject"
    response_json = canonical_json(
        {
            "check_id": check_id,
            "decision": decision,
            "reasons": [reason.model_dump(mode="json") for reason in outcome.reasons],
            "as_of": format_timestamp(now),
            "margin_mode": subaccount.margin_mode,
            "executions": [_execution_json(i, e) for i, e in enumerate(outcome.executions)],
            "before": outcome.before.summary_json,
            "after": after.summary_json,
            "positions_after": outcome.after.positions_json(),
            "marks": outcome.after.marks_json(mark_ages(marks, microseconds(now))),
            "reservation_id": None if reservation is None else reservation[0],
            "expires_at": None if reservation is None else format_timestamp(reservation[1]),
        }
    )  # the shape of ``CheckOut``, built once as the bytes sent, stored and audited
    # Written by the concurrent checks' statement unless this check holds a transaction; a
    # reservation so written is conditional on the token its subaccount was judged at.
    deferred = not attempt.transaction and runtime.hot.pooled
    judged_at = None
    if deferred and reservation is not None:
        judged_at = runtime.resident.token_of(subaccount_key(subaccount.subaccount_id), loaded.held)
        if judged_at is None:  # another copy replaced it meanwhile: judge under the lock
            raise _Relock(replace(attempt, transaction=True))
    record = repository.CheckRow(
        check_id=check_id,
        subaccount_id=subaccount.subaccount_id,
        account_id=subaccount.account_id,
        actor_key_id=loaded.principal.actor.key_id,
        request_hash=digest,
        response_json=response_json,
        audit_payload=(
            f'{{"check_id":"{check_id}","request":{request_json},"response":{response_json}}}'
        ),
        created_at=now,
        client_order_ids=order_ids,
        reservation=None
        if reservation is None
        else (reservation[0], outcome.reserved_legs, reservation[1]),
        judged_at_token=judged_at,
    )
    keep: Callable[[int], None] | None = None
    if reservation is not None:
        kept = Reservation(
            reservation_id=reservation[0],
            check_id=check_id,
            subaccount_id=subaccount.subaccount_id,
            status="active",
            legs=outcome.reserved_legs,
            created_at=now,
            expires_at=reservation[1],
            closed_at=None,
        )

        def keep(token: int) -> None:
            # The state with this reservation, under the token its write gave the subaccount:
            # the next reserving check here loads nothing.
            pretrade_state.with_reservation(runtime.resident, loaded.held, token, kept)

    if not deferred:
        token = await repository.insert_check(db, record)
        if keep is not None and token is not None:
            keep(token)
        keep = None
    codes: list[str] = [reason.code for reason in outcome.reasons]
    for code in codes or ["none"]:
        runtime.metrics.count_decision(decision, code)
    return response_json.encode(), record if deferred else None, keep


async def read_versions(
    runtime: Runtime, asks: list[repository.VersionsAsk]
) -> list[repository.Versions]:
    """A batch of checks' versions reads (``runtime.versions_reads``), by one statement."""
    async with runtime.hot.serial("versions") as db:
        return await repository.read_versions(db, asks)


class _Moved(Exception):
    """A reservation judged without the row lock was not written: its subaccount moved since
    (another process wrote to it). The check starts again, under the lock."""


async def write_records(
    runtime: Runtime, records: list[repository.CheckRow]
) -> list[Exception | int | None]:
    """A batch of checks' records (``runtime.check_records``): one statement for all; if one of
    them reused an order id (two checks raced for it), or its claims deadlocked with another
    batch's, each alone, so only that one fails. Per
    record: the subaccount's new token when it wrote a reservation, ``_Moved`` when its
    reservation was judged at a token that is no longer current (nothing of it written)."""
    async with runtime.hot.serial("records") as db:
        if len(records) > 1:
            try:
                return _outcomes(records, await repository.insert_checks(db, records))
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                pass
        results: list[Exception | int | None] = []
        for record in records:
            try:
                results += _outcomes([record], await repository.insert_checks(db, [record]))
            except asyncpg.UniqueViolationError as exc:
                results.append(exc)
            except asyncpg.DeadlockDetectedError:
                # Two batches of other processes claimed the same subaccounts in another
                # order: nothing of this one was written; it is judged again under the lock.
                results.append(_Moved(record.subaccount_id))
        return results


def _outcomes(
    records: Sequence[repository.CheckRow], tokens: Mapping[str, int]
) -> list[Exception | int | None]:
    return [
        None
        if record.reservation is None
        else tokens.get(record.subaccount_id, _Moved(record.subaccount_id))
        for record in records
    ]


async def _window_from_postgres(db: HotDb, subaccount: Subaccount, now: datetime) -> RateWindow:
    """This second's accepted orders, counted from the checks every process writes."""
    since = now - timedelta(milliseconds=RATE_WINDOW_MS)
    return RateWindow(
        await repository.accepted_orders_since(
            db, since=since, subaccount_id=subaccount.subaccount_id
        ),
        await repository.accepted_orders_since(db, since=since, account_id=subaccount.account_id),
        admitted=False,
    )


# --- max size --------------------------------------------------------------------------------


async def max_size(runtime: Runtime, who: Caller, body: MaxSizeIn) -> MaxSizeOut:
    """The largest multiple of ``lot_size`` the check accepts now, found by search: the check
    passes at that size and fails one lot above, naming the rule that binds."""
    now = utcnow()
    async with runtime.hot.connect() as db:
        loaded = await load(db, runtime, who, body.subaccount_id, (), now, _Attempt(False))
        _known_instruments(loaded, [("instrument", body.instrument)], now)
        marks, books, _ = await _market(db, runtime, loaded, [body.instrument], None, now)
    ctx = context(loaded, marks, books, [body.instrument], None, now)
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
        subaccount_id=body.subaccount_id,
        instrument=body.instrument,
        side=body.side,
        size=lot * passing,
        binding=binding,
        reasons=above.reasons,
        after=after,
    )


# --- max scale -------------------------------------------------------------------------------


async def max_scale(runtime: Runtime, who: Caller, body: MaxScaleIn) -> MaxScaleOut:
    """The largest factor of the basket the check accepts now, every leg's size times it and
    rounded down to its lot (``app/pretrade/scaling.py``: the steps, the search and what it
    assumes). One I/O phase, then a pure search against that snapshot; like ``max_size`` it
    reserves, records and audits nothing (a question, not a check).

    The answer holds by construction: the check accepts the basket at ``scale`` and rejects it
    at the next step, whose reasons are returned. A nonzero ``scale`` gives every leg at least
    one lot; when even the least such basket fails (or ``max_scale`` cannot give every leg a
    lot: ``LOT_SIZE``), ``scale`` is 0."""
    now = utcnow()
    instruments = list(dict.fromkeys(o.instrument for o in body.orders))
    async with runtime.hot.connect() as db:
        loaded = await load(db, runtime, who, body.subaccount_id, (), now, _Attempt(False))
        _known_instruments(
            loaded,
            [(f"orders[{i}].instrument", o.instrument) for i, o in enumerate(body.orders)],
            now,
        )
        marks, books, _ = await _market(db, runtime, loaded, instruments, None, now)
    ctx = context(loaded, marks, books, instruments, None, now)
    lots = [ctx.book.instruments[o.instrument].lot_size for o in body.orders]
    ray = scaling.Ray.of([o.size for o in body.orders], lots)
    outcomes: dict[scaling.Lots, Outcome] = {}

    def legs(counts: scaling.Lots) -> list[OrderIn]:
        # Copies, not re-validated: a leg's size is its lot count times its lot, exactly.
        return [
            order.model_copy(update={"size": n * lot})
            for order, n, lot in zip(body.orders, counts, lots, strict=True)
        ]

    def attempt(counts: scaling.Lots) -> Outcome:
        if counts not in outcomes:  # the ladder and the bisection may land on one basket twice
            outcomes[counts] = evaluate_basket(ctx, legs(counts), liquidation=False)
        return outcomes[counts]

    limit = Fraction(body.max_scale)
    if ray.first_full > limit:
        # No factor up to max_scale gives every leg a lot: the basket is not the hedge asked.
        counts = ray.lots_at(limit)
        short = [
            Reason(
                code="LOT_SIZE",
                order_index=i,
                message=f"at max_scale {format_decimal(body.max_scale)} this leg would be "
                f"{format_decimal(body.max_scale * order.size)}, under one lot of "
                f"{format_decimal(lot)}; every leg needs at least one",
                value=body.max_scale * order.size,
                limit=lot,
            )
            for i, (order, lot, n) in enumerate(zip(body.orders, lots, counts, strict=True))
            if n == 0
        ]
        standing = attempt(ray.lots_at(ray.first_full)).before
        return _scaled(body, Decimal(0), [0] * len(lots), lots, "LOT_SIZE", short, standing)
    found = scaling.search(ray, limit, lambda counts: attempt(counts).accepted)
    above = None if found.step is None else attempt(ray.lots_at(found.step))
    reasons = [] if above is None else above.reasons
    binding = reasons[0].code if reasons else None
    if found.answer is None:
        assert above is not None
        return _scaled(body, Decimal(0), [0] * len(lots), lots, binding, reasons, above.before)
    counts = ray.lots_at(found.answer)
    final = evaluate_basket(ctx, legs(counts), liquidation=True)
    scale = body.max_scale if found.step is None else scaling.as_decimal(found.answer, found.step)
    return _scaled(body, scale, list(counts), lots, binding, reasons, final.after)


def _scaled(
    body: MaxScaleIn,
    scale: Decimal,
    counts: Sequence[int],
    lots: Sequence[Decimal],
    binding: ReasonCode | None,
    reasons: list[Reason],
    after: risk.Evaluation,
) -> MaxScaleOut:
    return MaxScaleOut(
        subaccount_id=body.subaccount_id,
        scale=scale,
        orders=[
            ScaledOrderOut(order_index=i, size=n * lot)
            for i, (n, lot) in enumerate(zip(counts, lots, strict=True))
        ],
        binding=binding,
        reasons=reasons,
        after=after.summary_out(),
    )


# --- reservations --------------------------------------------------------------------------


async def list_reservations(
    session: AsyncSession, principal: Principal, subaccount_id: str, cursor: str | None, limit: int
) -> tuple[Subaccount, list[Reservation], str | None]:
    """A page of the subaccount's reservations, newest first, and the cursor of the next."""
    subaccount = await accounts_repository.get_subaccount(session, subaccount_id)
    if subaccount is None or not principal.sees(subaccount.account_id):
        raise NotFound(f"subaccount {subaccount_id!r} not found")
    before = None if cursor is None else _reservation_cursor(cursor)
    rows = await repository.reservations_of(session, subaccount_id, before, limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        key = f"{last.created_at.isoformat()}|{last.reservation_id}"
        next_cursor = base64.urlsafe_b64encode(key.encode()).decode()
    return subaccount, page, next_cursor


def _reservation_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, reservation_id) of the previous page's last reservation."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        created_at, reservation_id = text.split("|")
        return datetime.fromisoformat(created_at), reservation_id
    except ValueError:  # bad base64, bytes, separator or timestamp: all ValueErrors
        raise InvalidInput("cursor", "not a cursor this endpoint gave out") from None
