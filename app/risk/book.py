"""A subaccount's book as the engine sees it: its state and marks loaded once, then converted
from Decimal to float64 arrays in one place (the engine rounds back conservatively)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import cached_property

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.fills import SimulatedFill, apply_fill
from app.accounts.isolated import isolated_allocation, tier_rows
from app.accounts.models import Subaccount
from app.core.runtime import Runtime
from app.core.types import format_decimal, utcnow
from app.engine import (
    Collateral,
    OptionTerms,
    Positions,
    RiskArrays,
    RiskParameters,
    TierTable,
    years_to_expiry,
)
from app.instruments.models import Asset, Instrument
from app.marketdata import service as marketdata
from app.risk.reference import Reference, reference


@dataclass(frozen=True)
class MarkUsed:
    """The price a computation used for a symbol, and how much to trust it."""

    price: Decimal
    status: str
    """``fresh`` | ``stale`` | ``deviating`` | ``missing`` (never marked: entry price, or 0 for
    a collateral asset, stands in)."""
    age_ms: int | None
    funding_rate: Decimal | None = None
    iv: Decimal | None = None
    """An option's implied volatility (its mark's median iv); None for other symbols."""

    @cached_property
    def floats(self) -> tuple[float, float]:
        """(price, funding rate or 0) in float64, converted once per mark, not per evaluation."""
        return float(self.price), float(self.funding_rate or 0)

    @cached_property
    def price_text(self) -> str:
        """The price as the API writes it, formatted once per mark."""
        return format_decimal(self.price)


@dataclass(frozen=True)
class Holding:
    instrument: str
    size: Decimal
    entry_price: Decimal
    isolated_margin: Decimal

    @cached_property
    def floats(self) -> tuple[float, float, float]:
        """(size, entry price, isolated margin) in float64, converted once per holding: the
        holdings a basket does not touch are the same objects before and after it."""
        return float(self.size), float(self.entry_price), float(self.isolated_margin)


@dataclass(frozen=True)
class Book:
    subaccount_id: str
    account_id: str
    strategy: str | None
    margin_mode: str
    settlement: str
    holdings: tuple[Holding, ...]
    balances: Mapping[str, Decimal]
    instruments: Mapping[str, Instrument]
    assets: Mapping[str, Asset]
    leverage: Mapping[str, Decimal]
    marks: Mapping[str, MarkUsed]
    """Every symbol valued: the instruments, the priced collateral assets, and the index of
    each option's underlying (its ``S``)."""
    as_of: datetime | None = None
    """When the marks were judged: an option's time to expiry is counted from it."""

    def with_mode(self, mode: str) -> Book:
        return replace(self, margin_mode=mode)

    def with_balance(self, asset: str, amount: Decimal) -> Book:
        return replace(self, balances={**self.balances, asset: amount})

    def with_fills(self, fills: Sequence[SimulatedFill]) -> Book:
        """The book after ``fills``, by the same arithmetic as recorded fills: new sizes and
        average entries, realised PnL and fees in the settlement balance, and in isolated mode
        margin released by closing and allocated by growing."""
        if not fills:
            return self
        holdings = {h.instrument: h for h in self.holdings}
        balances = dict(self.balances)
        for fill in fills:
            instrument = self.instruments[fill.instrument]
            held = holdings.get(fill.instrument) or Holding(fill.instrument, ZERO, ZERO, ZERO)
            delta = fill.size if fill.side == "buy" else -fill.size
            effect = apply_fill(
                held.size, held.entry_price, delta, fill.price, instrument.contract_size
            )
            allocated = held.isolated_margin
            if instrument.kind == "option":  # the premium moves at the fill (margin.md)
                cash = -delta * instrument.contract_size * fill.price - fill.fee
            else:
                cash = effect.realized_pnl - fill.fee
            if effect.closed_size and allocated:
                released = allocated * effect.closed_size / abs(held.size)
                allocated -= released
                cash += released
            if self.margin_mode == "isolated" and effect.closed_size < abs(delta):
                needed = isolated_allocation(
                    instrument,
                    effect.size,
                    effect.entry_price,
                    fill.price,
                    allocated,
                    self.leverage.get(fill.instrument),
                )
                allocated += needed
                cash -= needed
            balances[self.settlement] = balances.get(self.settlement, ZERO) + cash
            holdings[fill.instrument] = Holding(
                fill.instrument, effect.size, effect.entry_price, allocated
            )
        return replace(
            self,
            holdings=tuple(h for h in holdings.values() if h.size != 0),
            balances=balances,
        )


ZERO = Decimal(0)


async def load_book(
    session: AsyncSession,
    runtime: Runtime,
    subaccount: Subaccount,
    also_instruments: Sequence[str] = (),
    reference_data: Reference | None = None,
) -> Book:
    """The subaccount's state and the marks it needs (and those of ``also_instruments``, the
    instruments of orders being checked). Instruments and assets come from the reference
    cache (``reference_data`` when the caller already holds it)."""
    state = await accounts_repository.state_of(session, subaccount.subaccount_id)
    holdings = tuple(Holding(*position) for position in state.positions)
    balances = state.balances
    known = (await reference(session, runtime)) if reference_data is None else reference_data
    instruments = {
        symbol: known.instruments[symbol]
        for symbol in dict.fromkeys([*(h.instrument for h in holdings), *also_instruments])
        if symbol in known.instruments
    }
    assets = known.assets
    settlement = known.settlement
    priced_assets = [a for a in balances if a in assets and not assets[a].is_settlement]
    indexes = option_indexes(instruments.values(), priced_assets)
    judged = await marketdata.current_marks(
        session, runtime, [*instruments, *priced_assets, *indexes], known.instruments
    )
    marks: dict[str, MarkUsed] = {}
    entries = {h.instrument: h.entry_price for h in holdings}
    for symbol in instruments:
        mark = judged.get(symbol)
        marks[symbol] = (
            MarkUsed(mark.price, mark.status, mark.age_ms, mark.funding_rate, mark.iv)
            if mark is not None
            else MarkUsed(entries.get(symbol, ZERO), "missing", None)
        )
    for index in indexes:
        mark = judged.get(index)
        marks[index] = (
            MarkUsed(mark.price, mark.status, mark.age_ms)
            if mark is not None
            else MarkUsed(ZERO, "missing", None)
        )
    for asset in priced_assets:
        mark = judged.get(asset)
        marks[asset] = (
            MarkUsed(mark.price, mark.status, mark.age_ms)
            if mark is not None
            else MarkUsed(Decimal(0), "missing", None)
        )
    return Book(
        subaccount_id=subaccount.subaccount_id,
        account_id=subaccount.account_id,
        strategy=subaccount.strategy,
        margin_mode=subaccount.margin_mode,
        settlement=settlement,
        holdings=holdings,
        balances=balances,
        instruments=instruments,
        assets=assets,
        leverage=state.leverage,
        marks=marks,
        as_of=utcnow(),
    )


def option_indexes(instruments: Iterable[Instrument], also_valued: Sequence[str] = ()) -> list[str]:
    """The underlyings whose index the options among ``instruments`` are valued at (``S``),
    except those already in ``also_valued``: the symbols to mark beside them."""
    found: list[str] = []
    for instrument in instruments:
        if instrument.kind == "option":
            index = instrument.underlying
            if index not in found and index not in also_valued:
                found.append(index)
    return found


_TIER_TABLES: dict[tuple[int, ...], tuple[tuple[Instrument, ...], TierTable]] = {}
"""Tier tables by the instrument objects of a book's rows. Reference data is loaded once per
version and its objects shared, so a book's table is built once, not per evaluation. The
objects are kept with the table, so an id is never reused for another while cached."""


def _tier_table(instruments: Sequence[Instrument]) -> TierTable:
    key = tuple(map(id, instruments))
    kept = _TIER_TABLES.get(key)
    if kept is not None and all(a is b for a, b in zip(kept[0], instruments, strict=True)):
        return kept[1]
    # An option has no tiers (its margin is the short option rules'): a zero row stands in.
    table = TierTable.from_rows([tier_rows(i) or [(0.0, 0.0, 0.0)] for i in instruments])
    if len(_TIER_TABLES) >= 4096:
        _TIER_TABLES.clear()
    _TIER_TABLES[key] = (tuple(instruments), table)
    return table


@dataclass(frozen=True)
class EngineInputs:
    positions: Positions
    collateral: Collateral
    risk: RiskArrays
    rows: np.ndarray
    """The positions as one (9, n) matrix (``positions``' arrays are its rows)."""
    options: OptionTerms | None = None
    """The option rows' terms; None for a book without options."""


_INSTRUMENT_ROWS: dict[int, tuple[Instrument, tuple[float, float, float]]] = {}
"""An instrument's engine constants (contract size, tick, perpetual as 1/0) by object: reference
data is loaded once per version and its objects shared, so each is converted once."""


def _instrument_row(instrument: Instrument) -> tuple[float, float, float]:
    kept = _INSTRUMENT_ROWS.get(id(instrument))
    if kept is not None and kept[0] is instrument:
        return kept[1]
    row = (
        float(instrument.contract_size),
        float(instrument.tick_size),
        1.0 if instrument.kind == "perpetual" else 0.0,
    )
    if len(_INSTRUMENT_ROWS) >= 4096:
        _INSTRUMENT_ROWS.clear()
    _INSTRUMENT_ROWS[id(instrument)] = (instrument, row)
    return row


def _position_row(
    holding: Holding, instrument: Instrument, mark: MarkUsed, chosen: Decimal | None
) -> tuple[float, ...]:
    size, entry, isolated = holding.floats
    contract_size, tick, perpetual = _instrument_row(instrument)
    price, funding = mark.floats
    return (size, contract_size, entry, price, isolated, float(chosen or 0), funding, perpetual,
            tick)  # fmt: skip


_NOT_FINITE = "book {}: a position value is not finite or a mark ≤ 0"


def engine_inputs(
    book: Book, parameters: RiskParameters, like: tuple[Book, EngineInputs] | None = None
) -> EngineInputs:
    """The book as float64 arrays: the single Decimal → float boundary on the way in.

    Built as one (9, n) matrix from values converted once per object (holdings, marks,
    instruments), and checked: every value finite, every mark > 0 (what ``Positions.validate``
    would refuse; the rest is validated where it is stored). ``like`` is a book with the same
    rows (instruments, in order) and its inputs, e.g. the book before a basket: only the rows
    whose holding or mark differ are converted (and checked) again."""
    holdings = book.holdings
    collateral_assets = [a for a in book.balances if a in book.assets]
    marks, leverage = book.marks, book.leverage
    instruments = [book.instruments[h.instrument] for h in holdings]
    base = _same_rows(book, instruments, collateral_assets, like)
    if base is not None:
        like_book, like_inputs = base
        matrix = like_inputs.rows.copy()
        like_marks, like_leverage = like_book.marks, like_book.leverage
        # The same marks and leverage (a basket applied to the book before it): only the rows
        # of the holdings it touched differ, and those holdings are new objects.
        same_prices = marks is like_marks and leverage is like_leverage
        for i, (holding, was) in enumerate(zip(holdings, like_book.holdings, strict=True)):
            if same_prices and holding is was:
                continue
            symbol = holding.instrument
            mark, like_mark = marks[symbol], like_marks[symbol]
            chosen = leverage.get(symbol)
            if (
                holding is not was
                or (
                    mark is not like_mark
                    and (
                        mark.price != like_mark.price or mark.funding_rate != like_mark.funding_rate
                    )
                )
                or chosen != like_leverage.get(symbol)
            ):
                row = _position_row(holding, instruments[i], mark, chosen)
                if not (all(map(math.isfinite, row)) and row[3] > 0):
                    raise ValueError(_NOT_FINITE.format(book.subaccount_id))
                matrix[:, i] = row
        risk = parameters.arrays(like_inputs.risk.universe)  # these parameters' (cached)
        index = {name: i for i, name in enumerate(risk.universe)}
        underlying = like_inputs.positions.underlying
        tiers = like_inputs.positions.tiers
    else:
        universe: list[str] = []
        for name in [i.underlying for i in instruments] + [
            book.assets[a].underlying or "" for a in collateral_assets
        ]:
            if name and name not in universe:
                universe.append(name)
        rows = [
            _position_row(h, i, marks[h.instrument], leverage.get(h.instrument))
            for h, i in zip(holdings, instruments, strict=True)
        ]
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), 9).T.copy()
        risk = parameters.arrays(universe)
        index = {name: i for i, name in enumerate(universe)}
        underlying = np.array([index[i.underlying] for i in instruments], dtype=np.intp)
        tiers = _tier_table(instruments)
        if not (np.isfinite(matrix).all() and (matrix[3] > 0).all()):
            raise ValueError(_NOT_FINITE.format(book.subaccount_id))
    positions = Positions(
        size=matrix[0],
        contract_size=matrix[1],
        entry_price=matrix[2],
        mark=matrix[3],
        isolated_margin=matrix[4],
        leverage=matrix[5],
        funding_rate=matrix[6],
        is_perpetual=matrix[7] != 0,
        tick_size=matrix[8],
        underlying=underlying,
        tiers=tiers,
    )
    collateral = Collateral(
        balance=np.array([float(book.balances[a]) for a in collateral_assets], dtype=np.float64),
        price=np.array(
            [
                1.0 if book.assets[a].is_settlement else marks[a].floats[0]
                for a in collateral_assets
            ],
            dtype=np.float64,
        ),
        weight=np.array(
            [float(book.assets[a].collateral_weight) for a in collateral_assets], dtype=np.float64
        ),
        underlying=np.array(
            [index.get(book.assets[a].underlying or "", -1) for a in collateral_assets],
            dtype=np.intp,
        ),
    )
    options = None
    if any(i.kind == "option" for i in instruments):
        options = option_terms(book, instruments)
    return EngineInputs(positions, collateral, risk, matrix, options)


def option_inputs(book: Book, instrument: Instrument) -> tuple[float, float, float, float]:
    """``(K, T, σ, S)`` of an option valued in ``book`` (margin.md "Options"): the strike, the
    years to expiry at ``book.as_of``, its mark's iv and the mark of its underlying's index.
    An index never marked stands in at the strike (the check refuses to add risk on it: its
    status is ``missing``), a missing iv at 0 (intrinsic value)."""
    strike = float(instrument.strike or 1)
    expiry = instrument.expiry.timestamp() if instrument.expiry else 0.0
    years = float(years_to_expiry(expiry, (book.as_of or utcnow()).timestamp()))
    iv = book.marks[instrument.symbol].iv
    index = book.marks.get(instrument.underlying)
    spot = float(index.price) if index is not None and index.price > 0 else strike
    return strike, years, float(iv or 0), spot


def option_terms(book: Book, instruments: Sequence[Instrument]) -> OptionTerms:
    """The terms of the book's option rows (``option_inputs`` each; other rows stand in at
    K = S = 1, T = σ = 0, ignored by the engine)."""
    is_option = [i.kind == "option" for i in instruments]
    rows = [
        option_inputs(book, i) if option else (1.0, 0.0, 0.0, 1.0)
        for i, option in zip(instruments, is_option, strict=True)
    ]
    strike, years, volatility, spot = np.array(rows, dtype=np.float64).reshape(len(rows), 4).T
    return OptionTerms(
        is_option=np.array(is_option, dtype=np.bool_),
        is_call=np.array([i.option_type == "call" for i in instruments], dtype=np.bool_),
        strike=strike,
        time_to_expiry=years,
        volatility=volatility,
        underlying_price=spot,
    )


def _same_rows(
    book: Book,
    instruments: list[Instrument],
    collateral_assets: list[str],
    like: tuple[Book, EngineInputs] | None,
) -> tuple[Book, EngineInputs] | None:
    """``like`` when its book has the same position rows (the same instrument objects, in
    order) and collateral assets as ``book``: its matrix can then be patched row by row."""
    if like is None:
        return None
    like_book = like[0]
    if len(like_book.holdings) != len(instruments) or like_book.assets is not book.assets:
        return None
    like_instruments = like_book.instruments
    for holding, instrument in zip(like_book.holdings, instruments, strict=True):
        if like_instruments.get(holding.instrument) is not instrument:
            return None
    if [a for a in like_book.balances if a in like_book.assets] != collateral_assets:
        return None
    return like
