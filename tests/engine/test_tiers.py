"""Tiered (marginal) requirements and chosen leverage — expected values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine import (
    TierTable,
    deductions_from_tiers,
    fill_default_mmf,
    position_margins,
    tiered_margins,
    tiers_from_deductions,
)
from tests.engine.strategies import PROPERTY

# floors 0 / 1,000,000 / 5,000,000 at 2% / 5% / 10% initial, half that maintenance.
THREE_TIERS = [(0.0, 0.02, 0.01), (1_000_000.0, 0.05, 0.025), (5_000_000.0, 0.10, 0.05)]


def margins(notional: float, rows=THREE_TIERS, leverage: float = float("nan")):
    table = TierTable.from_rows([rows])
    im, mm = position_margins(np.array([notional]), np.array([leverage]), table)
    return float(im[0]), float(mm[0])


def test_notional_crossing_two_tier_boundaries():
    # N = 100 BTC × 70,000 = 7,000,000 reaches into the third tier.
    # IM = 0.02·1,000,000 + 0.05·(5,000,000 − 1,000,000) + 0.10·(7,000,000 − 5,000,000)
    #    = 20,000 + 200,000 + 200,000 = 420,000
    # MM = 0.01·1,000,000 + 0.025·4,000,000 + 0.05·2,000,000 = 10,000 + 100,000 + 100,000 = 210,000
    im, mm = margins(100 * 70_000.0)
    assert im == pytest.approx(420_000.0, rel=1e-12)
    assert mm == pytest.approx(210_000.0, rel=1e-12)


def test_venue_deduction_form_gives_the_same_number():
    # Deductions: d0 = 0, d1 = 1,000,000·(0.05 − 0.02) = 30,000,
    #             d2 = 30,000 + 5,000,000·(0.10 − 0.05) = 280,000.
    # IM(7,000,000) = 7,000,000·0.10 − 280,000 = 420,000, as the marginal sum above.
    floors = [0.0, 1_000_000.0, 5_000_000.0]
    deductions = deductions_from_tiers(floors, [0.02, 0.05, 0.10])
    np.testing.assert_allclose(deductions, [0.0, 30_000.0, 280_000.0])
    assert 7_000_000 * 0.10 - deductions[2] == pytest.approx(420_000.0)
    # A published table with the continuous deductions loads as is...
    np.testing.assert_allclose(
        tiers_from_deductions(floors, [0.02, 0.05, 0.10], [0, 30_000, 280_000]), [0.02, 0.05, 0.10]
    )
    # ...and one whose requirement would jump at a floor is refused.
    with pytest.raises(ValueError, match="tier 2"):
        tiers_from_deductions(floors, [0.02, 0.05, 0.10], [0, 30_000, 250_000])


def test_within_first_tier_and_exactly_on_a_floor():
    # N = 400,000: IM = 0.02·400,000 = 8,000; MM = 4,000.
    assert margins(400_000.0) == pytest.approx((8_000.0, 4_000.0))
    # N = 1,000,000 (the floor itself): IM = 20,000 from tier 0 only; MM = 10,000.
    assert margins(1_000_000.0) == pytest.approx((20_000.0, 10_000.0))


def test_chosen_leverage_above_the_tier_requirement_binds():
    # 10 BTC at 65,000: N = 650,000. One tier 10%/5%: IM(N) = 65,000.
    # Leverage 5: N/5 = 130,000 > 65,000 → IM = 130,000. MM ignores leverage: 0.05·650,000 = 32,500.
    im, mm = margins(650_000.0, [(0.0, 0.10, 0.05)], leverage=5.0)
    assert im == pytest.approx(130_000.0)
    assert mm == pytest.approx(32_500.0)


def test_chosen_leverage_below_the_tier_requirement_does_not():
    # Leverage 20: N/20 = 32,500 < IM(N) = 65,000 → IM = 65,000; MM still 32,500.
    im, mm = margins(650_000.0, [(0.0, 0.10, 0.05)], leverage=20.0)
    assert im == pytest.approx(65_000.0)
    assert mm == pytest.approx(32_500.0)


@pytest.mark.parametrize("none", [0.0, float("nan")])
def test_zero_or_nan_leverage_means_none_chosen(none: float):
    assert margins(650_000.0, [(0.0, 0.10, 0.05)], leverage=none) == pytest.approx(
        (65_000.0, 32_500.0)
    )


def test_omitted_maintenance_fraction_is_half_the_initial():
    # imf 0.10 with mmf omitted → mmf 0.05: MM(650,000) = 32,500.
    table = TierTable.from_rows([[(0.0, 0.10, None)]])
    assert float(table.mmf[0, 0]) == 0.05
    _, mm = tiered_margins(np.array([650_000.0]), table)
    assert float(mm[0]) == pytest.approx(32_500.0)
    np.testing.assert_array_equal(
        fill_default_mmf([0.1, 0.2], [np.nan, 0.07]), np.array([0.05, 0.07])
    )


def test_padded_rows_of_different_lengths():
    table = TierTable.from_rows([[(0.0, 0.10, 0.05)], THREE_TIERS])
    assert table.shape == (2, 3)
    im, _ = tiered_margins(np.array([7_000_000.0, 7_000_000.0]), table)
    # Row 0: 0.10·7,000,000 = 700,000; row 1: 420,000 (worked above).
    np.testing.assert_allclose(im, [700_000.0, 420_000.0])


def test_tier_validation():
    with pytest.raises(ValueError, match="start at 0"):
        TierTable.from_rows([[(10.0, 0.1, 0.05)]])
    with pytest.raises(ValueError, match="ascending"):
        TierTable.from_rows([[(0.0, 0.1, 0.05), (0.0, 0.2, 0.1)]])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        TierTable.from_rows([[(0.0, 1.5, 0.05)]])


tier_rows = st.lists(
    st.tuples(st.floats(1e3, 1e7), st.floats(0.001, 0.5), st.floats(0.0005, 0.25)),
    min_size=1,
    max_size=4,
).map(
    lambda raw: [
        (floor, imf, min(mmf, imf))
        for floor, (_, imf, mmf) in zip(
            np.concatenate([[0.0], np.cumsum([r[0] for r in raw[1:]])]), raw, strict=True
        )
    ]
)


@PROPERTY
@given(
    rows=tier_rows,
    sizes=st.lists(st.floats(0.0, 2e8), min_size=2, max_size=8),
    leverage=st.one_of(st.just(float("nan")), st.floats(1.0, 100.0)),
)
def test_no_requirement_falls_as_notional_grows(rows, sizes, leverage):
    notional = np.sort(np.array(sizes))
    table = TierTable.from_rows([rows] * len(notional))
    im, mm = position_margins(notional, np.full(len(notional), leverage), table)
    assert np.all(np.diff(im) >= -1e-9 * np.maximum(im[1:], 1.0))
    assert np.all(np.diff(mm) >= -1e-9 * np.maximum(mm[1:], 1.0))


@PROPERTY
@given(rows=tier_rows, notional=st.floats(0.0, 1e8))
def test_marginal_sum_equals_deduction_form(rows, notional):
    floors = [r[0] for r in rows]
    rates = [r[1] for r in rows]
    tier = int(np.searchsorted(floors, notional, side="right") - 1)
    deduction = deductions_from_tiers(floors, rates)[tier]
    im, _ = tiered_margins(np.array([notional]), TierTable.from_rows([rows]))
    assert float(im[0]) == pytest.approx(notional * rates[tier] - deduction, rel=1e-9, abs=1e-6)


def test_binance_style_bracket_table_from_the_docs():
    # Brackets 0 / 50,000 / 600,000 at 0.40% / 0.50% / 0.65%, published cum 0 / 50 / 950:
    # 50 = 50,000·(0.005 − 0.004); 950 = 50 + 600,000·(0.0065 − 0.005).
    floors = [0.0, 50_000.0, 600_000.0]
    mmf = tiers_from_deductions(floors, [0.004, 0.005, 0.0065], [0, 50, 950])
    table = TierTable.from_rows(
        [list(zip(floors, [1 / 125, 1 / 100, 1 / 75], mmf.tolist(), strict=True))]
    )
    # N = 1,000,000: venue 1,000,000·0.0065 − 950 = 5,550;
    # marginal 0.004·50,000 + 0.005·550,000 + 0.0065·400,000 = 200 + 2,750 + 2,600 = 5,550.
    _, mm = tiered_margins(np.array([1_000_000.0]), table)
    assert float(mm[0]) == pytest.approx(5_550.0)


def test_hyperliquid_style_tiers_from_the_docs():
    # (0, 40×), (150,000,000, 20×): imf 0.025 / 0.05, mmf half: 0.0125 / 0.025;
    # maintenance deduction of tier 1 = 150,000,000·(0.025 − 0.0125) = 1,875,000.
    table = TierTable.from_rows([[(0.0, 1 / 40, None), (150_000_000.0, 1 / 20, None)]])
    np.testing.assert_allclose(table.mmf[0], [0.0125, 0.025])
    deductions = deductions_from_tiers([0.0, 150_000_000.0], table.mmf[0])
    assert float(deductions[1]) == pytest.approx(1_875_000.0)
