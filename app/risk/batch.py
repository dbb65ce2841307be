"""Many subaccounts at once: bulk reads, one engine call (risk overview, whole-book stress,
margin calls). Arrays are built in one pass, never one engine input per subaccount."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

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
from app.risk.book import Book, load_book, tier_rows


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
) -> tuple[BatchBook, RiskArrays, list[str]]:
    """Engine inputs for many subaccounts (and the instrument of each position row), built from row tuples the database already converted
    to float (the batch path's Decimal → float boundary). A subaccount with active reservations
    goes through its exact ``Book`` (reservations applied as fills) instead.
    ``everyone`` reads whole tables rather than filtering by id."""
    owner_of = {s.subaccount_id: i for i, s in enumerate(subaccounts)}
    ids = None if everyone else list(owner_of)
    pending: dict[str, list[Any]] = defaultdict(list)
    for reservation in await pretrade_repository.active_reservations(
        session, list(owner_of), utcnow()
    ):
        pending[reservation.subaccount_id].append(reservation)
    exact: list[tuple[int, Book]] = []
    for sid, held in pending.items():
        fills = reservations.as_fills(held)
        book = await load_book(
            session, runtime, subaccounts[owner_of[sid]], [f.instrument for f in fills]
        )
        exact.append((owner_of[sid], book.with_fills(fills)))

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
    instruments = {i.symbol: i for i in await instruments_repository.list_instruments(session)}
    assets = {a.symbol: a for a in await instruments_repository.list_assets(session)}
    held_symbols = {row[1] for row in position_rows} | {
        h.instrument for _, book in exact for h in book.holdings
    }
    held_assets = {row[1] for row in balance_rows if row[1] in assets}
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
        tiers.append(tier_rows(instrument))
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

    # Rows of the exact books join the float rows, converted the same way.
    for _, book in exact:
        sid = book.subaccount_id
        position_rows += [
            (sid, h.instrument, float(h.size), float(h.entry_price), float(h.isolated_margin))
            for h in book.holdings
        ]
        balance_rows += [(sid, a, float(v)) for a, v in book.balances.items() if a in assets]
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

    specs = [known[row[1]] for row in position_rows]
    entry = np.array([row[3] for row in position_rows], dtype=np.float64)
    priced = np.array([spec.mark for spec in specs], dtype=np.float64)
    priced = np.where(np.isnan(priced), entry, priced)
    positions = Positions.create(
        size=np.array([row[2] for row in position_rows], dtype=np.float64),
        contract_size=np.array([spec.contract_size for spec in specs], dtype=np.float64),
        entry_price=entry,
        mark=priced,
        tiers=TierTable.from_rows(tiers).take(
            np.array([spec.row for spec in specs], dtype=np.intp)
        ),
        underlying=np.array([spec.underlying for spec in specs], dtype=np.intp),
        tick_size=np.array([spec.tick_size for spec in specs], dtype=np.float64),
        isolated_margin=np.array([row[4] for row in position_rows], dtype=np.float64),
        leverage=np.array(
            [leverage.get((row[0], row[1]), 0.0) for row in position_rows]
            if leverage
            else np.zeros(len(position_rows)),
            dtype=np.float64,
        ),
        funding_rate=np.array([spec.funding_rate for spec in specs], dtype=np.float64),
        is_perpetual=np.array([spec.perpetual for spec in specs], dtype=bool),
    )
    collateral = Collateral.create(
        balance=np.array([row[2] for row in balance_rows], dtype=np.float64),
        price=np.array([asset_price[row[1]] for row in balance_rows], dtype=np.float64),
        weight=np.array(
            [float(assets[row[1]].collateral_weight) for row in balance_rows], dtype=np.float64
        ),
        underlying=np.array([asset_under[row[1]] for row in balance_rows], dtype=np.intp),
    )
    codes = {mode.value: mode.code for mode in MarginMode}
    batch = BatchBook(
        positions=positions,
        position_owner=np.array([owner_of[row[0]] for row in position_rows], dtype=np.intp),
        collateral=collateral,
        collateral_owner=np.array([owner_of[row[0]] for row in balance_rows], dtype=np.intp),
        modes=np.array([codes[s.margin_mode] for s in subaccounts], dtype=np.intp),
        reserved_initial_margin=np.zeros(len(subaccounts)),
    )
    return batch, parameters.arrays(list(universe)), [row[1] for row in position_rows]


async def evaluate_subaccounts(
    session: AsyncSession,
    runtime: Runtime,
    subaccounts: Sequence[Subaccount],
    parameters: RiskParameters,
    *,
    everyone: bool = False,
) -> BatchEvaluation:
    """Every given subaccount's summary from one batch engine call."""
    batch, risk, instruments = await load_batch(
        session, runtime, subaccounts, parameters, everyone=everyone
    )
    return BatchEvaluation(subaccounts, batch_summary(batch, risk), risk, batch, instruments)


def risk_order(evaluation: BatchEvaluation) -> np.ndarray:
    """``maintenance_margin_ratio`` with books at or below zero equity first: +inf when
    something is open or owed, 0 when empty."""
    summary = evaluation.summary
    ratio = np.array(summary.maintenance_margin_ratio, dtype=np.float64)
    under_water = np.isnan(ratio) & ((summary.maintenance_margin > 0) | (summary.equity < 0))
    ratio[under_water] = np.inf
    ratio[np.isnan(ratio)] = 0.0
    return ratio
