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


def batch_inputs(books: Sequence[Book], parameters: RiskParameters) -> tuple[BatchBook, RiskArrays]:
    """Concatenated engine inputs for many books, built in one pass (the Decimal → float
    boundary for the batch path)."""
    universe: dict[str, int] = {}
    instrument_rows: dict[str, int] = {}
    tiers: list[list[tuple[float, float, float | None]]] = []
    size, contract, entry, mark, allocated, chosen, funding, perpetual, tick, under, owner = (
        [] for _ in range(11)
    )
    c_balance, c_price, c_weight, c_under, c_owner = ([] for _ in range(5))
    for index, book in enumerate(books):
        for holding in book.holdings:
            instrument = book.instruments[holding.instrument]
            if instrument.symbol not in instrument_rows:
                instrument_rows[instrument.symbol] = len(tiers)
                tiers.append(tier_rows(instrument))
            used = book.marks[holding.instrument]
            size.append(float(holding.size))
            contract.append(float(instrument.contract_size))
            entry.append(float(holding.entry_price))
            mark.append(float(used.price))
            allocated.append(float(holding.isolated_margin))
            chosen.append(float(book.leverage.get(holding.instrument, 0)))
            funding.append(float(used.funding_rate or 0))
            perpetual.append(instrument.kind == "perpetual")
            tick.append(float(instrument.tick_size))
            under.append(universe.setdefault(instrument.underlying, len(universe)))
            owner.append(index)
        for asset, amount in book.balances.items():
            if asset not in book.assets:
                continue
            spec = book.assets[asset]
            c_balance.append(float(amount))
            c_price.append(1.0 if spec.is_settlement else float(book.marks[asset].price))
            c_weight.append(float(spec.collateral_weight))
            c_under.append(
                universe.setdefault(spec.underlying, len(universe)) if spec.underlying else -1
            )
            c_owner.append(index)
    table = TierTable.from_rows(tiers)
    rows = np.array(
        [instrument_rows[h.instrument] for b in books for h in b.holdings], dtype=np.intp
    )
    positions = Positions.create(
        size=np.array(size, dtype=np.float64),
        contract_size=contract,
        entry_price=entry,
        mark=mark,
        tiers=table.take(rows),
        underlying=np.array(under, dtype=np.intp),
        tick_size=tick,
        isolated_margin=allocated,
        leverage=chosen,
        funding_rate=funding,
        is_perpetual=perpetual,
    )
    collateral = Collateral.create(
        balance=np.array(c_balance, dtype=np.float64),
        price=c_price,
        weight=c_weight,
        underlying=np.array(c_under, dtype=np.intp),
    )
    batch = BatchBook(
        positions=positions,
        position_owner=np.array(owner, dtype=np.intp),
        collateral=collateral,
        collateral_owner=np.array(c_owner, dtype=np.intp),
        modes=np.array([MarginMode(b.margin_mode).code for b in books], dtype=np.intp),
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
