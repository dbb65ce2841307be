"""Input and output dataclasses of the margin engine.

Every amount is a float64 in the settlement asset (e.g. USDC); every price is in the settlement asset
per base unit; sizes are signed base units. Shapes: ``n`` positions, ``a`` collateral assets,
``T`` tiers (padded), ``U`` underlyings in the universe, ``s`` subaccounts, ``S`` scenarios.

Inputs are frozen dataclasses holding numpy arrays. The dataclass is frozen (fields cannot be
rebound) but the arrays are not: a caller may keep a book resident and update ``mark`` or ``size``
in place between calls, as ``shared/notes/performance.md`` recommends. Direct construction only
checks dtypes and shapes (cheap); ``create(...)`` and ``validate()`` also check the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from app.engine.arrays import ArrayLike, BoolArray, FloatArray, IntArray
from app.engine.tiers import TierTable


class MarginMode(StrEnum):
    """A subaccount's margin mode, spelled as in the API."""

    ISOLATED = "isolated"
    CROSS = "cross"
    PORTFOLIO = "portfolio"

    @property
    def code(self) -> int:
        """Integer code used in batch arrays: isolated 0, cross 1, portfolio 2."""
        return _MODE_CODES[self]


_MODE_CODES = {MarginMode.ISOLATED: 0, MarginMode.CROSS: 1, MarginMode.PORTFOLIO: 2}


def mode_codes(modes: Sequence[MarginMode | str]) -> IntArray:
    """The (s,) int array of mode codes for a sequence of modes (``"cross"`` or ``MarginMode``)."""
    return np.array([MarginMode(m).code for m in modes], dtype=np.intp)


def _floats(value: ArrayLike) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def _coerced(owner: str, name: str, raw: Any, dtype: type, n: int) -> npt.NDArray[Any]:
    """``raw`` as a (n,) array of ``dtype``; an array that already is one is taken as it is
    (the common case: engine inputs built by the service are, and this runs per evaluation)."""
    if type(raw) is np.ndarray and raw.dtype == dtype and raw.shape == (n,):
        return raw
    value: npt.NDArray[Any] = np.asarray(raw, dtype=dtype)
    _check_shape(owner, name, value, (n,))
    return value


def _check_shape(owner: str, name: str, value: npt.NDArray[Any], shape: tuple[int, ...]) -> None:
    if value.shape != shape:
        raise ValueError(f"{owner}.{name} has shape {value.shape}, expected {shape}")


def _broadcast(value: ArrayLike | None, default: float, n: int) -> FloatArray:
    if value is None:
        return np.full(n, default, dtype=np.float64)
    return np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))


@dataclass(frozen=True, kw_only=True)
class Positions:
    """The open positions of one subaccount (or of many, concatenated, in a batch).

    All arrays have shape (n,):

    - ``size`` q: signed base units (+ long, − short; 0 = a flat row, ignored).
    - ``contract_size`` k: base units per contract unit of ``size`` (1 for most venues).
    - ``entry_price`` e, ``mark`` m: settlement asset per base unit, m > 0.
    - ``isolated_margin`` A: margin allocated to the position (isolated mode only; ignored in
      cross and portfolio mode, where the caller should pass 0).
    - ``leverage``: the chosen leverage, ≥ 1; 0 or nan = none chosen.
    - ``funding_rate`` f: the next funding interval's rate of a perpetual (0 for futures).
    - ``is_perpetual``: bool.
    - ``tick_size``: price tick, > 0 (the precision of a portfolio liquidation price).
    - ``underlying``: int index into the universe of underlyings (see ``RiskArrays.universe``).
    - ``tiers``: a ``TierTable`` of shape (n, T), one row per position.
    """

    size: FloatArray
    contract_size: FloatArray
    entry_price: FloatArray
    mark: FloatArray
    isolated_margin: FloatArray
    leverage: FloatArray
    funding_rate: FloatArray
    is_perpetual: BoolArray
    tick_size: FloatArray
    underlying: IntArray
    tiers: TierTable

    def __post_init__(self) -> None:
        n = np.shape(self.size)[0] if np.ndim(self.size) == 1 else -1
        if n < 0:
            raise ValueError("Positions.size must be one-dimensional")
        for name, dtype in _POSITION_DTYPES:
            raw = getattr(self, name)
            value = _coerced("Positions", name, raw, dtype, n)
            if value is not raw:
                object.__setattr__(self, name, value)
        if self.tiers.floors.shape[0] != n:
            raise ValueError(f"Positions.tiers has {self.tiers.floors.shape[0]} rows, expected {n}")

    @property
    def n(self) -> int:
        """Number of position rows."""
        return int(self.size.shape[0])

    @classmethod
    def create(
        cls,
        *,
        size: ArrayLike,
        contract_size: ArrayLike | None = None,
        entry_price: ArrayLike,
        mark: ArrayLike,
        tiers: TierTable,
        underlying: ArrayLike,
        tick_size: ArrayLike,
        isolated_margin: ArrayLike | None = None,
        leverage: ArrayLike | None = None,
        funding_rate: ArrayLike | None = None,
        is_perpetual: ArrayLike | None = None,
    ) -> Positions:
        """Build from array-likes (scalars broadcast), with defaults k=1, A=0, no leverage,
        f=0, not perpetual; then ``validate()``."""
        q = _floats(size).reshape(-1)
        n = q.shape[0]
        positions = cls(
            size=q,
            contract_size=_broadcast(contract_size, 1.0, n),
            entry_price=_broadcast(entry_price, np.nan, n),
            mark=_broadcast(mark, np.nan, n),
            isolated_margin=_broadcast(isolated_margin, 0.0, n),
            leverage=_broadcast(leverage, np.nan, n),
            funding_rate=_broadcast(funding_rate, 0.0, n),
            is_perpetual=np.array(
                np.broadcast_to(np.asarray(False if is_perpetual is None else is_perpetual), (n,)),
                dtype=np.bool_,
            ),
            tick_size=_broadcast(tick_size, np.nan, n),
            underlying=np.array(np.broadcast_to(np.asarray(underlying), (n,)), dtype=np.intp),
            tiers=tiers,
        )
        positions.validate()
        return positions

    def validate(self, n_underlyings: int | None = None) -> None:
        """Raise ``ValueError`` naming the first field with an impossible value."""
        checks: list[tuple[str, BoolArray]] = [
            ("size", np.isfinite(self.size)),
            ("contract_size", np.isfinite(self.contract_size) & (self.contract_size > 0)),
            ("entry_price", np.isfinite(self.entry_price) & (self.entry_price >= 0)),
            ("mark", np.isfinite(self.mark) & (self.mark > 0)),
            ("isolated_margin", np.isfinite(self.isolated_margin)),
            ("leverage", np.isnan(self.leverage) | (self.leverage == 0) | (self.leverage >= 1)),
            ("funding_rate", np.isfinite(self.funding_rate)),
            ("tick_size", np.isfinite(self.tick_size) & (self.tick_size > 0)),
            ("underlying", self.underlying >= 0),
        ]
        if n_underlyings is not None:
            checks.append(("underlying", self.underlying < n_underlyings))
        for name, ok in checks:
            if not bool(np.all(ok)):
                row = int(np.argmin(ok))
                raise ValueError(f"Positions.{name}[{row}] is out of range")
        self.tiers.validate()

    def take(self, index: ArrayLike) -> Positions:
        """The rows ``index`` (an int array or a boolean mask) as a new ``Positions``."""
        idx = np.asarray(index)
        values = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "tiers"}
        return Positions(**values, tiers=self.tiers.take(idx))

    @classmethod
    def concat(cls, books: Sequence[Positions]) -> Positions:
        """Rows of several ``Positions`` one after another (tier tables padded to a common T)."""
        values = {
            f.name: np.concatenate([getattr(b, f.name) for b in books])
            for f in fields(cls)
            if f.name != "tiers"
        }
        return cls(**values, tiers=TierTable.concat([b.tiers for b in books]))


_POSITION_DTYPES: tuple[tuple[str, type], ...] = (
    *((name, np.float64) for name in ("size", "contract_size", "entry_price", "mark",
                                      "isolated_margin", "leverage", "funding_rate", "tick_size")),
    ("is_perpetual", np.bool_),
    ("underlying", np.intp),
)  # fmt: skip
"""``Positions``' array fields and their dtypes (``tiers`` is a table of its own)."""


@dataclass(frozen=True, kw_only=True)
class Collateral:
    """The balances of one subaccount (or of many, concatenated, in a batch). Shape (a,):

    - ``balance``: asset units, negative = a debt.
    - ``price``: settlement asset per unit (1 for the settlement asset).
    - ``weight``: collateral weight in [0, 1] (1 for the settlement asset); the haircut is 1 − w.
    - ``underlying``: int index of the risk factor the asset moves with, −1 for none.
    """

    balance: FloatArray
    price: FloatArray
    weight: FloatArray
    underlying: IntArray

    def __post_init__(self) -> None:
        if np.ndim(self.balance) != 1:
            raise ValueError("Collateral.balance must be one-dimensional")
        a = np.shape(self.balance)[0]
        for f in fields(self):
            raw = getattr(self, f.name)
            dtype = np.intp if f.name == "underlying" else np.float64
            value = _coerced("Collateral", f.name, raw, dtype, a)
            if value is not raw:
                object.__setattr__(self, f.name, value)

    @property
    def a(self) -> int:
        """Number of collateral rows."""
        return int(self.balance.shape[0])

    @classmethod
    def create(
        cls,
        *,
        balance: ArrayLike,
        price: ArrayLike | None = None,
        weight: ArrayLike | None = None,
        underlying: ArrayLike | None = None,
    ) -> Collateral:
        """Build from array-likes; defaults price 1, weight 1, underlying −1 (settlement asset)."""
        b = _floats(balance).reshape(-1)
        a = b.shape[0]
        under = -1 if underlying is None else underlying
        collateral = cls(
            balance=b,
            price=_broadcast(price, 1.0, a),
            weight=_broadcast(weight, 1.0, a),
            underlying=np.array(np.broadcast_to(np.asarray(under), (a,)), dtype=np.intp),
        )
        collateral.validate()
        return collateral

    @classmethod
    def settlement(cls, amount: float) -> Collateral:
        """A single settlement-asset balance."""
        return cls.create(balance=[amount])

    @classmethod
    def empty(cls) -> Collateral:
        """No balances."""
        return cls.create(balance=np.zeros(0))

    def validate(self, n_underlyings: int | None = None) -> None:
        """Raise ``ValueError`` naming the first field with an impossible value."""
        checks: list[tuple[str, BoolArray]] = [
            ("balance", np.isfinite(self.balance)),
            ("price", np.isfinite(self.price) & (self.price >= 0)),
            ("weight", (self.weight >= 0) & (self.weight <= 1)),
            ("underlying", self.underlying >= -1),
        ]
        if n_underlyings is not None:
            checks.append(("underlying", self.underlying < n_underlyings))
        for name, ok in checks:
            if not bool(np.all(ok)):
                row = int(np.argmin(ok))
                raise ValueError(f"Collateral.{name}[{row}] is out of range")

    def take(self, index: ArrayLike) -> Collateral:
        """The rows ``index`` as a new ``Collateral``."""
        idx = np.asarray(index)
        return Collateral(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def concat(cls, books: Sequence[Collateral]) -> Collateral:
        """Rows of several ``Collateral`` one after another."""
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in books]) for f in fields(cls)}
        )


class OptionRows(Protocol):
    """What a summary reports of its option rows (``options.OptionValues``; a protocol here
    because options.py builds on this module). Each (n,), 0 on rows that are not options."""

    @property
    def value(self) -> FloatArray: ...
    @property
    def delta(self) -> FloatArray: ...
    @property
    def gamma(self) -> FloatArray: ...
    @property
    def vega(self) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class PositionMargins:
    """Per-position results, each of shape (n,), in the order of the input rows.

    ``initial_margin`` / ``maintenance_margin`` are the standard (tiered) model's values in every
    mode (informational in portfolio mode). ``liquidation_price`` is nan when no positive price
    reaches liquidation (and for flat rows). ``equity`` is A + u in isolated mode, else None.
    ``options``: the option rows' values and greeks (an ``options.OptionValues``, 0 on other
    rows); None for a book without options.
    """

    notional: FloatArray
    unrealized_pnl: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    liquidation_price: FloatArray
    equity: FloatArray | None
    options: OptionRows | None = None


SUMMARY_FIELDS: tuple[str, ...] = (
    "equity",
    "collateral_value",
    "unrealized_pnl",
    "initial_margin",
    "maintenance_margin",
    "reserved_initial_margin",
    "free_collateral",
    "withdrawable",
    "initial_margin_ratio",
    "maintenance_margin_ratio",
    "leverage",
    "gross_notional",
    "next_funding",
    "standard_initial_margin",
    "portfolio_initial_margin",
)
"""The api.md ``MarginSummary`` fields, in their documented order."""

RATIO_FIELDS: tuple[str, ...] = ("initial_margin_ratio", "maintenance_margin_ratio", "leverage")
"""Fields that are plain ratios (None when equity ≤ 0), never rounded to money."""


@dataclass(frozen=True, slots=True)
class MarginSummary:
    """One subaccount's margin, the api.md ``MarginSummary`` as floats, plus per-position arrays.

    Conventions (all amounts in the settlement asset):

    - ``initial_margin`` = the mode's position IM + ``reserved_initial_margin``.
    - ``free_collateral`` = equity − initial_margin (isolated: collateral_value − reserved IM).
    - ``withdrawable`` = max(0, equity − max(initial_margin, withdrawal_floor · gross_notional))
      (isolated: max(0, collateral_value − reserved IM)); the per-asset cap (never more than the
      asset's balance) is the caller's.
    - ratios are None when equity ≤ 0.
    - ``standard_initial_margin`` / ``portfolio_initial_margin``: both models' position IM for the
      same book, without reservations.
    """

    equity: float
    collateral_value: float
    unrealized_pnl: float
    initial_margin: float
    maintenance_margin: float
    reserved_initial_margin: float
    free_collateral: float
    withdrawable: float
    initial_margin_ratio: float | None
    maintenance_margin_ratio: float | None
    leverage: float | None
    gross_notional: float
    next_funding: float
    standard_initial_margin: float
    portfolio_initial_margin: float
    positions: PositionMargins
    long_option_value: float = 0.0
    """Σ of the long options' values ``q·k·m``: in equity, not withdrawable (margin.md)."""

    def scalars(self) -> dict[str, float | None]:
        """The api.md fields as a dict (floats; ratios may be None)."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """Every ``MarginSummary`` field for s subaccounts, each an (s,) float array.

    Ratios are nan where equity ≤ 0 (None in the one-subaccount form).
    """

    equity: FloatArray
    collateral_value: FloatArray
    unrealized_pnl: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    reserved_initial_margin: FloatArray
    free_collateral: FloatArray
    withdrawable: FloatArray
    initial_margin_ratio: FloatArray
    maintenance_margin_ratio: FloatArray
    leverage: FloatArray
    gross_notional: FloatArray
    next_funding: FloatArray
    standard_initial_margin: FloatArray
    portfolio_initial_margin: FloatArray

    def row(self, i: int) -> dict[str, float | None]:
        """Subaccount i's fields as in ``MarginSummary.scalars()`` (nan ratios become None)."""
        out: dict[str, float | None] = {}
        for name in SUMMARY_FIELDS:
            value = float(getattr(self, name)[i])
            out[name] = None if name in RATIO_FIELDS and np.isnan(value) else value
        return out


@dataclass(frozen=True, slots=True)
class StressResult:
    """A book revalued under shocks; each field has shape (S,) (scenarios) or (s,) (batch).

    - ``equity``, ``maintenance_margin``: in the subaccount's own mode, after the shock.
    - ``maintenance_margin_ratio``: MM / E, nan where E ≤ 0.
    - ``shortfall``: what a deposit must bring to avoid liquidation, max(0, MM − E)
      (isolated: max(0, Σ_i max(0, MM_i − (A_i + u_i)) − C), see ``stress.py``).
    - ``deficit``: the loss beyond collateral, max(0, −E)
      (isolated: max(0, Σ_i max(0, −(A_i + u_i)) − C)).
    - ``liquidatable``: E ≤ MM with a position open (isolated: some open position has
      A_i + u_i ≤ MM_i).
    """

    equity: FloatArray
    maintenance_margin: FloatArray
    maintenance_margin_ratio: FloatArray
    shortfall: FloatArray
    deficit: FloatArray
    liquidatable: BoolArray
