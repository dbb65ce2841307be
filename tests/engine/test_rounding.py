"""The Decimal boundary: conservative directions, float-noise snapping, no fake cents."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.types import format_decimal
from app.engine import (
    SUMMARY_FIELDS,
    Direction,
    conservative_free_collateral,
    equity_to_decimal,
    liquidation_price_to_decimal,
    margin_summary,
    requirement_to_decimal,
    snap_tolerance,
    summary_to_decimals,
    to_decimal,
    to_floats,
)
from app.engine.rounding import _to_decimal_exact, to_decimal_text
from tests.engine.helpers import Leg, positions, risk, usdc
from tests.engine.strategies import PROPERTY, books


def test_float_noise_does_not_create_fake_cents():
    # 0.1 · 650,000 happens to be exact in float64, but 0.1 · 0.2 · 3,250,000 (an imf times a
    # weight times a notional, say) is 65000.000000000015; the amount is 65,000.
    noisy = 0.1 * 0.2 * 3_250_000
    assert noisy == 65_000.000000000015
    assert requirement_to_decimal(noisy) == Decimal("65000")
    assert str(requirement_to_decimal(noisy)) == "65000"
    assert equity_to_decimal(noisy) == Decimal("65000")
    # 0.1 + 0.2 = 0.30000000000000004 → 0.3 either way; 1e-17 of noise → 0.
    assert requirement_to_decimal(0.1 + 0.2) == Decimal("0.3")
    assert requirement_to_decimal(1e-17) == Decimal("0")
    assert str(equity_to_decimal(-1e-17)) == "0"


def test_real_fractions_round_conservatively():
    # 65,000.0000004 is 0.4 micro-units past the grid, far beyond noise:
    # a requirement rounds up to 65,000.000001, equity down to 65,000.
    assert requirement_to_decimal(65_000.0000004) == Decimal("65000.000001")
    assert equity_to_decimal(65_000.0000004) == Decimal("65000")
    # 1/3 → up 0.333334, down 0.333333; −1/3 → up −0.333333, down −0.333334.
    assert requirement_to_decimal(1 / 3) == Decimal("0.333334")
    assert equity_to_decimal(1 / 3) == Decimal("0.333333")
    assert requirement_to_decimal(-1 / 3) == Decimal("-0.333333")
    assert equity_to_decimal(-1 / 3) == Decimal("-0.333334")
    # 2 decimals: 1.005 is 1.00499999999999989… in binary, not noise-close to 1.00 or 1.01.
    assert to_decimal(1.005, Direction.UP, 2) == Decimal("1.01")
    assert to_decimal(1.005, Direction.DOWN, 2) == Decimal("1")
    assert str(to_decimal(65_000.5, Direction.DOWN)) == "65000.5"


def test_liquidation_price_directions():
    # 550,000 / 9.5 = 57,894.736842105…: a long's price rounds up (warns earlier), a short's down.
    price = 550_000 / 9.5
    assert liquidation_price_to_decimal(price, size=10) == Decimal("57894.736843")
    assert liquidation_price_to_decimal(price, size=-10) == Decimal("57894.736842")
    assert liquidation_price_to_decimal(float("nan"), size=1) is None
    # Snapping applies too: 73,500 computed with noise stays 73,500.
    assert liquidation_price_to_decimal(73_500.00000000001, size=-1) == Decimal("73500")


def test_money_is_never_nan():
    with pytest.raises(ValueError):
        equity_to_decimal(float("nan"))


def test_snap_tolerance_is_a_few_hundred_ulps_and_capped():
    # ulp(65,000) = 2^-37 ≈ 7.28e-12, so 512 ulps ≈ 3.7e-9: far below the 1e-6 grid.
    assert snap_tolerance(65_000.0) == pytest.approx(512 * 2.0**-37)
    assert snap_tolerance(0.5) == pytest.approx(1e-12)  # the absolute floor near zero
    assert snap_tolerance(1e12) == pytest.approx(0.25e-6)  # never a quarter unit or more


def test_a_value_a_twentieth_of_a_unit_from_the_grid_is_not_snapped():
    # Regression: 110,000 / 2.1 = 52,380.952380952… sits 4.8e-8 below 52,380.952381. A 1e-12
    # relative tolerance (5.2e-8 here) snapped it up; rounded down (a short's liquidation
    # price) it must stay 52,380.952380.
    assert to_decimal(110_000 / 2.1, Direction.DOWN) == Decimal("52380.95238")
    assert to_decimal(110_000 / 2.1, Direction.UP) == Decimal("52380.952381")


def test_summary_to_decimals():
    # Cross: 100,000 USDC; long 3 BTC at 65,000.1 with one tier 10%/5% and reserved 1/3:
    # IM = 0.1·195,000.3 + 1/3 = 19,500.03 + 0.333… → 19,500.363334 (up);
    # E = 100,000 → F = 100,000 − 19,500.363334 = 80,499.636666.
    s = margin_summary(positions(Leg(3, 65_000.1)), usdc(100_000), risk(), "cross", 1 / 3)
    out = summary_to_decimals(s, "cross")
    assert out["initial_margin"] == Decimal("19500.363334")
    assert out["equity"] == Decimal("100000")
    assert out["free_collateral"] == Decimal("80499.636666")
    assert out["withdrawable"] == Decimal("80499.636666")
    assert isinstance(out["leverage"], float)
    assert tuple(out) == SUMMARY_FIELDS


def test_decimals_in():
    assert to_floats([Decimal("65000.5"), "0.1", 2]).tolist() == [65_000.5, 0.1, 2.0]


@PROPERTY
@given(book=books())
def test_rounding_never_turns_a_failing_book_into_a_passing_one(book):
    s = margin_summary(book.positions(), book.collateral(), risk(), "cross")
    forgiven = snap_tolerance(s.equity) + snap_tolerance(s.initial_margin)
    if s.equity - s.initial_margin < -forgiven:  # failing by more than snapping may forgive
        assert conservative_free_collateral(s.equity, s.initial_margin) < 0
        assert summary_to_decimals(s, "cross")["free_collateral"] < 0


@PROPERTY
@given(
    equity=st.decimals(-(10**7), 10**7, places=9, allow_nan=False, allow_infinity=False),
    gap=st.decimals(Decimal("0.000000001"), 1000, places=9),
)
def test_an_exactly_failing_amount_stays_failing(equity, gap):
    # Requirement exceeds equity by at least 1e-9 in exact decimals. Converted to float and back
    # through the conservative rule, the decision is still "fail" unless float64 cannot tell the
    # two apart (gap below the snap tolerance).
    requirement = equity + gap
    e, r = float(equity), float(requirement)
    if float(gap) > snap_tolerance(e) + snap_tolerance(r) + 1e-16 * (abs(e) + abs(r)):
        assert conservative_free_collateral(e, r) < 0


def _near_the_snap_edge(grid: int, decimals: int, ulps: int) -> float:
    """A float ``ulps`` units in the last place beyond the snap tolerance of a grid point."""
    point = grid / 10**decimals
    edge = point + snap_tolerance(point, decimals)
    return edge + ulps * math.ulp(edge)


@PROPERTY
@given(
    st.one_of(
        st.floats(min_value=-1e10, max_value=1e10, allow_nan=False),
        st.integers(-(10**12), 10**12).map(lambda n: n / 10**6),
        st.integers(-(10**9), 10**9).map(lambda n: n * 0.02),
        st.builds(
            _near_the_snap_edge,
            st.integers(-(10**14), 10**14),
            st.sampled_from([0, 2, 6]),
            st.integers(-8, 8),
        ),
    ),
    st.sampled_from([0, 2, 6, 8]),
    st.sampled_from(list(Direction)),
)
def test_the_fast_path_gives_exactly_the_rule(value, decimals, direction):
    """Floats converted by the float64 fast path (no Decimal arithmetic) give the full rule's
    answer, digit for digit, around every boundary of that path: magnitude 2^31, more places
    than the grid, exponent notation, and a few ulps either side of the snap tolerance."""
    exact = _to_decimal_exact(value, direction, decimals)
    assert str(to_decimal(value, direction, decimals)) == str(exact)
    assert to_decimal_text(value, direction, decimals) == format_decimal(exact)
