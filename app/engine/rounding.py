"""The float64 ↔ Decimal boundary, with the conservative rounding rule written down once.

The engine computes in float64; the service stores and answers exact decimals. Going out:

1. **Snap float noise.** A float within
   ``tolerance(x) = min(max(SNAP_ULPS · ulp(x), SNAP_ABSOLUTE), ¼ · 10^-dp)``
   of a point of the 10^-dp grid is taken to be that point (``0.1·0.2·3,250,000 =
   65000.000000000015`` → ``65000``). ``SNAP_ULPS = 512`` units in the last place cover the
   rounding error of long sums, yet stay far below the grid: a relative tolerance would not
   (at 1e-12 · 52,380.95 it reached 5e-8, a twentieth of a unit, and snapped the exact
   52,380.952380952… *up* to …381 — the wrong way for a short's liquidation price). The ¼-unit
   cap means snapping never moves a value by as much as a quarter of the smallest unit.
   ``SNAP_ABSOLUTE = 1e-12`` catches cancellation noise near zero (0.3 − 0.1 − 0.2 ≈ −2.8e-17).
2. **Round conservatively** anything not snapped: requirements (initial / maintenance / reserved
   margin, notional) **up**, equity-like amounts (equity, collateral value, PnL, funding, free
   collateral, withdrawable) **down**, at ``decimals`` places (default 6, the settlement asset's).
   A liquidation price rounds **up** for a long and **down** for a short (it warns earlier).
3. Free collateral is then ``equity↓ − initial_margin↑`` in decimals (isolated: collateral↓ −
   reserved↑), so a reject in exact decimals can never become an accept through rounding.
   Snapping forgives at most ``tolerance(x)`` per amount: a book failing by less than that
   (float noise) may pass.

Ratios stay floats. Coming in, ``to_floats`` converts decimals to a float64 array.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from enum import Enum

import numpy as np

from app.engine.arrays import FloatArray
from app.engine.types import RATIO_FIELDS, SUMMARY_FIELDS, MarginMode, MarginSummary

SNAP_ULPS = 512
"""Distance to a grid point, in units in the last place, below which a float is that point."""
SNAP_ABSOLUTE = 1e-12
"""…and the absolute distance that always counts as noise (cancellation near zero)."""

_PRECISION = 80  # digits: amounts up to 10^70 at 6 dp without Decimal overflow
_CONTEXT = Context(prec=_PRECISION)
_ONE = Decimal(1)


class Direction(Enum):
    """Which way a non-snapped value rounds."""

    UP = ROUND_CEILING
    DOWN = ROUND_FLOOR


def snap_tolerance(value: float, decimals: int = 6) -> float:
    """``min(max(SNAP_ULPS · ulp(value), SNAP_ABSOLUTE), 0.25 · 10^-decimals)`` — how far a float
    may sit from a grid point and still be that point."""
    return min(max(SNAP_ULPS * math.ulp(value), SNAP_ABSOLUTE), 0.25 * 10.0**-decimals)


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without exponent notation (65000.000000 → 65000, −0 → 0)."""
    if value == 0:
        return Decimal(0)
    if value == value.to_integral_value(context=_CONTEXT):
        return value.quantize(_ONE, context=_CONTEXT)
    return value.normalize(_CONTEXT)


_FAST_BELOW = 2.0**31
"""Below this magnitude ``value · 10^decimals`` (decimals ≤ 6) is under 2^52, so its float is
within half an ulp of the exact product and its integer neighbours are exact: see
``to_decimal_text``."""
_SCALES = tuple(10.0**d for d in range(7))
_SNAP_CAPS = tuple(0.25 * 10.0**-d for d in range(7))
_UNITS = tuple(10**d for d in range(7))
_FRACTION_FORMATS = tuple(f"0{d}d" for d in range(7))
_GRID_SLACK_ULPS = 4.0
"""How far (in ulps of ``value``) the float estimate of the distance to the grid may be off;
a distance this close to the snap tolerance is decided by the exact rule."""


def to_decimal_text(value: float, direction: Direction, decimals: int = 6) -> str:
    """``to_decimal`` as the plain decimal text the API sends (``"65000"``, ``"-0.5"``).

    Fast path, same result: for ``|value| < 2^31`` and ``decimals ≤ 6``, ``s = value · 10^d``
    is computed in float64 (error ≤ ½ ulp(s)); the distance to the nearest grid point
    ``|s − round(s)| / 10^d`` is then known within a few ulps of ``value``. Clearly inside the
    snap tolerance it snaps, clearly outside it rounds ``s`` in ``direction`` — ``s`` is then
    hundreds of ulps from an integer, so its ceiling/floor is the exact product's; the thin band
    between, nan/inf and larger magnitudes go through the exact Decimal rule."""
    if decimals <= 6 and -_FAST_BELOW < value < _FAST_BELOW:
        scale = _SCALES[decimals]
        scaled = value * scale
        nearest = round(scaled)
        distance = abs(scaled - nearest) / scale
        # snap_tolerance(value, decimals), inline: this runs ~25 times per pre-trade check.
        ulp = math.ulp(value)
        tolerance = min(max(SNAP_ULPS * ulp, SNAP_ABSOLUTE), _SNAP_CAPS[decimals])
        slack = _GRID_SLACK_ULPS * ulp + math.ulp(scaled) / scale
        if distance <= tolerance - slack:
            return _grid_text(nearest, decimals)
        if distance > tolerance + slack:
            units = math.ceil(scaled) if direction is Direction.UP else math.floor(scaled)
            return _grid_text(units, decimals)
    return _text(_to_decimal_exact(value, direction, decimals))


def _grid_text(units: int, decimals: int) -> str:
    """``units · 10^-decimals`` as plain text without trailing zeros."""
    if units == 0:
        return "0"
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), _UNITS[decimals])
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{format(fraction, _FRACTION_FORMATS[decimals]).rstrip('0')}"


def _text(value: Decimal) -> str:
    return "0" if value == 0 else format(value, "f")


def to_decimal(value: float, direction: Direction, decimals: int = 6) -> Decimal:
    """``value`` at ``decimals`` places: snapped to the grid if within ``snap_tolerance``, else
    rounded in ``direction``. ValueError for nan or ±inf (money is never undefined)."""
    return Decimal(to_decimal_text(value, direction, decimals))


def _to_decimal_exact(value: float, direction: Direction, decimals: int) -> Decimal:
    if not math.isfinite(value):
        raise ValueError(f"cannot convert {value!r} to a decimal amount")
    # Every operation names the wide context: a float's exact expansion has up to ~60 digits,
    # and the default context (28) would round it before we choose the direction.
    exact = Decimal(value)
    quantum = _ONE.scaleb(-decimals, _CONTEXT)
    nearest = exact.quantize(quantum, rounding=ROUND_HALF_EVEN, context=_CONTEXT)
    if _CONTEXT.abs(_CONTEXT.subtract(exact, nearest)) <= Decimal(snap_tolerance(value, decimals)):
        return _plain(nearest)
    return _plain(exact.quantize(quantum, rounding=direction.value, context=_CONTEXT))


def requirement_to_decimal(value: float, decimals: int = 6) -> Decimal:
    """A requirement (margin, notional): snapped, else rounded up."""
    return to_decimal(value, Direction.UP, decimals)


def equity_to_decimal(value: float, decimals: int = 6) -> Decimal:
    """An equity-like amount (equity, collateral, PnL, funding): snapped, else rounded down."""
    return to_decimal(value, Direction.DOWN, decimals)


def liquidation_price_text(price: float, size: float | Decimal, decimals: int = 6) -> str | None:
    """A liquidation price as plain text: None when nan; snapped, else up for a long (size > 0)
    and down for a short (the conservative side: the reported price is reached first)."""
    if math.isnan(price):
        return None
    return to_decimal_text(price, Direction.UP if size > 0 else Direction.DOWN, decimals)


def liquidation_price_to_decimal(price: float, size: float, decimals: int = 6) -> Decimal | None:
    """``liquidation_price_text`` as a Decimal."""
    text = liquidation_price_text(price, size, decimals)
    return None if text is None else Decimal(text)


_UP = (
    "initial_margin",
    "maintenance_margin",
    "reserved_initial_margin",
    "gross_notional",
    "standard_initial_margin",
    "portfolio_initial_margin",
)
_DOWN = ("equity", "collateral_value", "unrealized_pnl", "next_funding", "withdrawable")


def summary_to_decimals(
    summary: MarginSummary | Mapping[str, float | None],
    mode: MarginMode | str,
    decimals: int = 6,
) -> dict[str, Decimal | float | None]:
    """The api.md ``MarginSummary`` fields: money as conservatively rounded ``Decimal``, ratios as
    floats (or None).

    ``free_collateral`` is recomputed in decimals from rounded parts — ``equity↓ −
    initial_margin↑`` (isolated: ``collateral_value↓ − reserved_initial_margin↑``) — and
    ``withdrawable↓`` is capped at ``max(0, free_collateral)``, so neither can exceed what the
    rounded parts allow. ``summary`` may also be a ``BatchSummary.row`` mapping.
    """
    fields = summary if isinstance(summary, Mapping) else summary.scalars()
    out: dict[str, Decimal | float | None] = {}
    for name in _UP:
        out[name] = requirement_to_decimal(_amount(fields[name]), decimals)
    for name in _DOWN:
        out[name] = equity_to_decimal(_amount(fields[name]), decimals)
    if MarginMode(mode) is MarginMode.ISOLATED:
        free = _CONTEXT.subtract(
            _dec(out["collateral_value"]), _dec(out["reserved_initial_margin"])
        )
    else:
        free = _CONTEXT.subtract(_dec(out["equity"]), _dec(out["initial_margin"]))
    out["free_collateral"] = _plain(free)
    out["withdrawable"] = _plain(min(_dec(out["withdrawable"]), max(Decimal(0), free)))
    for name in RATIO_FIELDS:
        out[name] = fields[name]
    return {name: out[name] for name in SUMMARY_FIELDS}


def _amount(value: float | None) -> float:
    assert value is not None
    return value


def _dec(value: Decimal | float | None) -> Decimal:
    assert isinstance(value, Decimal)
    return value


def conservative_free_collateral(
    equity: float, initial_margin: float, decimals: int = 6
) -> Decimal:
    """``equity↓ − initial_margin↑`` in decimals: the amount a pre-trade decision compares to 0."""
    return equity_to_decimal(equity, decimals) - requirement_to_decimal(initial_margin, decimals)


def to_floats(values: Iterable[Decimal | str | int | float]) -> FloatArray:
    """Decimals (or decimal strings) → a float64 array, for building engine inputs."""
    return np.array(
        [float(Decimal(v) if isinstance(v, str) else v) for v in values], dtype=np.float64
    )
