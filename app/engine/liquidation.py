"""Liquidation prices: the mark of one position at which equity meets maintenance margin.

For position j with every other mark held fixed, write its notional ``N = |q|·k·m``. Then:

- **Isolated**: ``A + q·k·(m − e) = MM_j(N)``.
- **Cross**: ``E(m) = MM(m)``, i.e. ``K + q·k·m = MM_j(N)`` with
  ``K = E − q·k·m_now − (MM − MM_j)`` (equity and the other positions' maintenance fixed).

Both are ``K + q·k·m = MM_j(|q|·k·m)`` with a piecewise-linear right side, solved exactly tier by
tier (``solve_tiered``). On tier t (floor f_t, fraction mmf_t, requirement at the floor M_t)::

    m = (M_t − mmf_t·f_t − K) / (k · (q − mmf_t·|q|)) = −(deduction_t + K) / (k · (q − mmf_t·|q|))

and the tier is the one where ``K + σ·f − M`` (σ = sign q), evaluated at the tier floors, changes
sign. One tier, long: ``m = (q·k·e − A) / (q·k·(1 − mmf))`` in isolated mode (margin.md).

- **Portfolio**: ``E(m_j) = MM_pm(m_j)`` to one tick, on the notional change
  ``y = |q|·k·(m − m_now)`` (``portfolio_liquidation_prices``): each piece of MM_pm solved in
  closed form and accepted only where equity − maintenance changes sign within ±½ tick of it;
  any other position by vectorised bisection from slope-bound brackets.

- **Options** (margin.md "Options"): an option's maintenance does not move with its own mark
  (standard margin and the portfolio grid revalue it at the underlying's index S and its σ),
  so ``E + q·k·(m − m_now) = MM`` gives ``m = m_now + (MM − E) / (q·k)``
  (``option_liquidation_prices``). In a portfolio book with options, a delta-one position's
  price is found by the secant method on its own dollar-delta change (bisection where that
  does not settle), the options' grid held fixed (``portfolio_option_book_liquidation_prices``).

Equity minus maintenance is strictly monotone in m for every mode (mmf < 1; in portfolio mode
r_u + spread_u < 1 and floor_rate < 1), so the price is unique. A price ≤ 0 is reported as nan:
no positive price reaches liquidation (a long margined above its value; a short already under
water at every price).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.engine.arrays import BoolArray, FloatArray, IntArray
from app.engine.option_portfolio import PRICE_MOVES, OptionPortfolioCharges
from app.engine.options import OptionTerms
from app.engine.parameters import RiskArrays
from app.engine.portfolio import PortfolioCharges
from app.engine.tiers import TierTable, tiered_margins
from app.engine.types import Positions


def solve_tiered(
    constant: FloatArray,
    size: FloatArray,
    contract_size: FloatArray,
    tiers: TierTable,
) -> FloatArray:
    """The price m > 0 solving ``constant + q·k·m = MM(|q|·k·m)`` exactly, per row (n,).

    ``constant`` K is the part of equity − other requirements that does not move with m
    (isolated: ``A − q·k·e``; cross: ``E − q·k·m_now − (MM − MM_j)``). nan where no positive
    solution exists or q = 0. Shapes: all (n,), tiers (n, T).
    """
    q = size
    n = tiers.shape[0]
    sigma = np.copysign(1.0, q)
    # K + σ·floor_t − MM(floor_t): the residual at each tier floor; monotone across tiers.
    # Long: residual rises with N, the root's tier is the last floor with residual ≤ 0.
    # Short: residual falls with N, the root's tier is the last floor with residual ≥ 0.
    # Multiplying by σ makes both "≤ 0": σ·(K + σ·f − M) = f + σ·K − σ·M; padding (+inf) never
    # counts.
    residual = tiers.floors + (constant * sigma)[:, None]
    residual -= tiers.mm_at_floor * sigma[:, None]
    count = np.count_nonzero(residual <= 0.0, axis=1)
    # On tier j: MM(N) = mmf_j·N − deduction_j, so K + q·k·m = mmf_j·|q|·k·m − deduction_j.
    flat = np.maximum(count - 1, 0)
    flat += tiers.row_offsets[:n]
    mmf, deduction = tiers.mm_rate_deduction[flat].T
    price = np.full(n, np.nan)
    ok = (count > 0) & (q != 0)
    np.divide(-(deduction + constant), contract_size * (q - mmf * np.abs(q)), out=price, where=ok)
    price[~(price > 0)] = np.nan
    return price


def isolated_liquidation_prices(positions: Positions) -> FloatArray:
    """Per-position isolated liquidation prices (n,): ``A + q·k·(m − e) = MM(|q|·k·m)``, exact."""
    constant = (
        positions.isolated_margin - positions.size * positions.contract_size * positions.entry_price
    )
    return solve_tiered(constant, positions.size, positions.contract_size, positions.tiers)


@dataclass(frozen=True)
class IsolatedPositions:
    """Each isolated position on its own (n,): equity ``A_i + u_i``, ``MM_i`` and the ratio."""

    equity: FloatArray
    maintenance_margin: FloatArray
    maintenance_margin_ratio: FloatArray


def isolated_positions(positions: Positions) -> IsolatedPositions:
    """Each isolated position's own equity ``A_i + u_i`` (``u_i = q·k·(m − e)``), maintenance
    margin ``MM_i = MM(|q|·k·m)`` and ratio ``MM_i / (A_i + u_i)`` — +inf when ``A_i + u_i ≤ 0``
    with ``MM_i > 0``, 0 when ``MM_i = 0``. Position i is liquidated at 1 (``A_i + u_i ≤ MM_i``),
    however calm the subaccount's summary ratio is (margin.md, isolated mode)."""
    qk = positions.size * positions.contract_size
    _, maintenance = tiered_margins(np.abs(qk) * positions.mark, positions.tiers)
    equity = positions.isolated_margin + qk * (positions.mark - positions.entry_price)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(equity > 0, maintenance / equity, np.inf)
    return IsolatedPositions(equity, maintenance, np.where(maintenance > 0, ratio, 0.0))


def cross_liquidation_prices(
    positions: Positions,
    equity: float,
    maintenance_margin: float,
    position_maintenance: FloatArray,
) -> FloatArray:
    """Per-position cross liquidation prices (n,), each with the other marks fixed, exact.

    ``equity`` E and ``maintenance_margin`` MM (= Σ MM_i, no reservations) are the book's now;
    ``position_maintenance`` (n,) the MM_i. Solves ``E − q·k·m_now + q·k·m = MM − MM_j + MM_j(N)``.
    """
    qk = positions.size * positions.contract_size
    constant = equity - qk * positions.mark - (maintenance_margin - position_maintenance)
    return solve_tiered(constant, positions.size, positions.contract_size, positions.tiers)


class _PortfolioResidual:
    """``g(y) = E(y) − MM_pm(y)`` for each position j moving alone; y = |q|·k·(m − m_now).

    With σ = sign q and u = underlying of j, moving m_j changes D_u by σ·y, the position's own leg
    by +y and Σ N by +y, so (ρ_uu = 1)::

        directional(y)² = Q + σ·2·r_u·(ρ WS)_u · y + r_u² · y²
        basis(y)        = basis − s_u·min(own, other) + s_u·min(own + y, other)
        floor(y)        = floor + floor_rate · y
        g(y)            = E + σ·y − max(directional(y) + basis(y), floor(y))
    """

    def __init__(
        self, positions: Positions, charges: PortfolioCharges, equity: float, risk: RiskArrays
    ) -> None:
        und = positions.underlying
        self.sigma = np.where(positions.size >= 0, 1.0, -1.0)
        ws = charges.delta * risk.scan_range
        rho_ws = risk.correlation @ ws
        r = risk.scan_range[und]
        self.spread = risk.spread_rate[und]
        self.quadratic = float(np.dot(ws, rho_ws))
        self.linear = 2.0 * self.sigma * r * rho_ws[und]
        self.square = r * r
        long, short = charges.long[und], charges.short[und]
        is_long = self.sigma > 0
        self.own = np.where(is_long, long, short)
        self.other = np.where(is_long, short, long)
        self.basis_rest = float(charges.basis) - self.spread * np.minimum(self.own, self.other)
        self.floor = float(charges.floor)
        self.floor_rate = risk.floor_rate
        self.equity = equity
        # Lipschitz bound of MM_pm in y: |d directional| ≤ r_u, |d basis| ≤ s_u, |d floor| = fr.
        self.slope_bound = np.maximum(r + self.spread, risk.floor_rate)

    def __call__(self, y: FloatArray) -> FloatArray:
        t = self.square * y
        t += self.linear
        t *= y
        t += self.quadratic
        np.maximum(t, 0.0, out=t)
        np.sqrt(t, out=t)
        w = self.own + y
        np.minimum(w, self.other, out=w)
        w *= self.spread
        t += w
        t += self.basis_rest
        np.maximum(t, self.floor + self.floor_rate * y, out=t)
        g = self.sigma * y
        g += self.equity
        g -= t
        return g

    def _branch_root(self, alpha: FloatArray, beta: FloatArray) -> FloatArray:
        """Root of ``α + β·y = sqrt(Q + linear·y + square·y²)`` with α + β·y ≥ 0.

        Squared: ``(β² − square)·y² + (2αβ − linear)·y + (α² − Q) = 0``; β² > square because
        |β| ≥ 1 − s_u > r_u, and the wanted root is the one on β's side (sign β = σ).
        Uses the cancellation-free form ``q = −(b + sign(b)·√disc)/2``, roots ``q/a`` and ``c/q``.
        """
        a = beta * beta - self.square
        b = 2.0 * alpha * beta - self.linear
        c = alpha * alpha - self.quadratic
        disc = np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))
        sign_b = np.where(b >= 0, 1.0, -1.0)
        q = -0.5 * (b + sign_b * disc)
        # (−b + σ·√disc)/(2a) is q/a when σ = −sign(b), else c/q.
        first = np.divide(q, a)
        second = np.divide(c, q, out=np.zeros_like(q), where=q != 0)
        chosen: FloatArray = np.where(self.sigma == -sign_b, first, second)
        return chosen

    def root(self) -> FloatArray:
        """The exact y with g(y) = 0, per row (n,), solving each linear piece of MM_pm.

        The floor branch ``E + σy = floor + fr·y`` is linear; the directional + basis branch is
        ``sqrt(quadratic) = linear`` on each side of the basis kink ``y_k = other − own``. g is the
        min of the two branch residuals, both monotone in y with sign σ, so the root is the larger
        branch root for a long and the smaller for a short.
        """
        sigma, s = self.sigma, self.spread
        y_floor = (self.floor - self.equity) / (sigma - self.floor_rate)
        base = self.equity - self.basis_rest
        # Both pieces at once, stacked (2, n): below the kink, then above it.
        below, above = self._branch_root(
            np.stack((base - s * self.own, base - s * self.other)), np.stack((sigma - s, sigma))
        )
        kink = self.other - self.own
        y_dir = np.where(below <= kink, below, above)
        root: FloatArray = np.where(
            sigma > 0, np.maximum(y_floor, y_dir), np.minimum(y_floor, y_dir)
        )
        return root


def _bisect(
    g: Callable[[FloatArray], FloatArray],
    y_safe: FloatArray,
    y_liq: FloatArray,
    width: FloatArray,
    max_iterations: int,
) -> FloatArray:
    """Halve each bracket [y_safe (g > 0), y_liq (g ≤ 0)] until it is at most ``width`` wide."""
    widest = float(np.max(np.abs(y_safe - y_liq) / width)) if width.size else 0.0
    steps = min(max_iterations, math.ceil(math.log2(widest)) if widest > 1.0 else 0)
    mid = np.empty_like(y_safe)
    for _ in range(steps):
        np.add(y_safe, y_liq, out=mid)
        mid *= 0.5
        safe = g(mid) > 0
        np.copyto(y_safe, mid, where=safe)
        np.copyto(y_liq, mid, where=~safe)
    return y_safe


def portfolio_liquidation_prices(
    positions: Positions,
    charges: PortfolioCharges,
    equity: float,
    risk: RiskArrays,
    *,
    exact_seed: bool = True,
    max_iterations: int = 100,
) -> FloatArray:
    """Per-position portfolio liquidation prices (n,), to one tick.

    Solves ``E(m_j) = MM_pm(m_j)`` with every other mark and collateral price fixed; ``charges``
    and ``equity`` (= Σ balance·price + Σ u) are the book's now.

    Method: a vectorised bisection on y = |q|·k·(m − m_now). The bracket comes from the slope
    bounds of g(y) = E − MM_pm: |dg/dy| ∈ [1 − c, 1 + c], c = max(r_u + s_u, floor_rate), so
    the root lies at |y| ∈ [|g(0)|/(1+c), |g(0)|/(1−c)]; it is halved until one tick wide and the
    end still outside liquidation (g > 0) is returned (long: upper end; short: lower end).
    With ``exact_seed`` (default) each piece of MM_pm is first solved in closed form
    (``_PortfolioResidual.root``); a seed is accepted only where g changes sign across
    [seed − ½ tick, seed + ½ tick] (two evaluations of g itself), and every row that fails this
    check is bisected as above. Either way the price is within one tick of the root.
    nan where no positive price reaches liquidation.
    """
    n = positions.n
    price = np.full(n, np.nan)
    if n == 0:
        return price
    g = _PortfolioResidual(positions, charges, equity, risk)
    aqk = np.abs(positions.size) * positions.contract_size
    notional = aqk * positions.mark
    tick = aqk * positions.tick_size
    lowest = -notional  # y at price 0
    open_ = positions.size != 0
    y = np.full(n, np.nan)
    todo = open_
    if exact_seed:
        seed = g.root()
        half = 0.5 * tick
        # The side of the seed still outside liquidation: below it for a long, above for a short.
        step = g.sigma * half
        ends = g(np.stack((seed + step, seed - step)))  # both ends in one evaluation
        verified = open_ & (ends[0] > 0) & (ends[1] <= 0) & np.isfinite(seed)
        y[verified] = seed[verified]
        todo = open_ & ~verified
    if bool(todo.any()):
        rows = np.flatnonzero(todo)
        y[rows] = _bisect_rows(positions.take(rows), charges, equity, risk, max_iterations)
    np.divide(y, aqk, out=price, where=open_)
    price += positions.mark
    price[~(y > lowest)] = np.nan
    return price


def _bisect_rows(
    positions: Positions,
    charges: PortfolioCharges,
    equity: float,
    risk: RiskArrays,
    max_iterations: int,
) -> FloatArray:
    """Bisection for the y of the root, rows of ``positions`` (all open); nan if price ≤ 0."""
    g = _PortfolioResidual(positions, charges, equity, risk)
    aqk = np.abs(positions.size) * positions.contract_size
    notional = aqk * positions.mark
    g0 = g(np.zeros(positions.n))
    safe_now = g0 > 0
    # Direction of the root in y: a safe long must fall (−), an unsafe long rise (+); shorts mirror.
    direction = np.where(safe_now, -g.sigma, g.sigma)
    near = np.abs(g0) / (1.0 + g.slope_bound) * (1.0 - 1e-9)
    far = np.abs(g0) / (1.0 - g.slope_bound) * (1.0 + 1e-9) + 1e-9 * notional
    lowest = -notional
    near_y = np.maximum(direction * near, lowest)
    far_y = np.maximum(direction * far, lowest)
    # The far end changes sign by the slope bound unless it was cut at price 0: then no positive
    # price liquidates.
    valid = (g(far_y) > 0) != safe_now
    y_safe = np.where(safe_now, near_y, far_y)
    y_liq = np.where(safe_now, far_y, near_y)
    width = np.where(valid, aqk * positions.tick_size, np.inf)
    y = _bisect(g, y_safe, y_liq, width, max_iterations)
    y[~valid] = np.nan
    return y


def option_liquidation_prices(
    positions: Positions, equity: float, maintenance_margin: float
) -> FloatArray:
    """``m = m_now + (MM − E) / (q·k)`` per row (n,): the option mark at which equity meets
    maintenance, every other mark (its underlying's index included) fixed; nan for a flat row
    or where no positive price reaches it. Meaningful on option rows only (module docstring)."""
    qk = positions.size * positions.contract_size
    price = np.full(positions.n, np.nan)
    open_ = qk != 0
    np.divide(maintenance_margin - equity, qk, out=price, where=open_)
    price += positions.mark
    price[~(price > 0)] = np.nan
    return price


class _OptionBookResidual:
    """``g(y) = E + y − MM_pm(y)`` of a portfolio book with options, for delta-one rows moving
    alone: y (R,) is row r's dollar-delta change ``q·k·(m − m_now)``. Only its own underlying
    u's grid moves: every scenario loss of u is linear in the dollar delta D1_u, so with
    ``c_ui = −min_v pnl_u(s_i, v)`` (the options' worst volatility for that price move)::

        L_ui(y) = −(D1_u + y)·s_ui + c_ui     L⁻ = max(0, max_{s ≤ 0} L_ui)   L⁺ = max(0, max_{s ≥ 0})
        WS_u = L⁻ − L⁺ and CV_u = min(L⁻, L⁺) (u with options), else WS_u = (D1_u + y)·r_u
        directional(y)² = Q + 2·(ρ WS)_u·δ + δ²,   δ = WS_u(y) − WS_u(0)
        curvature(y) = curvature − CV_u(0) + CV_u(y)

    and its own leg (basis) and Σ N of the delta-one rows (floor) move with it; the short option
    minimum does not (priced at S). O(R·7) per evaluation."""

    def __init__(
        self,
        positions: Positions,
        charges: OptionPortfolioCharges,
        rows: IntArray,
        equity: float,
        risk: RiskArrays,
    ) -> None:
        qk = positions.size * positions.contract_size
        und = positions.underlying[rows]
        moves = PRICE_MOVES[None, :] * risk.scan_range[:, None]  # (U, 7)
        long, short = charges.long, charges.short
        d1 = (long - short)[und]
        # max over v of L_u(s_i, v) at y = 0 is −D1·s_i + c_ui: the grid's own losses.
        self.slope = -moves[und]  # (R, 7): dL/dy
        self.intercept = charges.scenario_losses.max(axis=2)[und]  # (R, 7)
        self.has_options = charges.has_options[und]
        self.d1 = d1
        self.r = risk.scan_range[und]
        ws = charges.weighted_sensitivity
        self.ws0 = ws[und]
        self.rho_ws = (risk.correlation @ ws)[und]
        self.quadratic = float(np.vecdot(ws @ risk.correlation, ws))
        self.cv0 = charges.curvature_by_underlying[und]
        self.curvature = charges.curvature
        self.fixed = charges.short_option_minimum
        self.is_long = qk[rows] > 0
        self.spread = risk.spread_rate[und]
        own = np.where(self.is_long, long[und], short[und])
        self.own, self.other = own, np.where(self.is_long, short[und], long[und])
        self.basis_rest = charges.basis - self.spread * np.minimum(own, self.other)
        self.gross = charges.gross_delta_one
        self.floor_rate = risk.floor_rate
        self.equity = equity
        # Folded once: what g adds per row whatever y is, and 2·(ρ WS)_u for δ² + 2·(ρ WS)_u·δ.
        self.all_options = bool(self.has_options.all())
        self.rest = self.curvature - self.cv0 + self.fixed + self.basis_rest
        self.rho_ws_2 = 2.0 * self.rho_ws
        self.sign = np.where(self.is_long, 1.0, -1.0)

    def __call__(self, y: FloatArray) -> FloatArray:
        losses = self.slope * y[:, None]
        losses += self.intercept  # (R, 7)
        loss_down = losses[:, :4].max(axis=1)
        np.maximum(loss_down, 0.0, out=loss_down)
        loss_up = losses[:, 3:].max(axis=1)
        np.maximum(loss_up, 0.0, out=loss_up)
        if self.all_options:
            ws = loss_down - loss_up
            cv = np.minimum(loss_down, loss_up)
        else:
            ws = np.where(self.has_options, loss_down - loss_up, (self.d1 + y) * self.r)
            cv = np.where(self.has_options, np.minimum(loss_down, loss_up), 0.0)
        ws -= self.ws0  # the change δ of WS_u
        square = self.rho_ws_2 + ws
        square *= ws
        square += self.quadratic
        np.maximum(square, 0.0, out=square)
        maintenance = np.sqrt(square, out=square)  # directional
        maintenance += cv
        maintenance += self.rest  # curvature of the others, short option minimum, own basis rest
        signed = self.sign * y
        own = signed + self.own
        np.minimum(own, self.other, out=own)
        own *= self.spread
        maintenance += own
        floor = signed
        floor += self.gross
        floor *= self.floor_rate
        np.maximum(maintenance, floor, out=maintenance)
        g: FloatArray = y - maintenance
        g += self.equity
        return g


def portfolio_option_book_liquidation_prices(
    positions: Positions,
    charges: OptionPortfolioCharges,
    terms: OptionTerms,
    equity: float,
    risk: RiskArrays,
    max_iterations: int = 200,
) -> FloatArray:
    """Per-position liquidation prices (n,) of a portfolio book with options, to one tick.

    Option rows: ``option_liquidation_prices`` at the book's MM_pm. Delta-one rows: ``g(y) =
    E + y − MM_pm(y)`` (``_OptionBookResidual``, y = q·k·(m − m_now)) rises with y. The secant
    method from y = 0 finds its root y* in a few steps (g is piecewise linear but for the
    directional square root); ``y* + ½ tick`` is accepted where g changes sign across that
    tick (two evaluations of g itself), and any other row is bracketed and narrowed
    (``_bracketed_roots``). The end still outside liquidation is returned; nan where no
    positive price reaches liquidation.
    """
    price = np.where(
        terms.is_option,
        option_liquidation_prices(positions, equity, charges.maintenance_margin),
        np.nan,
    )
    rows = np.flatnonzero(~terms.is_option & (positions.size != 0))
    if not rows.size:
        return price
    g = _OptionBookResidual(positions, charges, rows, equity, risk)
    qk = positions.size[rows] * positions.contract_size[rows]
    width = np.abs(qk) * positions.tick_size[rows]
    safe_end = _secant_roots(g, rows.size, width) + 0.5 * width
    with np.errstate(invalid="ignore"):
        verified = (g(safe_end) > 0) & (g(safe_end - width) <= 0)
    found = verified.copy()
    todo = np.flatnonzero(~verified)
    if todo.size:
        again = _OptionBookResidual(positions, charges, rows[todo], equity, risk)
        mark, size_k = positions.mark[rows[todo]], qk[todo]
        safe_end[todo], found[todo] = _bracketed_roots(
            again, -size_k * mark, width[todo], size_k * mark, max_iterations
        )
    moved = positions.mark[rows] + safe_end / qk
    price[rows] = np.where(found & (moved > 0), moved, np.nan)
    return price


def _secant_roots(g: _OptionBookResidual, n: int, width: FloatArray) -> FloatArray:
    """The root of each row's g by the secant method from y = 0 and y = −g(0) (dg/dy is
    near 1); nan where it did not settle. Stops once every step is below 1/1000 tick."""
    y0 = np.zeros(n)
    g0 = g(y0)
    y1 = -g0
    for _ in range(12):
        g1 = g(y1)
        denominator = g1 - g0
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(denominator != 0, g1 * (y1 - y0) / denominator, 0.0)
        y0, g0 = y1, g1
        y1 = y1 - step
        if not bool(np.any(np.abs(step) > 1e-3 * width)):
            break
    root: FloatArray = np.where(np.isfinite(y1), y1, np.nan)
    return root


def _bracketed_roots(
    g: _OptionBookResidual,
    at_zero: FloatArray,
    width: FloatArray,
    notional: FloatArray,
    max_iterations: int,
) -> tuple[FloatArray, BoolArray]:
    """Each row's safe end (g > 0) of a one-tick bracket of g's root, and whether one was
    found: a step away from 0 doubled until g changes sign (never past price 0, at
    ``at_zero``), then halved (``_bisect``)."""
    near = np.zeros(at_zero.shape[0])
    g0 = g(near)
    safe_now = g0 > 0
    direction = np.where(safe_now, -1.0, 1.0)
    far = direction * (np.abs(g0) + 1e-9 * np.abs(notional) + 1e-12)
    bounded = np.where(direction * at_zero > 0, at_zero, direction * np.inf)
    found = np.zeros(near.shape[0], dtype=np.bool_)
    for _ in range(max_iterations):
        far = np.where(direction * far > direction * bounded, bounded, far)
        found = (g(far) > 0) != safe_now
        stuck = found | (far == bounded)
        if bool(stuck.all()):
            break
        near = np.where(stuck, near, far)
        far = np.where(stuck, far, 2.0 * far)
    y_safe = np.where(safe_now, near, far)
    y_liq = np.where(safe_now, far, near)
    return _bisect(g, y_safe, y_liq, np.where(found, width, np.inf), max_iterations), found
