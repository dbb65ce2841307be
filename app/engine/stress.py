"""Stress: a book revalued under shocks, in its own margin mode (margin.md "Stress").

A scenario is a relative move per underlying (``{"BTC": -0.2}``; unlisted underlyings do not
move). Every mark and collateral price of underlying u becomes ``price · (1 + shock_u)`` (a shock
below −1 is rejected). The book is then revalued exactly as ``summary.py`` does and reported as:

- ``equity`` E and ``maintenance_margin`` MM of the mode, ``maintenance_margin_ratio`` MM / E
  (nan when E ≤ 0);
- cross / portfolio: ``shortfall = max(0, MM − E)`` (what a deposit must bring to avoid
  liquidation), ``deficit = max(0, −E)`` (the loss beyond collateral),
  ``liquidatable = E ≤ MM`` with a position open;
- isolated, where each position stands alone and only balances (C) fund its margin:
  ``shortfall = max(0, Σ_i max(0, MM_i − (A_i + u_i)) − C)``,
  ``deficit = max(0, Σ_i max(0, −(A_i + u_i)) − C)``,
  ``liquidatable`` = some open position has ``A_i + u_i ≤ MM_i``. These equal the cross formulas
  whenever no position's surplus would otherwise offset another's need.

Options (margin.md "Stress"): a scenario may also move volatility per underlying
(``vol_shocks``, ``{"BTC": 0.5}``: σ·(1 + 0.5), at least −1). Each option's mark then moves by
``V(S′, σ′) − V(S, σ)`` (Black-76 at the moved index S′ = S·(1 + shock_u) and σ′, its time to
expiry unchanged), its index and σ move with it, and the book is revalued by
``summary.margin_summary`` itself, scenario by scenario (``stress`` with ``options``).

The default grid: each underlying alone at ±⅓, ±⅔, ±1 and ±2 × its scan range, then all together
at −1 and +1 × their scan ranges (a correlated crash and rally).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from app.engine.arrays import BoolArray, FloatArray, IntArray
from app.engine.options import OptionTerms, black76_value
from app.engine.parameters import RiskArrays, RiskParameters
from app.engine.portfolio import charges_from_legs, group_sum
from app.engine.summary import margin_summary
from app.engine.tiers import tiered_margins
from app.engine.types import Collateral, MarginMode, Positions, StressResult

_GRID_MULTIPLES = (
    Fraction(-2),
    Fraction(-1),
    Fraction(-2, 3),
    Fraction(-1, 3),
    Fraction(1, 3),
    Fraction(2, 3),
    Fraction(1),
    Fraction(2),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named stress scenario: ``shocks`` maps underlying → relative move (−0.2 = −20%)."""

    name: str
    shocks: Mapping[str, float]
    vol_shocks: Mapping[str, float] = field(default_factory=dict)
    """Relative moves of implied volatility per underlying (options only; −0.5 = σ halved)."""


def _multiple_name(multiple: Fraction) -> str:
    sign = "+" if multiple > 0 else "−"
    size = abs(multiple)
    text = str(size.numerator) if size.denominator == 1 else f"{size.numerator}/{size.denominator}"
    return f"{sign}{text}"


def default_scenarios(universe: Sequence[str], parameters: RiskParameters) -> list[Scenario]:
    """margin.md's default grid for ``universe``: 8 single-underlying shocks per underlying, in
    the order −2, −1, −⅔, −⅓, +⅓, +⅔, +1, +2 × scan range, then the two joint moves.

    Names read e.g. ``"BTC −1/3 × scan (−3.33%)"``, ``"all −1 × scan (crash)"``.
    """
    scenarios: list[Scenario] = []
    for name in universe:
        r = parameters.scan_range(name)
        for multiple in _GRID_MULTIPLES:
            move = float(multiple) * r
            label = f"{name} {_multiple_name(multiple)} × scan ({move:+.2%})".replace("-", "−")
            scenarios.append(Scenario(label, {name: move}))
    if universe:
        for sign, word in ((-1.0, "crash"), (1.0, "rally")):
            shocks = {name: sign * parameters.scan_range(name) for name in universe}
            prefix = "−" if sign < 0 else "+"
            scenarios.append(Scenario(f"all {prefix}1 × scan ({word})", shocks))
    return scenarios


def shock_matrix(
    scenarios: Sequence[Scenario], universe: Sequence[str], *, volatility: bool = False
) -> FloatArray:
    """The (S, U) matrix of relative moves (of volatility with ``volatility``); ValueError for
    an underlying outside ``universe`` or a move below −1 (a negative price or σ)."""
    index = {name: i for i, name in enumerate(universe)}
    matrix = np.zeros((len(scenarios), len(index)))
    for row, scenario in enumerate(scenarios):
        moves = scenario.vol_shocks if volatility else scenario.shocks
        for name, move in moves.items():
            if name not in index:
                raise ValueError(f"scenario {scenario.name!r}: unknown underlying {name!r}")
            matrix[row, index[name]] = move
    check_shocks(matrix)
    return matrix


def check_shocks(shocks: FloatArray) -> None:
    """Raise ValueError unless every shock is finite and ≥ −1."""
    if not bool(np.all(np.isfinite(shocks) & (shocks >= -1.0))):
        raise ValueError("a shock must be a finite relative move of at least −1 (−100%)")


def shocked_prices(prices: FloatArray, underlying: IntArray, shocks: FloatArray) -> FloatArray:
    """``prices`` (n,) of the given underlyings (−1 = none) moved by ``shocks`` (..., U) →
    (..., n): ``price · (1 + shock_u)``."""
    padded = np.concatenate([shocks, np.zeros((*shocks.shape[:-1], 1))], axis=-1)
    return prices * (1.0 + padded[..., underlying])


Sum = Callable[[FloatArray], FloatArray]
SumBy = Callable[[FloatArray, IntArray], FloatArray]


@dataclass(frozen=True, slots=True)
class Groups:
    """How to sum per-row values into per-book values: ``positions(x)`` (..., n) → (..., G),
    ``collateral(x)`` (..., a) → (..., G), ``legs(x, underlying)`` → (..., G, U) and ditto for
    collateral. One book: G is absent (plain sums); a batch: G = s (bincount by owner)."""

    positions: Sum
    collateral: Sum
    position_legs: SumBy
    collateral_legs: SumBy


def revalue(
    positions: Positions,
    collateral: Collateral,
    marks: FloatArray,
    prices: FloatArray,
    modes: FloatArray | IntArray | int,
    risk: RiskArrays,
    groups: Groups,
) -> StressResult:
    """Equity, MM, ratio, shortfall, deficit, liquidatable at ``marks`` (..., n) and collateral
    ``prices`` (..., a), in each book's mode (an int code or per-group codes). Internal core of
    ``stress`` and ``batch_stress``; formulas in the module docstring."""
    codes = np.asarray(modes)
    qk = positions.size * positions.contract_size
    delta = qk * marks
    notional = np.abs(delta)
    upnl = qk * (marks - positions.entry_price)
    _, mm_i = tiered_margins(notional, positions.tiers)
    value = collateral.balance * prices
    weighted = groups.collateral(value * np.where(collateral.balance < 0, 1.0, collateral.weight))
    upnl_sum = groups.positions(upnl)
    mm_std = groups.positions(mm_i)
    open_count = groups.positions(np.broadcast_to(positions.size != 0, marks.shape) * 1.0)
    has_open = open_count > 0

    equity = weighted + upnl_sum
    maintenance = mm_std
    shortfall = np.maximum(0.0, maintenance - equity)
    deficit = np.maximum(0.0, -equity)
    liquidatable: BoolArray = (equity <= maintenance) & has_open

    if bool(np.any(codes == MarginMode.PORTFOLIO.code)):
        full = groups.collateral(value)
        long = groups.position_legs(np.maximum(delta, 0.0), positions.underlying)
        short = groups.position_legs(np.maximum(-delta, 0.0), positions.underlying)
        if collateral.a:
            long = long + groups.collateral_legs(np.maximum(value, 0.0), collateral.underlying)
            short = short + groups.collateral_legs(np.maximum(-value, 0.0), collateral.underlying)
        mm_pm = charges_from_legs(long, short, groups.positions(notional), risk).maintenance_margin
        eq_pm = full + upnl_sum
        is_pm = codes == MarginMode.PORTFOLIO.code
        equity = np.where(is_pm, eq_pm, equity)
        maintenance = np.where(is_pm, mm_pm, maintenance)
        shortfall = np.where(is_pm, np.maximum(0.0, mm_pm - eq_pm), shortfall)
        deficit = np.where(is_pm, np.maximum(0.0, -eq_pm), deficit)
        liquidatable = np.where(is_pm, (eq_pm <= mm_pm) & has_open, liquidatable)

    if bool(np.any(codes == MarginMode.ISOLATED.code)):
        eq_i = positions.isolated_margin + upnl
        eq_iso = equity + groups.positions(np.broadcast_to(positions.isolated_margin, eq_i.shape))
        need = groups.positions(np.maximum(0.0, mm_i - eq_i))
        loss = groups.positions(np.maximum(0.0, -eq_i))
        failing = groups.positions(((eq_i <= mm_i) & (positions.size != 0)) * 1.0) > 0
        is_iso = codes == MarginMode.ISOLATED.code
        equity = np.where(is_iso, eq_iso, equity)
        shortfall = np.where(is_iso, np.maximum(0.0, need - weighted), shortfall)
        deficit = np.where(is_iso, np.maximum(0.0, loss - weighted), deficit)
        liquidatable = np.where(is_iso, failing, liquidatable)

    ratio = np.full_like(equity, np.nan)
    with np.errstate(over="ignore"):  # a ratio over a denormal equity is +inf
        np.divide(maintenance, equity, out=ratio, where=equity > 0)
    return StressResult(
        equity=equity,
        maintenance_margin=maintenance,
        maintenance_margin_ratio=ratio,
        shortfall=shortfall,
        deficit=deficit,
        liquidatable=liquidatable,
    )


def _single_book_groups(n_underlyings: int) -> Groups:
    def total(values: FloatArray) -> FloatArray:
        return np.asarray(values.sum(axis=-1), dtype=np.float64)

    def by_underlying(values: FloatArray, underlying: IntArray) -> FloatArray:
        return group_sum(values, underlying, n_underlyings)

    return Groups(total, total, by_underlying, by_underlying)


def stress(
    positions: Positions,
    collateral: Collateral,
    risk: RiskArrays,
    mode: MarginMode | str,
    shocks: FloatArray,
    *,
    options: OptionTerms | None = None,
    vol_shocks: FloatArray | None = None,
) -> StressResult:
    """One book under S scenarios: ``shocks`` (S, U) relative moves → ``StressResult`` of (S,).

    Build ``shocks`` with ``shock_matrix(scenarios, risk.universe)``; formulas in the module
    docstring. Reservations play no part (they are not positions). ``options``: the option
    rows' terms; ``vol_shocks`` (S, U) their volatility moves (``shock_matrix(...,
    volatility=True)``; none by default).
    """
    shocks = np.atleast_2d(np.asarray(shocks, dtype=np.float64))
    check_shocks(shocks)
    if options is not None and bool(options.is_option.any()):
        vol = np.zeros_like(shocks) if vol_shocks is None else np.atleast_2d(vol_shocks)
        check_shocks(vol)
        return _stress_with_options(positions, collateral, risk, mode, shocks, vol, options)
    marks = shocked_prices(positions.mark, positions.underlying, shocks)
    prices = shocked_prices(collateral.price, collateral.underlying, shocks)
    groups = _single_book_groups(risk.n_underlyings)
    return revalue(positions, collateral, marks, prices, MarginMode(mode).code, risk, groups)


def _stress_with_options(
    positions: Positions,
    collateral: Collateral,
    risk: RiskArrays,
    mode: MarginMode | str,
    shocks: FloatArray,
    vol_shocks: FloatArray,
    terms: OptionTerms,
) -> StressResult:
    """``stress`` of a book with options: each scenario revalued by ``margin_summary``."""
    is_option = terms.is_option
    marks = shocked_prices(positions.mark, positions.underlying, shocks)
    spots = shocked_prices(terms.underlying_price, positions.underlying, shocks)
    sigmas = shocked_prices(terms.volatility, positions.underlying, vol_shocks)
    before = black76_value(
        terms.is_call, terms.underlying_price, terms.strike, terms.volatility, terms.time_to_expiry
    )
    after = black76_value(terms.is_call, spots, terms.strike, sigmas, terms.time_to_expiry)
    marks = np.where(is_option, positions.mark + (after - before), marks)
    prices = shocked_prices(collateral.price, collateral.underlying, shocks)
    has_open = bool(np.any(positions.size != 0))
    rows: dict[str, list[float]] = {"equity": [], "maintenance_margin": []}
    for s in range(shocks.shape[0]):
        summary = margin_summary(
            replace(positions, mark=np.where(is_option, np.maximum(marks[s], 0.0), marks[s])),
            replace(collateral, price=prices[s]),
            risk,
            mode,
            liquidation_prices=False,
            options=replace(
                terms,
                underlying_price=np.where(is_option, spots[s], terms.underlying_price),
                volatility=np.where(is_option, sigmas[s], terms.volatility),
            ),
        )
        rows["equity"].append(summary.equity)
        rows["maintenance_margin"].append(summary.maintenance_margin)
    equity, maintenance = np.array(rows["equity"]), np.array(rows["maintenance_margin"])
    ratio = np.full_like(equity, np.nan)
    np.divide(maintenance, equity, out=ratio, where=equity > 0)
    return StressResult(
        equity=equity,
        maintenance_margin=maintenance,
        maintenance_margin_ratio=ratio,
        shortfall=np.maximum(0.0, maintenance - equity),
        deficit=np.maximum(0.0, -equity),
        liquidatable=(equity <= maintenance) & has_open,
    )
