"""Portfolio margin of a book with options: the price × volatility scenario grid (margin.md).

Per underlying u with scan range r_u: price moves ``s ∈ {−1, −⅔, −⅓, 0, ⅓, ⅔, 1} · r_u`` and one
volatility direction for the whole underlying (down, none, up), each option j moving by its own
``v_j ∈ {−vd_j, 0, +vu_j}``::

    vu_j = vol_up · (30 / max(days_j, 1))^vega_power
    vd_j = min(0.9, vol_down · (30 / max(days_j, 1))^vega_power)        days_j = 365 · T_j

The loss of u's book in each of the 7 × 3 scenarios, with D1_u the dollar delta of its delta-one
positions and collateral (Σ q·k·m + Σ balance·price) and V Black-76 (``options.py``)::

    L_u(s, v) = −[ D1_u · s + Σ_{options j∈u} q_j·k_j·(V_j(S·(1 + s), σ_j·(1 + v_j)) − V_j(S, σ_j)) ]

    L⁻_u = max(0, max_{s ≤ 0, every v} L_u)      L⁺_u = max(0, max_{s ≥ 0, every v} L_u)
    WS_u = L⁻_u − L⁺_u                            CV_u = min(L⁻_u, L⁺_u)
    directional   = sqrt(WS^T ρ WS)
    curvature     = Σ_u CV_u
    basis         = Σ_u spread_u · min(long_u, short_u)     (delta-one legs and collateral)
    short minimum = short_option_rate · Σ_{short options} |q|·k·S
    floor         = floor_rate · Σ_{delta-one} N_i
    MM_pm = max(directional + curvature + basis + short minimum, floor),  IM_pm = im_multiplier · MM_pm

An underlying without an open option keeps ``WS_u = D1_u · r_u`` and ``CV_u = 0`` (what the grid
gives for a linear book), computed exactly as ``portfolio.charges_from_legs`` does, so a book
without options gets today's numbers bit for bit.

Seam (not yet used by the service): ``summary.book_values`` would call
``option_portfolio_charges`` in place of ``charges_from_legs`` when a book holds options.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.engine.arrays import BoolArray, FloatArray
from app.engine.options import OptionTerms, black76, black76_value
from app.engine.parameters import RiskArrays
from app.engine.portfolio import group_sum, legs
from app.engine.types import Collateral, Positions

PRICE_MOVES: FloatArray = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]) / 3.0
"""The grid's price moves as multiples of the scan range, down to up (index 3 is no move)."""
PRICE_MOVES.flags.writeable = False
VOLATILITY_DIRECTIONS = ("down", "none", "up")
"""The grid's volatility axis, in order."""


@dataclass(frozen=True, slots=True)
class OptionPortfolioCharges:
    """The portfolio model of one book with options. Per underlying (U,): ``delta`` D_u (all
    dollar deltas, options' q·k·Δ·S included), ``long`` / ``short`` (delta-one legs and
    collateral, for basis), ``loss_down`` L⁻, ``loss_up`` L⁺, ``weighted_sensitivity`` WS,
    ``curvature_by_underlying`` CV; ``scenario_losses`` L_u(s, v) of shape (U, 7, 3) (price moves
    in ``PRICE_MOVES`` order × volatility down / none / up; zero where no option was priced, i.e.
    underlyings without options). Scalars: ``directional``, ``curvature``, ``basis``,
    ``short_option_minimum``, ``floor``, ``maintenance_margin`` MM_pm, ``initial_margin`` IM_pm.
    """

    delta: FloatArray
    long: FloatArray
    short: FloatArray
    loss_down: FloatArray
    loss_up: FloatArray
    weighted_sensitivity: FloatArray
    curvature_by_underlying: FloatArray
    scenario_losses: FloatArray
    directional: float
    curvature: float
    basis: float
    short_option_minimum: float
    floor: float
    maintenance_margin: float
    initial_margin: float
    has_options: BoolArray
    """(U,) underlyings with an open option (their grid is priced; the others' is linear)."""
    gross_delta_one: float
    """Σ N_i of the delta-one positions (what the floor is a rate of)."""


def volatility_moves(time_to_expiry: FloatArray, risk: RiskArrays) -> tuple[FloatArray, FloatArray]:
    """``(vd, vu)`` per option, relative moves of σ (module docstring): a shorter expiry's
    volatility moves more. Shape of ``time_to_expiry`` (years)."""
    days = 365.0 * np.maximum(time_to_expiry, 0.0)
    scale = (30.0 / np.maximum(days, 1.0)) ** risk.vega_power
    return np.minimum(0.9, risk.vol_down * scale), risk.vol_up * scale


def option_scenario_pnl(
    positions: Positions, terms: OptionTerms, risk: RiskArrays
) -> tuple[FloatArray, BoolArray]:
    """The options' part of the grid: ``(pnl (U, 7, 3), has_options (U,) bool)``, where
    ``pnl[u, i, j] = Σ_{options of u} q·k·(V(S·(1 + s_i·r_u), σ·(1 + v_j)) − V(S, σ))`` and
    ``has_options`` marks underlyings with an open option (q ≠ 0)."""
    n_underlyings = risk.n_underlyings
    rows = np.flatnonzero(terms.is_option & (positions.size != 0))
    pnl = np.zeros((n_underlyings, PRICE_MOVES.size, len(VOLATILITY_DIRECTIONS)))
    has_options: BoolArray = np.zeros(n_underlyings, dtype=np.bool_)
    if not rows.size:
        return pnl, has_options
    underlying = positions.underlying[rows]
    has_options[underlying] = True
    is_call, strike = terms.is_call[rows], terms.strike[rows]
    spot, sigma = terms.underlying_price[rows], terms.volatility[rows]
    expiry = terms.time_to_expiry[rows]
    down, up = volatility_moves(expiry, risk)
    # Axes (7 price moves, 3 vol moves, m options).
    spot_moved = spot * (1.0 + PRICE_MOVES[:, None] * risk.scan_range[underlying])
    sigma_moved = sigma * (1.0 + np.stack((-down, np.zeros_like(down), up)))
    moved = black76_value(is_call, spot_moved[:, None, :], strike, sigma_moved[None, :, :], expiry)
    base = black76_value(is_call, spot, strike, sigma, expiry)
    qk = positions.size[rows] * positions.contract_size[rows]
    change = (moved - base) * qk
    pnl = np.moveaxis(group_sum(change, underlying, n_underlyings), -1, 0)
    return pnl, has_options


def option_portfolio_charges(
    positions: Positions, collateral: Collateral, risk: RiskArrays, terms: OptionTerms
) -> OptionPortfolioCharges:
    """The portfolio model of one book whose rows ``terms.is_option`` are options (formulas in
    the module docstring). Shapes: positions and terms (n,), collateral (a,); settlement asset.

    A book without options (``OptionTerms.none(n)``) gives exactly ``portfolio_charges``.
    """
    n_underlyings = risk.n_underlyings
    is_option = terms.is_option
    qk = positions.size * positions.contract_size
    delta_one = np.where(is_option, 0.0, qk * positions.mark)
    gross_delta_one = float(np.abs(delta_one).sum())
    long, short = legs(
        delta_one,
        positions.underlying,
        collateral.balance * collateral.price,
        collateral.underlying,
        n_underlyings,
    )
    delta_one_by_underlying = long - short
    pnl, has_options = option_scenario_pnl(positions, terms, risk)

    price_moves = PRICE_MOVES[None, :] * risk.scan_range[:, None]  # (U, 7)
    losses = -(delta_one_by_underlying[:, None, None] * price_moves[:, :, None] + pnl)
    losses[~has_options] = 0.0
    loss_down = np.maximum(losses[:, :4].max(axis=(1, 2)), 0.0)
    loss_up = np.maximum(losses[:, 3:].max(axis=(1, 2)), 0.0)
    # Without options the grid's WS is D1·r exactly; computed as charges_from_legs does.
    ws = np.where(has_options, loss_down - loss_up, delta_one_by_underlying * risk.scan_range)
    curvature_by_underlying = np.where(has_options, np.minimum(loss_down, loss_up), 0.0)
    np.copyto(loss_down, np.maximum(ws, 0.0), where=~has_options)
    np.copyto(loss_up, np.maximum(-ws, 0.0), where=~has_options)

    quadratic = np.vecdot(ws @ risk.correlation, ws)
    directional = float(np.sqrt(np.maximum(quadratic, 0.0)))
    curvature = float(curvature_by_underlying.sum())
    basis = float(np.vecdot(np.minimum(long, short), risk.spread_rate))
    option_rows = np.flatnonzero(is_option)
    option_delta = np.zeros(n_underlyings)
    short_option_minimum = 0.0
    if option_rows.size:
        option_qk = qk[option_rows]
        spot = terms.underlying_price[option_rows]
        unit = black76(
            terms.is_call[option_rows],
            spot,
            terms.strike[option_rows],
            terms.volatility[option_rows],
            terms.time_to_expiry[option_rows],
        )
        option_delta = group_sum(
            option_qk * unit.delta * spot, positions.underlying[option_rows], n_underlyings
        )
        short_option_minimum = risk.short_option_rate * float(
            np.dot(np.maximum(-option_qk, 0.0), spot)
        )
    floor = risk.floor_rate * gross_delta_one
    maintenance = max(directional + curvature + basis + short_option_minimum, floor)
    return OptionPortfolioCharges(
        delta=delta_one_by_underlying + option_delta,
        long=long,
        short=short,
        loss_down=loss_down,
        loss_up=loss_up,
        weighted_sensitivity=ws,
        curvature_by_underlying=curvature_by_underlying,
        scenario_losses=losses,
        directional=directional,
        curvature=curvature,
        basis=basis,
        short_option_minimum=short_option_minimum,
        floor=floor,
        maintenance_margin=maintenance,
        initial_margin=risk.im_multiplier * maintenance,
        has_options=has_options,
        gross_delta_one=gross_delta_one,
    )
