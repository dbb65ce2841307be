"""Tiered (marginal) margin fractions and the chosen-leverage rule.

A tier table is ``(floor_j, imf_j, mmf_j)`` with floors ascending from 0. Requirements are marginal,
like a progressive tax: the slice of notional between ``floor_j`` and ``floor_{j+1}`` is charged at
tier j's fraction::

    IM(N) = Σ_j imf_j · clamp(N − floor_j, 0, floor_{j+1} − floor_j)      (MM likewise with mmf)

This equals the "maintenance deduction" form venues publish, ``N · rate_n − deduction_n`` for N in
tier n, with ``deduction_n = deduction_{n−1} + floor_n · (rate_n − rate_{n−1})`` and
``deduction_0 = 0`` (see ``deductions_from_tiers`` / ``tiers_from_deductions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.engine.arrays import ArrayLike, FloatArray


def fill_default_mmf(imf: ArrayLike, mmf: ArrayLike) -> FloatArray:
    """Maintenance fractions with every NaN replaced by ``imf / 2`` (margin.md's default).

    Shapes: any, equal; returns a new float64 array.
    """
    imf_a = np.asarray(imf, dtype=np.float64)
    mmf_a = np.array(mmf, dtype=np.float64)
    missing = np.isnan(mmf_a)
    mmf_a[missing] = imf_a[missing] / 2.0
    return mmf_a


@dataclass(frozen=True)
class TierTable:
    """Tier tables of n positions (or instruments), padded to T tiers. Shapes (n, T).

    - ``floors``: notional floors, row-wise ascending from 0; padding +inf.
    - ``imf`` / ``mmf``: initial / maintenance fractions in [0, 1); a NaN ``mmf`` means imf/2.
      Values in padded columns are ignored.

    Derived at construction (not to be passed): ``widths`` (floor_{j+1} − floor_j, +inf for a
    row's last tier, 0 in padding), ``im_at_floor`` / ``mm_at_floor`` (the requirement at each floor,
    0 in padding), ``mm_rate_deduction`` (n·T, 2): (mmf_j, deduction_j) with
    ``MM(N) = mmf_j·N − deduction_j`` on tier j, and ``row_offsets`` (n,) = row · T. Mutating the arrays in place after construction is not supported.
    """

    floors: FloatArray
    imf: FloatArray
    mmf: FloatArray
    widths: FloatArray = field(init=False, repr=False)
    im_at_floor: FloatArray = field(init=False, repr=False)
    mm_at_floor: FloatArray = field(init=False, repr=False)
    mm_rate_deduction: FloatArray = field(init=False, repr=False)
    row_offsets: npt.NDArray[np.intp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        floors = np.atleast_2d(np.asarray(self.floors, dtype=np.float64))
        shape = floors.shape
        imf = np.array(np.broadcast_to(np.asarray(self.imf, dtype=np.float64), shape))
        mmf = fill_default_mmf(imf, np.broadcast_to(np.asarray(self.mmf, dtype=np.float64), shape))
        padding = np.isinf(floors)
        imf[padding] = 0.0
        mmf[padding] = 0.0
        upper = np.full(shape, np.inf)
        upper[:, :-1] = floors[:, 1:]
        widths = np.zeros(shape)
        np.subtract(upper, floors, out=widths, where=~padding)
        finite = np.isfinite(widths)
        im_slice = np.where(finite, imf * np.where(finite, widths, 0.0), 0.0)
        mm_slice = np.where(finite, mmf * np.where(finite, widths, 0.0), 0.0)
        im_at = np.zeros(shape)
        mm_at = np.zeros(shape)
        np.cumsum(im_slice[:, :-1], axis=1, out=im_at[:, 1:])
        np.cumsum(mm_slice[:, :-1], axis=1, out=mm_at[:, 1:])
        im_at[padding] = 0.0
        mm_at[padding] = 0.0
        # (mmf_j, deduction_j) per (row, tier), flattened row-major, for MM(N) = mmf·N − deduction.
        deduction = np.where(padding, 0.0, mmf * np.where(padding, 0.0, floors) - mm_at)
        rate_deduction = np.stack((mmf, deduction), axis=-1).reshape(-1, 2)
        offsets = np.arange(shape[0], dtype=np.intp) * shape[1]
        for name, value in (
            ("floors", floors),
            ("imf", imf),
            ("mmf", mmf),
            ("widths", widths),
            ("im_at_floor", im_at),
            ("mm_at_floor", mm_at),
            ("mm_rate_deduction", rate_deduction),
            ("row_offsets", offsets),
        ):
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        """(n, T)."""
        n, t = self.floors.shape
        return int(n), int(t)

    def validate(self) -> None:
        """Raise ``ValueError`` unless every row is a well-formed marginal tier table."""
        floors, pad = self.floors, np.isinf(self.floors)
        if floors.shape[0] and floors.shape[1] == 0:
            raise ValueError("TierTable needs at least one tier per row")
        if floors.size and not bool(np.all(floors[:, 0] == 0.0)):
            raise ValueError("TierTable.floors must start at 0 in every row")
        if bool(np.any(pad[:, :-1] & ~pad[:, 1:])):
            raise ValueError("TierTable.floors padding (+inf) must come last in a row")
        real = ~pad
        with np.errstate(invalid="ignore"):  # inf − inf in padding, masked below
            steps = np.diff(floors, axis=1)
        if bool(np.any((steps <= 0) & real[:, 1:])):
            raise ValueError("TierTable.floors must be strictly ascending")
        for name, values in (("imf", self.imf), ("mmf", self.mmf)):
            if not bool(np.all(((values >= 0) & (values < 1)) | pad)):
                raise ValueError(f"TierTable.{name} must lie in [0, 1)")

    def take(self, index: ArrayLike) -> TierTable:
        """Rows ``index`` (e.g. instrument index of each position) as a new table."""
        idx = np.asarray(index)
        return TierTable(self.floors[idx], self.imf[idx], self.mmf[idx])

    @classmethod
    def concat(cls, tables: Sequence[TierTable]) -> TierTable:
        """Rows of several tables, padded to the widest T."""
        width = max((t.shape[1] for t in tables), default=1)

        def pad(values: FloatArray, fill: float) -> FloatArray:
            extra = width - values.shape[1]
            return np.pad(values, ((0, 0), (0, extra)), constant_values=fill)

        return cls(
            np.concatenate([pad(t.floors, np.inf) for t in tables]),
            np.concatenate([pad(t.imf, 0.0) for t in tables]),
            np.concatenate([pad(t.mmf, 0.0) for t in tables]),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[tuple[float, float, float | None]]]) -> TierTable:
        """One row per position: a list of ``(floor, imf, mmf or None)`` ascending from floor 0.

        Example: ``TierTable.from_rows([[(0, 0.10, 0.05), (1e6, 0.20, 0.10)]])``.
        """
        width = max((len(r) for r in rows), default=1)
        n = len(rows)
        floors = np.full((n, width), np.inf)
        imf = np.zeros((n, width))
        mmf = np.zeros((n, width))
        for i, row in enumerate(rows):
            for j, (floor, im, mm) in enumerate(row):
                floors[i, j] = floor
                imf[i, j] = im
                mmf[i, j] = np.nan if mm is None else mm
        table = cls(floors, imf, mmf)
        table.validate()
        return table

    @classmethod
    def uniform(cls, row: Sequence[tuple[float, float, float | None]], n: int) -> TierTable:
        """The same tier table for n positions."""
        return cls.from_rows([row] * n)


def tiered_margins(notional: FloatArray, tiers: TierTable) -> tuple[FloatArray, FloatArray]:
    """Marginal tiered requirements ``(IM(N), MM(N))`` without chosen leverage.

    ``IM(N) = Σ_j imf_j · clamp(N − floor_j, 0, width_j)``; MM likewise with mmf.
    Shapes: ``notional`` (..., n) with tiers (n, T) → two arrays (..., n). Units: settlement asset.
    """
    slices = notional[..., None] - tiers.floors
    np.maximum(slices, 0.0, out=slices)
    np.minimum(slices, tiers.widths, out=slices)
    return np.vecdot(slices, tiers.imf), np.vecdot(slices, tiers.mmf)


def inverse_leverage(leverage: FloatArray) -> FloatArray:
    """1 / leverage where a leverage is chosen (> 0), else 0. Shape (n,)."""
    inv = np.zeros_like(leverage)
    np.divide(1.0, leverage, out=inv, where=leverage > 0)
    return inv


def position_margins(
    notional: FloatArray, leverage: FloatArray, tiers: TierTable
) -> tuple[FloatArray, FloatArray]:
    """Per-position ``(IM_i, MM_i)`` of the standard model.

    ``IM_i = max(IM(N_i), N_i / leverage_i)`` (the second term only when a leverage is chosen);
    ``MM_i = MM(N_i)`` never depends on leverage. Shapes: notional (..., n), leverage (n,).
    """
    im, mm = tiered_margins(notional, tiers)
    np.maximum(im, notional * inverse_leverage(leverage), out=im)
    return im, mm


def deductions_from_tiers(floors: ArrayLike, fractions: ArrayLike) -> FloatArray:
    """The venue-style deductions of a marginal tier table (one instrument, shape (T,)).

    ``deduction_0 = 0``, ``deduction_n = deduction_{n−1} + floor_n · (rate_n − rate_{n−1})``, so that
    ``requirement(N) = N · rate_n − deduction_n`` for N in tier n.
    """
    f = np.asarray(floors, dtype=np.float64)
    r = np.asarray(fractions, dtype=np.float64)
    steps = np.zeros_like(f)
    steps[1:] = f[1:] * np.diff(r)
    return np.cumsum(steps)


def tiers_from_deductions(
    floors: ArrayLike,
    rates: ArrayLike,
    deductions: ArrayLike,
    *,
    tolerance: float = 1e-6,
) -> FloatArray:
    """Check a venue's ``N · rate_n − deduction_n`` table and return its marginal fractions.

    The marginal fraction of tier n is ``rate_n`` itself; the table is loadable as is exactly when
    the published deductions are the continuous ones (``deductions_from_tiers``). Raises
    ``ValueError`` if a published deduction differs from the implied one by more than
    ``tolerance`` (settlement asset). Shapes (T,).
    """
    rates_a = np.asarray(rates, dtype=np.float64)
    implied = deductions_from_tiers(floors, rates_a)
    published = np.asarray(deductions, dtype=np.float64)
    bad = np.flatnonzero(np.abs(implied - published) > tolerance)
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"tier {j}: published deduction {published[j]} is not the continuous {implied[j]}; "
            "the table's requirement would jump at that floor"
        )
    return rates_a.copy()
