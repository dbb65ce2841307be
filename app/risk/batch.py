"""Many subaccounts at once: their rows from the resident book (app/risk/resident.py; bulk
reads on the embedded database or for a few subaccounts), one engine call (risk overview,
whole-book stress, margin calls). Arrays are built in one pass, never one engine input per
subaccount: instrument and asset values once per symbol, fanned out to the rows by code."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts import reservations
from app.accounts.isolated import tier_rows
from app.accounts.models import Reservation, Subaccount
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import (
    BatchBook,
    BatchSummary,
    Collateral,
    MarginMode,
    Positions,
    RiskArrays,
    RiskParameters,
    TierTable,
    batch_summary,
    margin_summary,
)
from app.instruments import repository as instruments_repository
from app.marketdata import service as marketdata
from app.risk.book import Book, engine_inputs, load_book
from app.risk.resident import BookView, Symbols, rows_from_tuples


@dataclass(frozen=True)
class BatchEvaluation:
    subaccounts: Sequence[Subaccount]
    summary: BatchSummary
    risk: RiskArrays
    batch: BatchBook
    position_instruments: Sequence[str]
    """The instrument of each of ``batch``'s position rows."""


@dataclass(frozen=True)
class _InstrumentRow:
    """An instrument's engine inputs, converted once per batch rather than once per position."""

    row: int
    contract_size: float
    tick_size: float
    perpetual: bool
    underlying: int
    mark: float
    """nan when never marked: the position's entry price stands in."""
    funding_rate: float


async def load_batch(
    session: AsyncSession,
    runtime: Runtime,
    subaccounts: Sequence[Subaccount],
    parameters: RiskParameters,
    *,
    everyone: bool,
    view: BookView | None = None,
) -> tuple[BatchBook, RiskArrays, list[str], list[int]]:
    """Engine inputs for many subaccounts (and the instrument of each position row, and the
    subaccounts holding an option), built from row tuples the database already converted to
    float (the batch path's Decimal → float boundary). The batch engine knows no options: the
    caller evaluates a subaccount holding one on its own. A subaccount with active reservations
    goes through its exact ``Book`` (reservations applied as fills) instead.
    ``everyone`` reads whole tables rather than filtering by id; a ``view`` (the resident book,
    app/risk/resident.py) answers the rows instead of the database."""
    owner_of = {s.subaccount_id: i for i, s in enumerate(subaccounts)}
    ids = None if everyone else list(owner_of)
    pending: dict[str, list[Any]] = defaultdict(list)
    for reservation in await accounts_repository.active_reservations(
        session, list(owner_of), utcnow()
    ):
        pending[reservation.subaccount_id].append(reservation)
    exact: list[tuple[int, Book]] = []
    for sid, held in pending.items():
        book = await _exact_book(session, runtime, subaccounts[owner_of[sid]], held)
        exact.append((owner_of[sid], book))

    if view is not None:
        rows = view.rows(list(owner_of), pending)
    else:
        # The embedded database, and a few subaccounts: their rows read now.
        position_rows = [
            row
            for row in await accounts_repository.position_float_rows(session, ids)
            if row[0] in owner_of and row[0] not in pending
        ]
        balance_rows = [
            row
            for row in await accounts_repository.balance_float_rows(session, ids)
            if row[0] in owner_of and row[0] not in pending
        ]
        leverage = {
            (sid, instrument): float(chosen)
            for sid, instrument, chosen in await accounts_repository.leverage_rows(session, ids)
        }
        rows = rows_from_tuples(Symbols(), position_rows, balance_rows, leverage, owner_of)
    symbols = rows.symbols
    names = symbols.names()
    instruments = {i.symbol: i for i in await instruments_repository.list_instruments(session)}
    assets = {a.symbol: a for a in await instruments_repository.list_assets(session)}
    held_symbols = {str(names[c]) for c in np.unique(rows.instrument).tolist()} | {
        h.instrument for _, book in exact for h in book.holdings
    }
    held_assets = {
        name for c in np.unique(rows.asset).tolist() if (name := str(names[c])) in assets
    }
    judged = await marketdata.current_marks(session, runtime, sorted(held_symbols | held_assets))

    universe: dict[str, int] = {}
    known: dict[str, _InstrumentRow] = {}
    tiers: list[list[tuple[float, float, float | None]]] = []
    for symbol in sorted(held_symbols):
        instrument = instruments[symbol]
        mark = judged.get(symbol)
        known[symbol] = _InstrumentRow(
            len(tiers),
            float(instrument.contract_size),
            float(instrument.tick_size),
            instrument.kind == "perpetual",
            universe.setdefault(instrument.underlying, len(universe)),
            float(mark.price) if mark is not None else math.nan,
            float(mark.funding_rate or 0) if mark is not None else 0.0,
        )
        # An option has no tiers: a zero row stands in, and its owner is evaluated alone.
        tiers.append(tier_rows(instrument) or [(0.0, 0.0, 0.0)])
    asset_price = {
        a: 1.0 if assets[a].is_settlement else (float(judged[a].price) if a in judged else 0.0)
        for a in held_assets
    }
    asset_under = {
        a: universe.setdefault(assets[a].underlying or "", len(universe))
        if assets[a].underlying
        else -1
        for a in held_assets
    }

    # Rows of the exact books join the resident rows, converted the same way.
    exact_positions: list[tuple[str, str, float, float, float]] = []
    exact_balances: list[tuple[str, str, float]] = []
    for _, book in exact:
        sid = book.subaccount_id
        exact_positions += [
            (sid, h.instrument, float(h.size), float(h.entry_price), float(h.isolated_margin))
            for h in book.holdings
        ]
        exact_balances += [(sid, a, float(v)) for a, v in book.balances.items() if a in assets]
        for h in book.holdings:
            mark_used = book.marks.get(h.instrument)
            if mark_used is not None and mark_used.status == "missing":
                known[h.instrument] = replace(known[h.instrument], mark=float(mark_used.price))
        for a in book.balances:
            if a in assets and a not in asset_price:
                asset_price[a] = 1.0 if assets[a].is_settlement else float(book.marks[a].price)
                asset_under[a] = (
                    universe.setdefault(assets[a].underlying or "", len(universe))
                    if assets[a].underlying
                    else -1
                )
    if exact:
        exact_leverage = {
            (book.subaccount_id, symbol): float(chosen)
            for _, book in exact
            for symbol, chosen in book.leverage.items()
        }
        rows = rows.join(
            rows_from_tuples(symbols, exact_positions, exact_balances, exact_leverage, owner_of)
        )

    # One value per instrument (and asset) code, fanned out to the rows by numpy.
    codes = len(symbols)
    spec_row = np.zeros(codes, dtype=np.intp)
    contract_size = np.ones(codes, dtype=np.float64)
    tick_size = np.ones(codes, dtype=np.float64)
    perpetual = np.zeros(codes, dtype=bool)
    underlying = np.zeros(codes, dtype=np.intp)
    mark_of = np.full(codes, math.nan, dtype=np.float64)
    funding = np.zeros(codes, dtype=np.float64)
    for symbol, spec in known.items():
        c = symbols.code(symbol)
        spec_row[c], contract_size[c], tick_size[c] = spec.row, spec.contract_size, spec.tick_size
        perpetual[c], underlying[c] = spec.perpetual, spec.underlying
        mark_of[c], funding[c] = spec.mark, spec.funding_rate
    price_of = np.zeros(codes, dtype=np.float64)
    weight_of = np.zeros(codes, dtype=np.float64)
    asset_under_of = np.full(codes, -1, dtype=np.intp)
    for a, price in asset_price.items():
        c = symbols.code(a)
        price_of[c], weight_of[c] = price, float(assets[a].collateral_weight)
        asset_under_of[c] = asset_under[a]

    row_codes = rows.instrument
    priced = np.where(np.isnan(mark_of[row_codes]), rows.entry_price, mark_of[row_codes])
    positions = Positions.create(
        size=rows.size,
        contract_size=contract_size[row_codes],
        entry_price=rows.entry_price,
        mark=priced,
        tiers=TierTable.from_rows(tiers).take(spec_row[row_codes]),
        underlying=underlying[row_codes],
        tick_size=tick_size[row_codes],
        isolated_margin=rows.isolated_margin,
        leverage=rows.leverage,
        funding_rate=funding[row_codes],
        is_perpetual=perpetual[row_codes],
    )
    collateral = Collateral.create(
        balance=rows.amount,
        price=price_of[rows.asset],
        weight=weight_of[rows.asset],
        underlying=asset_under_of[rows.asset],
    )
    mode_codes = {mode.value: mode.code for mode in MarginMode}
    batch = BatchBook(
        positions=positions,
        position_owner=rows.position_owner,
        collateral=collateral,
        collateral_owner=rows.balance_owner,
        modes=np.array([mode_codes[s.margin_mode] for s in subaccounts], dtype=np.intp),
        reserved_initial_margin=np.zeros(len(subaccounts)),
    )
    position_instruments: list[str] = symbols.names()[row_codes].tolist()
    is_option = np.zeros(codes, dtype=bool)
    for symbol in known:
        is_option[symbols.code(symbol)] = instruments[symbol].kind == "option"
    option_owners: list[int] = np.unique(rows.position_owner[is_option[row_codes]]).tolist()
    return batch, parameters.arrays(list(universe)), position_instruments, option_owners


async def evaluate_subaccounts(
    session: AsyncSession,
    runtime: Runtime,
    subaccounts: Sequence[Subaccount],
    parameters: RiskParameters,
    *,
    everyone: bool = False,
    view: BookView | None = None,
) -> BatchEvaluation:
    """Every given subaccount's summary from one batch engine call (a subaccount holding an
    option evaluated on its own, by the same engine as its margin view)."""
    batch, risk, instruments, option_owners = await load_batch(
        session, runtime, subaccounts, parameters, everyone=everyone, view=view
    )
    summary = batch_summary(batch, risk)
    for i in option_owners:
        inputs = engine_inputs(await _exact_book(session, runtime, subaccounts[i]), parameters)
        alone = margin_summary(
            inputs.positions,
            inputs.collateral,
            inputs.risk,
            subaccounts[i].margin_mode,
            liquidation_prices=False,
            options=inputs.options,
        ).scalars()
        for name, value in alone.items():
            getattr(summary, name)[i] = math.nan if value is None else value
    return BatchEvaluation(subaccounts, summary, risk, batch, instruments)


async def _exact_book(
    session: AsyncSession,
    runtime: Runtime,
    subaccount: Subaccount,
    held: Sequence[Reservation] | None = None,
) -> Book:
    """The subaccount's book with its active reservations (``held``, read when None) applied
    as fills: what its margin view counts."""
    if held is None:
        held = await accounts_repository.active_reservations(
            session, [subaccount.subaccount_id], utcnow()
        )
    fills = reservations.as_fills(held)
    book = await load_book(session, runtime, subaccount, [f.instrument for f in fills])
    return book.with_fills(fills)


def risk_order(evaluation: BatchEvaluation) -> np.ndarray:
    """``maintenance_margin_ratio`` with books at or below zero equity first: +inf when
    something is open or owed, 0 when empty."""
    summary = evaluation.summary
    ratio = np.array(summary.maintenance_margin_ratio, dtype=np.float64)
    under_water = np.isnan(ratio) & ((summary.maintenance_margin > 0) | (summary.equity < 0))
    ratio[under_water] = np.inf
    ratio[np.isnan(ratio)] = 0.0
    return ratio
