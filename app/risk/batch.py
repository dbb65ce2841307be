"""Many subaccounts at once: bulk reads, one engine call (risk overview, whole-book stress,
margin calls). Arrays are built in one pass, never one engine input per subaccount."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import Subaccount
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
)
from app.instruments import repository as instruments_repository
from app.marketdata import service as marketdata
from app.pretrade import repository as pretrade_repository
from app.pretrade import reservations
from app.risk.book import Book, Holding, MarkUsed, tier_rows

ZERO = Decimal(0)


async def load_books(
    session: AsyncSession, runtime: Runtime, subaccounts: Sequence[Subaccount], *, everyone: bool
) -> list[Book]:
    """Every given subaccount's book, with its active reservations applied as fills.
    ``everyone`` reads whole tables instead of filtering by id (the whole-book views)."""
    ids = None if everyone else [s.subaccount_id for s in subaccounts]
    holdings: dict[str, list[Holding]] = defaultdict(list)
    for sid, instrument, size, entry, allocated in await accounts_repository.position_rows(
        session, ids
    ):
        holdings[sid].append(Holding(instrument, size, entry, allocated))
    balances: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for sid, asset, amount in await accounts_repository.balance_rows(session, ids):
        balances[sid][asset] = amount
    leverage: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for sid, instrument, chosen in await accounts_repository.leverage_rows(session, ids):
        leverage[sid][instrument] = chosen
    instruments = {i.symbol: i for i in await instruments_repository.list_instruments(session)}
    assets = {a.symbol: a for a in await instruments_repository.list_assets(session)}
    settlement = next((a.symbol for a in assets.values() if a.is_settlement), "")
    pending = defaultdict(list)
    for reservation in await pretrade_repository.active_reservations(
        session, [s.subaccount_id for s in subaccounts], utcnow()
    ):
        pending[reservation.subaccount_id].append(reservation)
    held_symbols = {h.instrument for rows in holdings.values() for h in rows}
    held_symbols |= {leg["instrument"] for rows in pending.values() for r in rows for leg in r.legs}
    held_assets = {a for rows in balances.values() for a in rows if a != settlement}
    judged = await marketdata.current_marks(session, runtime, sorted(held_symbols | held_assets))
    marks: dict[str, MarkUsed] = {}
    for symbol, mark in judged.items():
        marks[symbol] = MarkUsed(mark.price, mark.status, mark.age_ms, mark.funding_rate)
    for asset in held_assets - judged.keys():
        marks[asset] = MarkUsed(ZERO, "missing", None)

    books = []
    for subaccount in subaccounts:
        sid = subaccount.subaccount_id
        own_marks = marks
        unmarked = [h for h in holdings.get(sid, []) if h.instrument not in marks]
        if unmarked:
            # A position in an instrument never marked is valued at its entry (status missing).
            own_marks = {
                **marks,
                **{h.instrument: MarkUsed(h.entry_price, "missing", None) for h in unmarked},
            }
        book = Book(
            subaccount_id=sid,
            account_id=subaccount.account_id,
            strategy=subaccount.strategy,
            margin_mode=subaccount.margin_mode,
            settlement=settlement,
            holdings=tuple(holdings.get(sid, [])),
            balances=balances.get(sid, {}),
            instruments=instruments,
            assets=assets,
            leverage=leverage.get(sid, {}),
            marks=own_marks,
        )
        if sid in pending:
            book = book.with_fills(reservations.as_fills(pending[sid]))
            unmarked = [h for h in book.holdings if h.instrument not in book.marks]
            if unmarked:
                # Reserved in an instrument never marked: valued at the reserved price.
                missing = {h.instrument: MarkUsed(h.entry_price, "missing", None) for h in unmarked}
                book = replace(book, marks={**book.marks, **missing})
        books.append(book)
    return books


@dataclass(frozen=True)
class BatchEvaluation:
    books: Sequence[Book]
    summary: BatchSummary
    risk: RiskArrays
    batch: BatchBook


@dataclass(frozen=True)
class _InstrumentRow:
    """An instrument's engine inputs, converted once per batch rather than once per position."""

    row: int
    contract_size: float
    tick_size: float
    perpetual: bool
    underlying: int


def batch_inputs(books: Sequence[Book], parameters: RiskParameters) -> tuple[BatchBook, RiskArrays]:
    """Concatenated engine inputs for many books, built in one pass (the Decimal → float
    boundary for the batch path)."""
    universe: dict[str, int] = {}
    known: dict[str, _InstrumentRow] = {}
    tiers: list[list[tuple[float, float, float | None]]] = []
    mark_floats: dict[int, dict[str, float]] = {}
    rows, size, entry, mark, allocated, chosen, funding, owner = ([] for _ in range(8))
    c_balance, c_price, c_weight, c_under, c_owner = ([] for _ in range(5))
    for index, book in enumerate(books):
        # Books usually share one marks mapping: convert its prices once.
        prices = mark_floats.get(id(book.marks))
        if prices is None:
            prices = {s: float(m.price) for s, m in book.marks.items()}
            mark_floats[id(book.marks)] = prices
        for holding in book.holdings:
            spec = known.get(holding.instrument)
            if spec is None:
                instrument = book.instruments[holding.instrument]
                spec = _InstrumentRow(
                    len(tiers),
                    float(instrument.contract_size),
                    float(instrument.tick_size),
                    instrument.kind == "perpetual",
                    universe.setdefault(instrument.underlying, len(universe)),
                )
                known[holding.instrument] = spec
                tiers.append(tier_rows(instrument))
            rows.append(spec.row)
            size.append(float(holding.size))
            entry.append(float(holding.entry_price))
            mark.append(prices[holding.instrument])
            allocated.append(float(holding.isolated_margin) if holding.isolated_margin else 0.0)
            leverage = book.leverage.get(holding.instrument) if book.leverage else None
            chosen.append(float(leverage) if leverage else 0.0)
            rate = book.marks[holding.instrument].funding_rate
            funding.append(float(rate) if rate else 0.0)
            owner.append(index)
        for asset, amount in book.balances.items():
            if asset not in book.assets:
                continue
            spec_asset = book.assets[asset]
            c_balance.append(float(amount))
            c_price.append(1.0 if spec_asset.is_settlement else prices[asset])
            c_weight.append(float(spec_asset.collateral_weight))
            c_under.append(
                universe.setdefault(spec_asset.underlying, len(universe))
                if spec_asset.underlying
                else -1
            )
            c_owner.append(index)
    table = TierTable.from_rows(tiers)
    by_row = sorted(known.values(), key=lambda spec: spec.row)
    row_index = np.array(rows, dtype=np.intp)

    def per_row(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64)[row_index] if rows else np.zeros(0)

    positions = Positions.create(
        size=np.array(size, dtype=np.float64),
        contract_size=per_row([spec.contract_size for spec in by_row]),
        entry_price=np.array(entry, dtype=np.float64),
        mark=np.array(mark, dtype=np.float64),
        tiers=table.take(row_index),
        underlying=np.array([spec.underlying for spec in by_row], dtype=np.intp)[row_index]
        if rows
        else np.zeros(0, dtype=np.intp),
        tick_size=per_row([spec.tick_size for spec in by_row]),
        isolated_margin=np.array(allocated, dtype=np.float64),
        leverage=np.array(chosen, dtype=np.float64),
        funding_rate=np.array(funding, dtype=np.float64),
        is_perpetual=np.array([spec.perpetual for spec in by_row], dtype=bool)[row_index]
        if rows
        else np.zeros(0, dtype=bool),
    )
    collateral = Collateral.create(
        balance=np.array(c_balance, dtype=np.float64),
        price=np.array(c_price, dtype=np.float64),
        weight=np.array(c_weight, dtype=np.float64),
        underlying=np.array(c_under, dtype=np.intp),
    )
    codes = {mode.value: mode.code for mode in MarginMode}
    batch = BatchBook(
        positions=positions,
        position_owner=np.array(owner, dtype=np.intp),
        collateral=collateral,
        collateral_owner=np.array(c_owner, dtype=np.intp),
        modes=np.array([codes[b.margin_mode] for b in books], dtype=np.intp),
        reserved_initial_margin=np.zeros(len(books)),
    )
    return batch, parameters.arrays(list(universe))


def evaluate_many(books: Sequence[Book], parameters: RiskParameters) -> BatchEvaluation:
    batch, risk = batch_inputs(books, parameters)
    return BatchEvaluation(books, batch_summary(batch, risk), risk, batch)


def risk_order(evaluation: BatchEvaluation) -> np.ndarray:
    """``maintenance_margin_ratio`` with books at or below zero equity first: +inf when
    something is open or owed, 0 when empty."""
    summary = evaluation.summary
    ratio = np.array(summary.maintenance_margin_ratio, dtype=np.float64)
    under_water = np.isnan(ratio) & ((summary.maintenance_margin > 0) | (summary.equity < 0))
    ratio[under_water] = np.inf
    ratio[np.isnan(ratio)] = 0.0
    return ratio
