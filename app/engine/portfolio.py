"""Portfolio margin: scenario-based charges on dollar deltas per underlying (margin.md).

For a book with dollar deltas ``D_u`` (positions ``q·k·m`` plus non-settlement collateral
``balance·price``), split into legs ``long_u`` (sum of positive deltas) and ``short_u`` (absolute sum
of negative deltas), so ``D_u = long_u − short_u``::

    WS_u        = D_u · r_u
    directional = sqrt(WS^T ρ WS)
    basis       = Σ_u spread_u · min(long_u, short_u)
    floor       = floor_rate · Σ_i N_i            (open positions only; 0 for a book with none)
    MM_pm       = max(directional + basis, floor)
    IM_pm       = im_multiplier · MM_pm

A book with no open positions has no floor: its ``MM_pm`` is ``directional + basis`` of its
collateral alone (spot BTC collateral carries its scan-range risk, as margin.md's "its price risk
is in the scenarios" implies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from app.engine.arrays import FloatArray, IntArray
from app.engine.parameters import RiskArrays
from app.engine.types import Collateral, Positions


@dataclass(frozen=True, slots=True)
class PortfolioCharges:
    """The portfolio model's parts. Leading shape (...) is () for one book, (S,) for scenarios,
    (s,) for a batch; legs have shape (..., U). Amounts in the settlement asset."""

    delta: FloatArray
    long: FloatArray
    short: FloatArray
    directional: FloatArray
    basis: FloatArray
    floor: FloatArray
    maintenance_margin: FloatArray
    initial_margin: FloatArray


def weighted_bincount(index: IntArray, weights: FloatArray, minlength: int) -> FloatArray:
    """``np.bincount`` with float weights, typed as the float array it returns."""
    sums = np.bincount(index, weights=weights, minlength=minlength)
    # With no rows numpy returns an integer array; the sums are float either way.
    return cast(FloatArray, sums if sums.dtype == np.float64 else sums.astype(np.float64))


def group_sum(values: FloatArray, index: IntArray, size: int) -> FloatArray:
    """Sum ``values`` (..., n) into ``size`` groups by ``index`` (n,) → (..., size).

    Rows with index −1 (e.g. the settlement asset) are dropped.
    """
    n = index.shape[0]
    if values.ndim == 1:
        return weighted_bincount(index + 1, values, size + 1)[1:]
    lead = values.shape[:-1]
    rows = int(np.prod(lead))
    offsets = (np.arange(rows, dtype=np.intp) * (size + 1))[:, None] + (index + 1)
    sums = weighted_bincount(offsets.reshape(-1), values.reshape(rows * n), rows * (size + 1))
    return sums.reshape(*lead, size + 1)[..., 1:]


def legs(
    position_delta: FloatArray,
    position_underlying: IntArray,
    collateral_delta: FloatArray,
    collateral_underlying: IntArray,
    n_underlyings: int,
) -> tuple[FloatArray, FloatArray]:
    """``(long_u, short_u)``: positive and absolute negative dollar deltas per underlying.

    ``position_delta`` = q·k·m (..., n); ``collateral_delta`` = balance·price (..., a), rows of
    underlying −1 ignored. Returns two arrays (..., U).
    """
    u = n_underlyings
    if position_delta.ndim == 1:
        # One bincount: bin 2·(u + 1) + [delta < 0] holds long (even) and short (odd) legs;
        # bins 0 and 1 collect underlying −1 (the settlement asset) and are dropped.
        delta = np.concatenate((position_delta, collateral_delta))
        index = np.concatenate((position_underlying, collateral_underlying))
        index += 1
        index *= 2
        index += delta < 0
        sums = weighted_bincount(index, np.abs(delta), 2 * (u + 1)).reshape(u + 1, 2)
        return sums[1:, 0], sums[1:, 1]
    long = group_sum(np.maximum(position_delta, 0.0), position_underlying, u)
    short = group_sum(np.maximum(-position_delta, 0.0), position_underlying, u)
    if collateral_underlying.shape[0]:
        long += group_sum(np.maximum(collateral_delta, 0.0), collateral_underlying, u)
        short += group_sum(np.maximum(-collateral_delta, 0.0), collateral_underlying, u)
    return long, short


def charges_from_legs(
    long: FloatArray, short: FloatArray, gross_notional: FloatArray | float, risk: RiskArrays
) -> PortfolioCharges:
    """The portfolio charges from legs (..., U) and Σ N_i (...) — formulas in the module docstring."""
    delta = long - short
    ws = delta * risk.scan_range
    quadratic = np.vecdot(ws @ risk.correlation, ws)
    directional = np.sqrt(np.maximum(quadratic, 0.0))
    basis = np.vecdot(np.minimum(long, short), risk.spread_rate)
    floor = np.asarray(risk.floor_rate * np.asarray(gross_notional), dtype=np.float64)
    mm = np.maximum(directional + basis, floor)
    return PortfolioCharges(
        delta=delta,
        long=long,
        short=short,
        directional=directional,
        basis=basis,
        floor=floor,
        maintenance_margin=mm,
        initial_margin=risk.im_multiplier * mm,
    )


def portfolio_charges(
    positions: Positions, collateral: Collateral, risk: RiskArrays
) -> PortfolioCharges:
    """The portfolio model of one book at current marks (directional, basis, floor, MM_pm, IM_pm).

    Shapes: positions (n,), collateral (a,) → legs (U,), charges 0-d. For a desk that wants the
    breakdown behind ``portfolio_initial_margin``.
    """
    delta = positions.size * positions.contract_size * positions.mark
    gross = float(np.abs(delta).sum())
    long, short = legs(
        delta,
        positions.underlying,
        collateral.balance * collateral.price,
        collateral.underlying,
        risk.n_underlyings,
    )
    return charges_from_legs(long, short, gross, risk)
