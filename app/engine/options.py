"""European options on an underlying index: Black-76 at a zero rate, greeks, standard margin.

margin.md "Options". Per option: type ω (+1 call, −1 put), strike K, the underlying's index S,
implied volatility σ, years to expiry T = (expiry − now) / 365 days, never below 0::

    d1 = (ln(S/K) + σ²·T/2) / (σ·√T),   d2 = d1 − σ·√T
    V  = ω·(S·Φ(ω·d1) − K·Φ(ω·d2))      call S·Φ(d1) − K·Φ(d2); put K·Φ(−d2) − S·Φ(−d1)

and per unit: delta ``ω·Φ(ω·d1)`` (call Φ(d1), put Φ(d1) − 1), gamma ``φ(d1) / (S·σ·√T)``
(per unit of S), vega ``S·φ(d1)·√T / 100`` (per volatility point), theta
``−S·φ(d1)·σ / (2·√T) / 365`` (per calendar day; margin.md does not define theta — this is the
zero-rate Black-76 ∂V/∂t, the same for calls and puts). At T = 0 or σ = 0 the value is the
intrinsic ``max(0, ω·(S − K))`` exactly, delta is ω for an option in the money (call S > K, put
S < K) and 0 otherwise (also at S = K), and gamma, vega and theta are 0. A position's greeks
are these times q·k.

Options are rows of ``Positions`` (``mark`` = premium per unit) with the aligned ``OptionTerms``
(n,) saying which rows are options and their terms; rows that are not options are ignored here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.engine.arrays import ArrayLike, BoolArray, FloatArray
from app.engine.parameters import RiskArrays
from app.engine.types import Positions

SECONDS_PER_YEAR = 365 * 86_400
"""The year of T: 365 days (margin.md)."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)

# Φ by a table: at every x0 = j/256 in [−10, 10] the Taylor coefficients of Φ about x0,
# c_n = Φ⁽ⁿ⁾(x0)/n! = (−1)ⁿ⁻¹·He_{n−1}(x0)·φ(x0)/n!, n ≤ 5. With |x − x0| ≤ 1/512 the
# first omitted term is below 1e-19, so Φ is exact to float rounding; beyond ±10 (Φ(−10) ≈
# 7.6e-24) Φ is 0 or 1. numpy has no erf, and math.erfc per element costs ~60 µs per 1,000.
_CDF_STEPS_PER_UNIT = 256
_CDF_LIMIT = 10.0
_CDF_LAST = int(_CDF_LIMIT * _CDF_STEPS_PER_UNIT)


@functools.cache
def _cdf_taylor_table() -> FloatArray:
    """(6, 2·_CDF_LAST + 3) coefficients; column 0 is x < −10 (Φ = 0), the last x > 10 (Φ = 1)."""
    x0 = np.arange(-_CDF_LAST, _CDF_LAST + 1) / _CDF_STEPS_PER_UNIT
    pdf = np.exp(-0.5 * x0 * x0) / _SQRT_2PI
    he = [np.ones_like(x0), x0]  # probabilists' Hermite: He_{k+1} = x·He_k − k·He_{k−1}
    for k in range(1, 4):
        he.append(x0 * he[k] - k * he[k - 1])
    table = np.zeros((6, x0.size + 2))
    table[0, 1:-1] = [0.5 * math.erfc(-x / math.sqrt(2.0)) for x in x0.tolist()]
    table[0, -1] = 1.0
    for n in range(1, 6):
        table[n, 1:-1] = (-1.0) ** (n - 1) * he[n - 1] * pdf / math.factorial(n)
    table.flags.writeable = False
    return table


def normal_cdf(x: ArrayLike) -> FloatArray:
    """Φ(x), the standard normal distribution function, elementwise (any shape; x finite).

    Accurate to float rounding (absolute error ≲ 1e-16, relative in the tails too): a degree-5
    Taylor polynomial about the nearest multiple of 1/256; 0 below −10 and 1 above 10.
    """
    table = _cdf_taylor_table()
    values = np.asarray(x, dtype=np.float64)
    clipped = np.clip(values.reshape(-1), -_CDF_LIMIT, _CDF_LIMIT)
    nearest = np.rint(clipped * _CDF_STEPS_PER_UNIT)
    offset = clipped - nearest / _CDF_STEPS_PER_UNIT
    column = nearest.astype(np.intp)
    column += _CDF_LAST + 1
    # Outside ±10 the column moves to the constant 0 / 1 ends of the table.
    column[clipped <= -_CDF_LIMIT] = 0
    column[clipped >= _CDF_LIMIT] = table.shape[1] - 1
    result: FloatArray = table[5][column]
    for n in (4, 3, 2, 1, 0):
        result *= offset
        result += table[n][column]
    return result.reshape(values.shape)


def normal_pdf(x: ArrayLike) -> FloatArray:
    """φ(x) = exp(−x²/2) / √(2π), elementwise."""
    values = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * values * values) / _SQRT_2PI


def years_to_expiry(expiry_s: ArrayLike, now_s: float) -> FloatArray:
    """T = max(0, (expiry − now) / 365 days) in years; times in seconds (e.g. Unix epoch)."""
    seconds = np.asarray(expiry_s, dtype=np.float64) - now_s
    return np.maximum(seconds, 0.0) / SECONDS_PER_YEAR


@dataclass(frozen=True, slots=True)
class Black76:
    """Black-76 value and greeks per unit of underlying, each of the inputs' broadcast shape.

    ``value`` V and ``theta`` in the settlement asset (theta per calendar day), ``delta``
    dimensionless, ``gamma`` per unit of S, ``vega`` per volatility point (σ + 0.01)."""

    value: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray


def _prepare(
    is_call: ArrayLike,
    underlying_price: ArrayLike,
    strike: ArrayLike,
    volatility: ArrayLike,
    time_to_expiry: ArrayLike,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, BoolArray]:
    """Broadcast inputs → (ω, S, K, √T, σ·√T with 1 where not live, d1, live = σ·√T > 0)."""
    omega = np.where(np.asarray(is_call, dtype=np.bool_), 1.0, -1.0)
    spot = np.asarray(underlying_price, dtype=np.float64)
    strike_a = np.asarray(strike, dtype=np.float64)
    root_t = np.sqrt(np.maximum(np.asarray(time_to_expiry, dtype=np.float64), 0.0))
    spread = np.asarray(volatility, dtype=np.float64) * root_t
    live = spread > 0.0
    safe = np.where(live, spread, 1.0)
    with np.errstate(over="ignore"):  # a vanishing σ·√T sends d1 to ±inf: Φ is then 0 or 1
        d1 = (np.log(spot / strike_a) + 0.5 * safe * safe) / safe
    return omega, spot, strike_a, root_t, safe, d1, live


def _value(
    omega: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    spread: FloatArray,
    d1: FloatArray,
    live: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """(V, Φ(ω·d1)): Black-76 where live, else the intrinsic value; never below intrinsic."""
    cdf = normal_cdf(np.stack(np.broadcast_arrays(omega * d1, omega * (d1 - spread))))
    intrinsic = np.maximum(omega * (spot - strike), 0.0)
    value = np.maximum(omega * (spot * cdf[0] - strike * cdf[1]), intrinsic)
    return np.where(live, value, intrinsic), cdf[0]


def black76_value(
    is_call: ArrayLike,
    underlying_price: ArrayLike,
    strike: ArrayLike,
    volatility: ArrayLike,
    time_to_expiry: ArrayLike,
) -> FloatArray:
    """V = ω·(S·Φ(ω·d1) − K·Φ(ω·d2)) at a zero rate; the intrinsic max(0, ω·(S − K)) at T = 0
    or σ = 0 (module docstring). Broadcasts its inputs (S, K > 0; σ, T ≥ 0; T < 0 counts as 0).

    Rounding cannot take V below the intrinsic value (at a zero rate V ≥ intrinsic exactly).
    """
    omega, spot, strike_a, _, spread, d1, live = _prepare(
        is_call, underlying_price, strike, volatility, time_to_expiry
    )
    return _value(omega, spot, strike_a, spread, d1, live)[0]


def black76(
    is_call: ArrayLike,
    underlying_price: ArrayLike,
    strike: ArrayLike,
    volatility: ArrayLike,
    time_to_expiry: ArrayLike,
) -> Black76:
    """Value, delta ω·Φ(ω·d1), gamma φ(d1)/(S·σ·√T), vega S·φ(d1)·√T/100 and theta
    −S·φ(d1)·σ/(2·√T)/365 per unit; at T = 0 or σ = 0 the intrinsic value, delta ω in the money
    else 0, gamma = vega = theta = 0 (module docstring). Broadcasts its inputs."""
    omega, spot, strike_a, root_t, spread, d1, live = _prepare(
        is_call, underlying_price, strike, volatility, time_to_expiry
    )
    value, cdf_d1 = _value(omega, spot, strike_a, spread, d1, live)
    in_the_money = omega * (spot - strike_a) > 0.0
    delta = np.where(live, omega * cdf_d1, np.where(in_the_money, omega, 0.0))
    density = np.where(live, normal_pdf(d1), 0.0)
    gamma = density / (spot * spread)
    vega = spot * density * root_t / 100.0
    # σ·√T / (2·T) = σ / (2·√T); live rows have T > 0.
    safe_t = np.where(live, root_t * root_t, 1.0)
    theta = -spot * density * spread / (2.0 * safe_t) / 365.0
    return Black76(value=value, delta=delta, gamma=gamma, vega=vega, theta=theta)


def short_option_margins(
    size: ArrayLike,
    contract_size: ArrayLike,
    is_call: ArrayLike,
    strike: ArrayLike,
    underlying_price: ArrayLike,
    risk: RiskArrays,
) -> tuple[FloatArray, FloatArray]:
    """Standard (cross-mode) ``(IM, MM)`` of option positions, margin.md "Standard margin".

    A long (q ≥ 0) needs nothing: IM = MM = 0. A short, with the out-of-the-money amount
    ``OTM = max(0, K − S)`` (call) or ``max(0, S − K)`` (put)::

        IM = |q|·k·max(im_base·S − OTM, im_min·S),   MM = |q|·k·mm_base·S

    each capped at ``|q|·k·K`` for a put (the most it can lose). Tiers and chosen leverage do not
    apply. ``im_base`` / ``im_min`` / ``mm_base`` are ``risk.option_im_base`` / ``option_im_min``
    / ``option_mm_base``. Broadcasts its inputs; settlement asset.
    """
    q = np.asarray(size, dtype=np.float64)
    call = np.asarray(is_call, dtype=np.bool_)
    spot = np.asarray(underlying_price, dtype=np.float64)
    strike_a = np.asarray(strike, dtype=np.float64)
    short_units = np.maximum(-q, 0.0) * np.asarray(contract_size, dtype=np.float64)
    out_of_the_money = np.maximum(np.where(call, strike_a - spot, spot - strike_a), 0.0)
    im_unit = np.maximum(risk.option_im_base * spot - out_of_the_money, risk.option_im_min * spot)
    mm_unit = risk.option_mm_base * spot
    cap = np.where(call, np.inf, strike_a)
    return short_units * np.minimum(im_unit, cap), short_units * np.minimum(mm_unit, cap)


@dataclass(frozen=True, kw_only=True)
class OptionTerms:
    """Which rows of a ``Positions`` are options, and their terms. Every array (n,), aligned
    with the positions; values on rows that are not options are ignored.

    - ``is_option``: bool. ``is_call``: bool (False = put). ``strike`` K > 0.
    - ``time_to_expiry`` T in years (``years_to_expiry``; below 0 counts as 0).
    - ``volatility`` σ ≥ 0: the option mark's implied volatility (annualised, 0.55 = 55%).
    - ``underlying_price`` S > 0: the mark of the option's underlying index.

    ``OptionTerms.none(n)`` is a book without options.
    """

    is_option: BoolArray
    is_call: BoolArray
    strike: FloatArray
    time_to_expiry: FloatArray
    volatility: FloatArray
    underlying_price: FloatArray

    def __post_init__(self) -> None:
        n = np.shape(self.is_option)[0] if np.ndim(self.is_option) == 1 else -1
        if n < 0:
            raise ValueError("OptionTerms.is_option must be one-dimensional")
        for name in ("is_option", "is_call"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.bool_))
        for name in ("strike", "time_to_expiry", "volatility", "underlying_price"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("is_call", "strike", "time_to_expiry", "volatility", "underlying_price"):
            shape = np.shape(getattr(self, name))
            if shape != (n,):
                raise ValueError(f"OptionTerms.{name} has shape {shape}, expected {(n,)}")

    @property
    def n(self) -> int:
        """Number of rows (that of the positions)."""
        return int(self.is_option.shape[0])

    @classmethod
    def none(cls, n: int) -> OptionTerms:
        """n rows, none of them an option."""
        return cls(
            is_option=np.zeros(n, dtype=np.bool_),
            is_call=np.zeros(n, dtype=np.bool_),
            strike=np.ones(n),
            time_to_expiry=np.zeros(n),
            volatility=np.zeros(n),
            underlying_price=np.ones(n),
        )

    @classmethod
    def create(
        cls,
        *,
        is_option: ArrayLike,
        is_call: ArrayLike,
        strike: ArrayLike,
        time_to_expiry: ArrayLike,
        volatility: ArrayLike,
        underlying_price: ArrayLike,
    ) -> OptionTerms:
        """Build from array-likes (scalars broadcast to the common length), then ``validate()``."""
        inputs = (is_option, is_call, strike, time_to_expiry, volatility, underlying_price)
        (n,) = np.broadcast_shapes(*(np.shape(value) for value in inputs), (1,))

        def rows(value: ArrayLike, dtype: type) -> npt.NDArray[Any]:
            return np.array(np.broadcast_to(np.asarray(value, dtype=dtype), (n,)))

        terms = cls(
            is_option=rows(is_option, np.bool_),
            is_call=rows(is_call, np.bool_),
            strike=rows(strike, np.float64),
            time_to_expiry=rows(time_to_expiry, np.float64),
            volatility=rows(volatility, np.float64),
            underlying_price=rows(underlying_price, np.float64),
        )
        terms.validate()
        return terms

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first option row with an impossible term."""
        option = self.is_option
        checks = (
            ("strike", np.isfinite(self.strike) & (self.strike > 0)),
            ("time_to_expiry", np.isfinite(self.time_to_expiry)),
            ("volatility", np.isfinite(self.volatility) & (self.volatility >= 0)),
            ("underlying_price", np.isfinite(self.underlying_price) & (self.underlying_price > 0)),
        )
        for name, ok in checks:
            bad = option & ~ok
            if bool(bad.any()):
                raise ValueError(f"OptionTerms.{name}[{int(np.argmax(bad))}] is out of range")

    def take(self, index: ArrayLike) -> OptionTerms:
        """The rows ``index`` (int array or boolean mask), as ``Positions.take``."""
        idx = np.asarray(index)
        return OptionTerms(
            is_option=self.is_option[idx],
            is_call=self.is_call[idx],
            strike=self.strike[idx],
            time_to_expiry=self.time_to_expiry[idx],
            volatility=self.volatility[idx],
            underlying_price=self.underlying_price[idx],
        )


@dataclass(frozen=True, slots=True)
class OptionValues:
    """Per position (n,), 0 on rows that are not options; settlement asset unless stated.

    - ``value`` = q·k·m: what the option counts for in equity (m = its mark, the premium).
    - ``dollar_delta`` = q·k·Δ·S (added to its underlying's D_u) and ``notional`` = |q·k·Δ|·S
      (for limits, leverage and gross notional): delta-adjusted.
    - ``initial_margin`` / ``maintenance_margin``: standard margin (``short_option_margins``).
    - ``delta`` / ``gamma`` / ``vega`` / ``theta``: the position's greeks, Black-76's per-unit
      greeks × q·k (delta in base units, vega per volatility point, theta per day).
    """

    value: FloatArray
    dollar_delta: FloatArray
    notional: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray


def option_values(positions: Positions, terms: OptionTerms, risk: RiskArrays) -> OptionValues:
    """Equity value, delta-adjusted exposure, standard margin and greeks of the option rows of
    one book (``OptionValues``; formulas there and in the module docstring). Shapes (n,)."""
    rows = np.flatnonzero(terms.is_option)
    n = positions.n
    out = {name: np.zeros(n) for name in OptionValues.__slots__}
    if rows.size:
        qk = positions.size[rows] * positions.contract_size[rows]
        spot = terms.underlying_price[rows]
        is_call, strike = terms.is_call[rows], terms.strike[rows]
        unit = black76(is_call, spot, strike, terms.volatility[rows], terms.time_to_expiry[rows])
        im, mm = short_option_margins(
            positions.size[rows], positions.contract_size[rows], is_call, strike, spot, risk
        )
        dollar_delta = qk * unit.delta * spot
        for name, values in (
            ("value", qk * positions.mark[rows]),
            ("dollar_delta", dollar_delta),
            ("notional", np.abs(dollar_delta)),
            ("initial_margin", im),
            ("maintenance_margin", mm),
            ("delta", qk * unit.delta),
            ("gamma", qk * unit.gamma),
            ("vega", qk * unit.vega),
            ("theta", qk * unit.theta),
        ):
            out[name][rows] = values
    return OptionValues(**out)


def stressed_option_value_changes(
    positions: Positions,
    terms: OptionTerms,
    price_shocks: FloatArray,
    vol_shocks: FloatArray,
) -> FloatArray:
    """How much each option position's value moves under S stress scenarios (margin.md "Stress"):
    ``q·k·(V(S·(1 + shock_u), σ·(1 + vol_shock_u)) − V(S, σ))``, T unchanged.

    ``price_shocks`` and ``vol_shocks`` (S, U) relative moves per underlying (vol shocks ≥ −1)
    → (S, n), 0 on rows that are not options. For the stress of a book with options: add it to
    the option rows' equity (their value at the mark plus this change).
    """
    price = np.atleast_2d(np.asarray(price_shocks, dtype=np.float64))
    vol = np.atleast_2d(np.asarray(vol_shocks, dtype=np.float64))
    rows = np.flatnonzero(terms.is_option)
    changes = np.zeros((price.shape[0], positions.n))
    if rows.size:
        underlying = positions.underlying[rows]
        is_call, strike = terms.is_call[rows], terms.strike[rows]
        spot, sigma = terms.underlying_price[rows], terms.volatility[rows]
        expiry = terms.time_to_expiry[rows]
        before = black76_value(is_call, spot, strike, sigma, expiry)
        shocked_spot = spot * (1.0 + price[:, underlying])
        shocked_sigma = sigma * (1.0 + vol[:, underlying])
        after = black76_value(is_call, shocked_spot, strike, shocked_sigma, expiry)
        qk = positions.size[rows] * positions.contract_size[rows]
        changes[:, rows] = qk * (after - before)
    return changes
