"""Scaling a basket (``POST /v1/pretrade/max-scale``): the arithmetic of its lot steps and the
search over them, pure — the caller supplies the check as ``passes``.

At factor ``s`` leg ``i`` (size ``q_i``, lot ``l_i``) holds ``n_i(s) = floor(s · q_i / l_i)``
lots, so the basket changes only at the *steps* ``s = n · l_i / q_i`` (n = 1, 2, …) and is the
same on ``[step, next step)``. Arithmetic is in ``Fraction``: steps such as ``n / 3000`` have
no finite decimal, and the search must compare them exactly.

A basket is only searched with every leg at least one lot: a spread missing a leg is not the
same hedge, so the least candidate factor is ``first_full = max_i l_i / q_i``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

LADDER = 8
"""Probes spread evenly from the top of the range down before the bisection: the topmost
passing one (not merely some passing one) seeds it, so a basket the check is not monotone on
(see ``search``) still gets the upper edge of its highest passing stretch wider than 1/8 of
the range. Costs at most ``LADDER − 3`` evaluations over a plain bisection."""
SCALE_DIGITS = 18
"""Fractional digits a reported factor keeps when its step has a finite expansion this short
(the request's decimals have at most 18, so a factor can be sent back as ``max_scale``)."""

Lots = tuple[int, ...]


@dataclass(frozen=True)
class Ray:
    """The legs' sizes ``q_i`` and lots ``l_i``, as exact fractions."""

    sizes: tuple[Fraction, ...]
    lots: tuple[Fraction, ...]

    @classmethod
    def of(cls, sizes: list[Decimal], lots: list[Decimal]) -> Ray:
        return cls(tuple(map(Fraction, sizes)), tuple(map(Fraction, lots)))

    def lots_at(self, scale: Fraction) -> Lots:
        """``n_i(s) = floor(s · q_i / l_i)`` for every leg."""
        return tuple(
            math.floor(scale * q / lot) for q, lot in zip(self.sizes, self.lots, strict=True)
        )

    @property
    def first_full(self) -> Fraction:
        """The least factor at which every leg holds at least one lot: ``max_i l_i / q_i``."""
        return max(lot / q for q, lot in zip(self.sizes, self.lots, strict=True))

    def snap(self, scale: Fraction) -> Fraction:
        """The step at or below ``scale``: the least factor giving the same basket,
        ``max_i n_i(s) · l_i / q_i`` (every leg holds a lot: ``scale ≥ first_full``)."""
        lots = self.lots_at(scale)
        return max(n * lot / q for n, q, lot in zip(lots, self.sizes, self.lots, strict=True))

    def next_step(self, scale: Fraction) -> Fraction:
        """The least factor above ``scale`` at which some leg gains a lot:
        ``min_i (n_i(s) + 1) · l_i / q_i``."""
        lots = self.lots_at(scale)
        return min((n + 1) * lot / q for n, q, lot in zip(lots, self.sizes, self.lots, strict=True))


@dataclass(frozen=True)
class Found:
    answer: Fraction | None
    """The step whose basket passes; None when no basket with every leg a lot does."""
    step: Fraction | None
    """The next step, whose basket fails; None when ``max_scale`` itself passes."""


def search(ray: Ray, max_scale: Fraction, passes: Callable[[Lots], bool]) -> Found:
    """The largest step ``b ≤ max_scale`` whose basket passes, and the next step ``c``, whose
    basket fails.

    Bisection over the steps needs the check to be monotone along the ray: passing at a step
    implies passing at every smaller one down to ``first_full`` (more size means more margin,
    fees, notional, depth walked). That can break where the subaccount is already over a limit
    and the basket reduces an existing position: a small scale still fails, a larger one
    passes, a larger one again (a flip) fails. Whatever the check does, the result holds by
    construction, since the bracket keeps a passing ``lo`` and a failing ``hi`` until they are
    adjacent steps: the check accepts at ``answer`` and rejects at ``step``. The ``LADDER``
    probes, topmost first, seed the bracket with the highest passing stretch they see; one
    narrower than a rung may still be missed — then the answer is the edge of a lower stretch.

    Each bisection step probes the step at or below the middle of ``[next_step(lo), hi]``, a
    step strictly between ``lo`` and ``hi``; either way the bracket at least halves, so it ends
    after about log2(range / smallest gap between steps) probes (the decimals' 18 digits bound
    that gap).
    """
    if passes(ray.lots_at(max_scale)):
        return Found(max_scale, None)
    start = ray.first_full
    top = hi = ray.snap(max_scale)  # fails: the same basket as max_scale
    lo: Fraction | None = None
    for rung in range(LADDER - 1, -1, -1):  # rung 0 is ``first_full`` itself
        probe = ray.snap(start + (top - start) * rung / LADDER)
        if probe >= hi:
            continue
        if passes(ray.lots_at(probe)):
            lo = probe
            break
        hi = probe
    if lo is None:
        return Found(None, hi)  # hi == first_full: the least full basket fails
    while (after := ray.next_step(lo)) < hi:
        probe = ray.snap((after + hi) / 2)
        if passes(ray.lots_at(probe)):
            lo = probe
        else:
            hi = probe
    return Found(lo, hi)


def as_decimal(answer: Fraction, step: Fraction) -> Decimal:
    """A decimal factor with the basket of ``answer``: ``answer`` itself when its expansion
    ends within ``SCALE_DIGITS`` places, else the decimal with the fewest places in
    ``[answer, step)``, which gives every leg the same lots."""
    exact = answer * 10**SCALE_DIGITS
    if exact.denominator == 1:
        return Decimal(exact.numerator).scaleb(-SCALE_DIGITS).normalize()
    places = 0
    while True:
        up = math.ceil(answer * 10**places)
        if Fraction(up, 10**places) < step:
            return Decimal(up).scaleb(-places)
        places += 1
