"""Many subaccounts in one call: every ``MarginSummary`` field, and one stress scenario.

A ``BatchBook`` holds the positions and collateral rows of s subaccounts concatenated, each row
tagged with its owner (a subaccount index in [0, s)); rows need not be sorted. Per-row quantities
are computed once for all rows and summed per owner with ``np.bincount`` (per owner × underlying for
the portfolio legs), so the cost is a few dozen numpy calls whatever s is. Modes may be mixed:
every book gets both models (``standard_initial_margin`` / ``portfolio_initial_margin`` are
reported in every mode anyway) and its own mode's fields are selected with ``np.where``.

Results equal ``margin_summary`` / ``stress`` of each subaccount alone (up to float summation
order). Liquidation prices are not part of the batch form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.engine.arrays import ArrayLike, FloatArray, IntArray
from app.engine.parameters import RiskArrays
from app.engine.portfolio import charges_from_legs, weighted_bincount
from app.engine.stress import Groups, Sum, SumBy, check_shocks, revalue, shocked_prices
from app.engine.tiers import position_margins
from app.engine.types import (
    BatchSummary,
    Collateral,
    MarginMode,
    Positions,
    StressResult,
    mode_codes,
)


@dataclass(frozen=True, kw_only=True)
class BatchBook:
    """s subaccounts' rows concatenated.

    - ``positions`` (n,) with ``position_owner`` (n,) int in [0, s);
    - ``collateral`` (a,) with ``collateral_owner`` (a,) int in [0, s);
    - ``modes`` (s,) ``MarginMode.code`` values (isolated 0, cross 1, portfolio 2);
    - ``reserved_initial_margin`` (s,) settlement asset.
    """

    positions: Positions
    position_owner: IntArray
    collateral: Collateral
    collateral_owner: IntArray
    modes: IntArray
    reserved_initial_margin: FloatArray

    def __post_init__(self) -> None:
        s = int(np.shape(self.modes)[0])
        for name, dtype in (
            ("position_owner", np.intp),
            ("collateral_owner", np.intp),
            ("modes", np.intp),
            ("reserved_initial_margin", np.float64),
        ):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        if self.position_owner.shape != (self.positions.n,):
            raise ValueError("BatchBook.position_owner must have one entry per position row")
        if self.collateral_owner.shape != (self.collateral.a,):
            raise ValueError("BatchBook.collateral_owner must have one entry per collateral row")
        if self.reserved_initial_margin.shape != (s,):
            raise ValueError("BatchBook.reserved_initial_margin must have shape (s,)")
        for name in ("position_owner", "collateral_owner"):
            owner = getattr(self, name)
            if owner.size and (int(owner.min()) < 0 or int(owner.max()) >= s):
                raise ValueError(f"BatchBook.{name} must lie in [0, {s})")
        if self.modes.size and not bool(np.isin(self.modes, (0, 1, 2)).all()):
            raise ValueError("BatchBook.modes must be MarginMode codes 0, 1 or 2")

    @property
    def s(self) -> int:
        """Number of subaccounts."""
        return int(self.modes.shape[0])

    @classmethod
    def from_books(
        cls,
        books: Sequence[tuple[Positions, Collateral, MarginMode | str, float]],
    ) -> BatchBook:
        """Concatenate ``(positions, collateral, mode, reserved_initial_margin)`` per subaccount."""
        return cls(
            positions=Positions.concat([b[0] for b in books]),
            position_owner=np.repeat(np.arange(len(books)), [b[0].n for b in books]),
            collateral=Collateral.concat([b[1] for b in books]),
            collateral_owner=np.repeat(np.arange(len(books)), [b[1].a for b in books]),
            modes=mode_codes([b[2] for b in books]),
            reserved_initial_margin=np.array([b[3] for b in books], dtype=np.float64),
        )


def _groups(book: BatchBook, n_underlyings: int) -> Groups:
    s, u = book.s, n_underlyings
    p_owner, c_owner = book.position_owner, book.collateral_owner

    def by_owner(owner: IntArray) -> Sum:
        def total(values: FloatArray) -> FloatArray:
            return weighted_bincount(owner, values, s)

        return total

    def by_owner_underlying(owner: IntArray) -> SumBy:
        def legs(values: FloatArray, underlying: IntArray) -> FloatArray:
            # Column 0 of each owner collects underlying −1 (the settlement asset), then dropped.
            index = owner * (u + 1) + (underlying + 1)
            sums = weighted_bincount(index, values, s * (u + 1))
            return sums.reshape(s, u + 1)[:, 1:]

        return legs

    return Groups(
        by_owner(p_owner),
        by_owner(c_owner),
        by_owner_underlying(p_owner),
        by_owner_underlying(c_owner),
    )


def batch_summary(book: BatchBook, risk: RiskArrays) -> BatchSummary:
    """Every ``MarginSummary`` field for each of the s subaccounts, as (s,) arrays.

    Same formulas and conventions as ``summary.margin_summary`` (see its module docstring), per
    subaccount in its own mode; ratios are nan where equity ≤ 0.
    """
    pos, col = book.positions, book.collateral
    groups = _groups(book, risk.n_underlyings)
    qk = pos.size * pos.contract_size
    delta = qk * pos.mark
    notional = np.abs(delta)
    upnl = qk * (pos.mark - pos.entry_price)
    im_i, mm_i = position_margins(notional, pos.leverage, pos.tiers)
    funding = -delta * np.where(pos.is_perpetual, pos.funding_rate, 0.0)

    gross = groups.positions(notional)
    upnl_sum = groups.positions(upnl)
    im_std = groups.positions(im_i)
    mm_std = groups.positions(mm_i)
    isolated_total = groups.positions(pos.isolated_margin)
    value = col.balance * col.price
    c_weighted = groups.collateral(value * np.where(col.balance < 0, 1.0, col.weight))
    c_full = groups.collateral(value)

    long = groups.position_legs(np.maximum(delta, 0.0), pos.underlying)
    short = groups.position_legs(np.maximum(-delta, 0.0), pos.underlying)
    if col.a:
        long += groups.collateral_legs(np.maximum(value, 0.0), col.underlying)
        short += groups.collateral_legs(np.maximum(-value, 0.0), col.underlying)
    charges = charges_from_legs(long, short, gross, risk)

    is_iso = book.modes == MarginMode.ISOLATED.code
    is_pm = book.modes == MarginMode.PORTFOLIO.code
    reserved = book.reserved_initial_margin
    collateral_value = np.where(is_pm, c_full, c_weighted)
    equity = collateral_value + upnl_sum + np.where(is_iso, isolated_total, 0.0)
    initial = np.where(is_pm, charges.initial_margin, im_std) + reserved
    maintenance = np.where(is_pm, charges.maintenance_margin, mm_std)
    free = np.where(is_iso, collateral_value - reserved, equity - initial)
    withdrawable = np.maximum(
        0.0,
        np.where(
            is_iso,
            free,
            equity - np.maximum(initial, risk.withdrawal_floor * gross),
        ),
    )
    positive = equity > 0

    def ratio(numerator: FloatArray) -> FloatArray:
        out = np.full(book.s, np.nan)
        with np.errstate(over="ignore"):  # a ratio over a denormal equity is +inf, as 1.0 / 1e-320
            np.divide(numerator, equity, out=out, where=positive)
        return out

    return BatchSummary(
        equity=equity,
        collateral_value=collateral_value,
        unrealized_pnl=upnl_sum,
        initial_margin=initial,
        maintenance_margin=maintenance,
        reserved_initial_margin=reserved.copy(),
        free_collateral=free,
        withdrawable=withdrawable,
        initial_margin_ratio=ratio(initial),
        maintenance_margin_ratio=ratio(maintenance),
        leverage=ratio(gross),
        gross_notional=gross,
        next_funding=groups.positions(funding),
        standard_initial_margin=im_std,
        portfolio_initial_margin=np.asarray(charges.initial_margin, dtype=np.float64),
    )


def batch_stress(book: BatchBook, risk: RiskArrays, shocks: ArrayLike) -> StressResult:
    """One scenario over every subaccount: ``shocks`` (U,) relative moves → (s,) results.

    Same formulas as ``stress.stress`` per subaccount in its own mode.
    """
    move = np.asarray(shocks, dtype=np.float64).reshape(-1)
    if move.shape != (risk.n_underlyings,):
        raise ValueError(f"shocks must have shape ({risk.n_underlyings},)")
    check_shocks(move)
    marks = shocked_prices(book.positions.mark, book.positions.underlying, move)
    prices = shocked_prices(book.collateral.price, book.collateral.underlying, move)
    groups = _groups(book, risk.n_underlyings)
    return revalue(book.positions, book.collateral, marks, prices, book.modes, risk, groups)
