"""Risk parameters of the methodology (margin.md defaults) and their per-universe arrays.

``RiskParameters`` is the stored, JSON-exchanged form (GET/PUT /v1/risk/parameters);
``RiskParameters.arrays(universe)`` materialises what the engine computes with for a tuple of
underlying names: scan ranges (U,), spread rates (U,) and the correlation matrix (U, U).
Correlations are keyed by ``"A/B"`` (order does not matter; ``/`` never occurs in a symbol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from app.engine.arrays import FloatArray


def _default_scan_ranges() -> dict[str, float]:
    return {"BTC": 0.10, "ETH": 0.12}


def _pair(key: str) -> tuple[str, str]:
    parts = key.split("/")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"correlations key {key!r} must be 'A/B' with two different underlyings")
    a, b = sorted(parts)
    return a, b


@dataclass(frozen=True)
class AutoReduceOnly:
    """The automatic circuit breaker: a subaccount with open positions whose
    ``maintenance_margin_ratio`` reaches ``at`` (or whose equity is ≤ 0) is put in
    ``reduce_only``, released when its ratio falls below ``release_below`` (0 < release_below
    < at: the gap keeps a book hovering at the threshold from flapping in and out)."""

    at: float
    release_below: float

    def to_dict(self) -> dict[str, float]:
        return {"at": self.at, "release_below": self.release_below}


@dataclass(frozen=True, kw_only=True)
class RiskParameters:
    """The methodology's parameters (defaults from margin.md). Validated at construction.

    - ``scan_ranges`` / ``default_scan_range``: r_u, relative move; BTC 0.10, ETH 0.12, else 0.20.
    - ``correlations`` / ``default_correlation``: ρ between two distinct underlyings ("A/B" keys),
      default 0.8; 1 on the diagonal.
    - ``spread_rates`` / ``default_spread_rate``: basis charge rate per underlying, default 0.01.
    - ``floor_rate`` 0.005, ``im_multiplier`` 1.25, ``withdrawal_floor`` 0.0,
      ``default_slippage`` 0.005, ``margin_call_warning`` 0.8, ``margin_call_liquidation`` 1.0,
      ``settlement_decimals`` 6.
    - ``auto_reduce_only``: the automatic circuit breaker (:class:`AutoReduceOnly`), None = off.
    - Options (margin.md "Options", unused by a book without options): standard margin of a short
      option ``option_im_base`` 0.15, ``option_im_min`` 0.10, ``option_mm_base`` 0.075; portfolio
      volatility moves ``vol_up`` 0.5, ``vol_down`` 0.25, ``vega_power`` 0.3; the short option
      minimum's ``short_option_rate`` 0.01.

    Every r_u + spread_u must stay below 1 (otherwise equity − maintenance would stop being
    monotone in a mark and a liquidation price would not be unique).
    """

    scan_ranges: Mapping[str, float] = field(default_factory=_default_scan_ranges)
    default_scan_range: float = 0.20
    correlations: Mapping[str, float] = field(default_factory=dict)
    default_correlation: float = 0.8
    spread_rates: Mapping[str, float] = field(default_factory=dict)
    default_spread_rate: float = 0.01
    floor_rate: float = 0.005
    im_multiplier: float = 1.25
    withdrawal_floor: float = 0.0
    default_slippage: float = 0.005
    margin_call_warning: float = 0.8
    margin_call_liquidation: float = 1.0
    settlement_decimals: int = 6
    auto_reduce_only: AutoReduceOnly | None = None
    option_im_base: float = 0.15
    option_im_min: float = 0.10
    option_mm_base: float = 0.075
    vol_up: float = 0.5
    vol_down: float = 0.25
    vega_power: float = 0.3
    short_option_rate: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "scan_ranges", dict(self.scan_ranges))
        object.__setattr__(self, "spread_rates", dict(self.spread_rates))
        correlations: dict[str, float] = {}
        for key, value in dict(self.correlations).items():
            a, b = _pair(key)
            canonical = f"{a}/{b}"
            if canonical in correlations and correlations[canonical] != value:
                raise ValueError(f"correlations: {key!r} given twice with different values")
            correlations[canonical] = value
        object.__setattr__(self, "correlations", correlations)
        self._validate()
        # Not a field (to_dict/from_dict and equality ignore it): arrays already built, per
        # universe. One parameters object serves every check until the parameters change.
        object.__setattr__(self, "_arrays_built", {})

    def _validate(self) -> None:
        def check(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
            ok = math.isfinite(value) and lo <= value and (value < hi if hi_open else value <= hi)
            if not ok:
                bracket = ")" if hi_open else "]"
                raise ValueError(f"{name} = {value!r} must lie in [{lo}, {hi}{bracket}")

        check("default_scan_range", self.default_scan_range, 0.0, 1.0, True)
        for u, r in self.scan_ranges.items():
            check(f"scan_ranges[{u!r}]", r, 0.0, 1.0, True)
        check("default_correlation", self.default_correlation, -1.0, 1.0)
        for key, rho in self.correlations.items():
            check(f"correlations[{key!r}]", rho, -1.0, 1.0)
        check("default_spread_rate", self.default_spread_rate, 0.0, 1.0, True)
        for u, s in self.spread_rates.items():
            check(f"spread_rates[{u!r}]", s, 0.0, 1.0, True)
        check("floor_rate", self.floor_rate, 0.0, 1.0, True)
        check("im_multiplier", self.im_multiplier, 1.0, 100.0)
        check("withdrawal_floor", self.withdrawal_floor, 0.0, 1.0)
        check("default_slippage", self.default_slippage, 0.0, 1.0, True)
        check("margin_call_warning", self.margin_call_warning, 0.0, self.margin_call_liquidation)
        check("margin_call_liquidation", self.margin_call_liquidation, 0.0, 10.0)
        check("option_im_base", self.option_im_base, 0.0, 1.0)
        check("option_im_min", self.option_im_min, 0.0, 1.0)
        check("option_mm_base", self.option_mm_base, 0.0, 1.0)
        check("vol_up", self.vol_up, 0.0, 10.0)
        check("vol_down", self.vol_down, 0.0, 1.0)
        check("vega_power", self.vega_power, 0.0, 2.0)
        check("short_option_rate", self.short_option_rate, 0.0, 1.0, True)
        if not isinstance(self.settlement_decimals, int) or not 0 <= self.settlement_decimals <= 18:
            raise ValueError("settlement_decimals must be an integer in [0, 18]")
        breaker = self.auto_reduce_only
        if breaker is not None:
            if not (math.isfinite(breaker.at) and breaker.at > 0):
                raise ValueError(f"auto_reduce_only.at = {breaker.at!r} must be a number above 0")
            if not 0 < breaker.release_below < breaker.at:
                raise ValueError(
                    f"auto_reduce_only.release_below = {breaker.release_below!r} must lie in"
                    f" (0, at = {breaker.at!r})"
                )
        for u in {*self.scan_ranges, *self.spread_rates, ""}:
            if self.scan_range(u) + self.spread_rate(u) >= 1.0:
                name = repr(u) if u else "the defaults"
                raise ValueError(f"scan range + spread rate of {name} must stay below 1")

    def scan_range(self, underlying: str) -> float:
        """r_u: the configured value, else ``default_scan_range``."""
        return float(self.scan_ranges.get(underlying, self.default_scan_range))

    def spread_rate(self, underlying: str) -> float:
        """spread_rate_u: the configured value, else ``default_spread_rate``."""
        return float(self.spread_rates.get(underlying, self.default_spread_rate))

    def correlation(self, a: str, b: str) -> float:
        """ρ_ab: 1 when a == b, the configured pair value, else ``default_correlation``."""
        if a == b:
            return 1.0
        x, y = sorted((a, b))
        return float(self.correlations.get(f"{x}/{y}", self.default_correlation))

    def arrays(self, universe: Sequence[str]) -> RiskArrays:
        """Materialise the per-universe arrays for ``universe`` (underlying names, in index order).

        Raises ``ValueError`` if a name repeats or the correlation matrix is not positive
        semi-definite (the directional charge would not be a real number for some book).
        """
        names = tuple(universe)
        built: dict[tuple[str, ...], RiskArrays] = self._arrays_built  # type: ignore[attr-defined]
        if names in built:
            return built[names]
        if len(set(names)) != len(names):
            raise ValueError("universe lists an underlying twice")
        u = len(names)
        corr = np.eye(u)
        for i in range(u):
            for j in range(i + 1, u):
                corr[i, j] = corr[j, i] = self.correlation(names[i], names[j])
        if u and float(np.linalg.eigvalsh(corr).min()) < -1e-10:
            raise ValueError(f"correlation matrix over {names} is not positive semi-definite")
        arrays = RiskArrays(
            universe=names,
            scan_range=np.array([self.scan_range(n) for n in names], dtype=np.float64),
            spread_rate=np.array([self.spread_rate(n) for n in names], dtype=np.float64),
            correlation=corr,
            floor_rate=self.floor_rate,
            im_multiplier=self.im_multiplier,
            withdrawal_floor=self.withdrawal_floor,
            option_im_base=self.option_im_base,
            option_im_min=self.option_im_min,
            option_mm_base=self.option_mm_base,
            vol_up=self.vol_up,
            vol_down=self.vol_down,
            vega_power=self.vega_power,
            short_option_rate=self.short_option_rate,
        )
        for array in (arrays.scan_range, arrays.spread_rate, arrays.correlation):
            array.flags.writeable = False  # shared by every later call
        if len(built) >= 1024:  # books over many different underlyings: stay bounded
            built.clear()
        built[names] = arrays
        return arrays

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every parameter (numbers as JSON numbers)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(sorted(value.items()))
            elif isinstance(value, AutoReduceOnly):
                value = value.to_dict()
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskParameters:
        """Parse the ``to_dict`` form; missing keys take defaults, unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown risk parameter(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("scan_ranges", "correlations", "spread_rates"):
                if not isinstance(value, Mapping):
                    raise ValueError(f"{name} must be an object of numbers")
                kwargs[name] = {str(k): _number(f"{name}[{k!r}]", v) for k, v in value.items()}
            elif name == "settlement_decimals":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("settlement_decimals must be an integer")
                kwargs[name] = value
            elif name == "auto_reduce_only":
                kwargs[name] = _auto_reduce_only(value)
            else:
                kwargs[name] = _number(name, value)
        return cls(**kwargs)


def _auto_reduce_only(value: Any) -> AutoReduceOnly | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("auto_reduce_only must be null or an object {at, release_below}")
    unknown = sorted(set(value) - {"at", "release_below"})
    if unknown:
        raise ValueError(f"auto_reduce_only.{unknown[0]} is not a parameter (at, release_below)")
    for key in ("at", "release_below"):
        if key not in value:
            raise ValueError(f"auto_reduce_only.{key} is required")
    return AutoReduceOnly(
        at=_number("auto_reduce_only.at", value["at"]),
        release_below=_number("auto_reduce_only.release_below", value["release_below"]),
    )


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


@dataclass(frozen=True, eq=False)
class RiskArrays:
    """``RiskParameters`` materialised for one universe of U underlyings (index order).

    ``scan_range`` (U,), ``spread_rate`` (U,), ``correlation`` (U, U); scalars as in
    ``RiskParameters``. Build with ``RiskParameters().arrays(("BTC", "ETH", ...))``.
    """

    universe: tuple[str, ...]
    scan_range: FloatArray
    spread_rate: FloatArray
    correlation: FloatArray
    floor_rate: float
    im_multiplier: float
    withdrawal_floor: float
    option_im_base: float
    option_im_min: float
    option_mm_base: float
    vol_up: float
    vol_down: float
    vega_power: float
    short_option_rate: float

    @property
    def n_underlyings(self) -> int:
        """U."""
        return len(self.universe)

    def index(self, underlying: str) -> int:
        """The index of ``underlying`` in the universe (ValueError if absent)."""
        try:
            return self.universe.index(underlying)
        except ValueError:
            raise ValueError(f"underlying {underlying!r} is not in the universe") from None
