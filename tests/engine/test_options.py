"""Options: Black-76 at a zero rate, greeks, standard margin and the portfolio grid (margin.md).

Expected numbers are worked from margin.md's formulas by hand or with a calculator (a scalar
Black-76 on ``statistics.NormalDist``, ``black76_by_hand`` in tests/engine/helpers.py —
independent of the engine's vectorised Φ), never read off the engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine import (
    Collateral,
    OptionTerms,
    RiskParameters,
    black76,
    black76_value,
    margin_summary,
    normal_cdf,
    option_portfolio_charges,
    option_values,
    portfolio_charges,
    short_option_margins,
    stressed_option_value_changes,
    volatility_moves,
    years_to_expiry,
)
from tests.engine.helpers import BTC, ETH, Leg, black76_by_hand, positions, risk, usdc
from tests.engine.strategies import PROPERTY, books

SPOT = 65_000.0
THIRTY_DAYS = 30 / 365
NO_TIERS = ((0.0, 0.0, 0.0),)  # an option row carries no tiers


# --- Black-76 ----------------------------------------------------------------------------------


def test_textbook_value_at_the_money():
    # F = K = 20, σ = 0.25, T = 4/12, zero rate: d1 = σ·√T/2 = 0.0721688, Φ(d1) = 0.5287662,
    # call = put = 20·(2·Φ(d1) − 1) = 1.1506482. (Hull's Black example discounts this at 9% for
    # 4 months: 1.1506482·e^−0.03 = 1.1166.)
    call = black76(True, 20.0, 20.0, 0.25, 4 / 12)
    put = black76(False, 20.0, 20.0, 0.25, 4 / 12)
    assert float(call.value) == pytest.approx(1.1506482, abs=1e-7)
    assert float(put.value) == pytest.approx(1.1506482, abs=1e-7)
    assert float(call.value) * math.exp(-0.03) == pytest.approx(1.1166, abs=1e-4)
    # delta Φ(d1) and Φ(d1) − 1; gamma φ(d1)/(S·σ·√T) = 0.3979047/(20·0.1443376) = 0.1378382;
    # vega S·φ(d1)·√T/100 = 20·0.3979047·0.5773503/100 = 0.0459461;
    # theta −S·φ(d1)·σ/(2·√T)/365 = −20·0.3979047·0.25/(2·0.5773503)/365 = −0.0047205.
    assert float(call.delta) == pytest.approx(0.5287662, abs=1e-7)
    assert float(put.delta) == pytest.approx(0.5287662 - 1, abs=1e-7)
    for greeks in (call, put):
        assert float(greeks.gamma) == pytest.approx(0.1378382, abs=1e-7)
        assert float(greeks.vega) == pytest.approx(0.0459461, abs=1e-7)
        assert float(greeks.theta) == pytest.approx(-0.0047205, abs=1e-7)


def test_btc_call_worked_in_the_methodology():
    # docs/methodology.md "Options": S = 65,000, K = 70,000, σ = 0.5, 30 days.
    # d1 = (ln(65/70) + 0.125·30/365)/(0.5·√(30/365)) = −0.4453155, d2 = −0.5886611,
    # Φ(d1) = 0.3280459, Φ(d2) = 0.2780443, V = 65,000·Φ(d1) − 70,000·Φ(d2) = 1,859.88.
    greeks = black76(True, SPOT, 70_000.0, 0.5, THIRTY_DAYS)
    assert float(greeks.value) == pytest.approx(1_859.8788, abs=1e-4)
    assert float(greeks.delta) == pytest.approx(0.3280459, abs=1e-7)
    assert float(greeks.gamma) == pytest.approx(3.877492e-5, rel=1e-6)
    assert float(greeks.vega) == pytest.approx(67.32495, abs=1e-5)
    assert float(greeks.theta) == pytest.approx(-56.10412, abs=1e-5)


def test_normal_cdf_matches_the_standard_library_to_rounding():
    x = np.linspace(-12.0, 12.0, 24_001)
    expected = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    np.testing.assert_allclose(normal_cdf(x), expected, rtol=0, atol=5e-16)
    assert float(normal_cdf(0.0)) == 0.5
    assert float(normal_cdf(1.96)) == pytest.approx(0.9750021048517795, abs=1e-16)
    assert float(normal_cdf(-40.0)) == 0.0
    assert float(normal_cdf(40.0)) == 1.0


prices = st.floats(1.0, 1e6)
volatilities = st.floats(0.01, 3.0)
years = st.floats(1e-4, 5.0)


@PROPERTY
@given(spot=prices, strike=prices, sigma=volatilities, t=years)
def test_put_call_parity(spot, strike, sigma, t):
    # At a zero rate C − P = S − K, whatever σ and T.
    call = float(black76_value(True, spot, strike, sigma, t))
    put = float(black76_value(False, spot, strike, sigma, t))
    assert call - put == pytest.approx(spot - strike, abs=1e-12 * (spot + strike))
    assert call >= max(0.0, spot - strike)
    assert put >= max(0.0, strike - spot)


@PROPERTY
@given(
    call=st.booleans(),
    moneyness=st.floats(0.6, 1.6),
    sigma=st.floats(0.1, 1.5),
    t=st.floats(0.02, 2.0),
)
def test_greeks_are_the_derivatives_of_value(call, moneyness, sigma, t):
    strike = 100.0
    spot = strike * moneyness
    greeks = black76(call, spot, strike, sigma, t)
    h = 1e-5 * spot * sigma * math.sqrt(t)  # small against the distribution's width
    up = black76(call, spot + h, strike, sigma, t)
    down = black76(call, spot - h, strike, sigma, t)
    assert float(greeks.delta) == pytest.approx(float(up.value - down.value) / (2 * h), abs=1e-8)
    assert float(greeks.gamma) == pytest.approx(
        float(up.delta - down.delta) / (2 * h), rel=1e-5, abs=1e-9
    )
    dv = 1e-5
    vega_numeric = (
        float(black76_value(call, spot, strike, sigma + dv, t))
        - float(black76_value(call, spot, strike, sigma - dv, t))
    ) / (2 * dv)
    assert float(greeks.vega) == pytest.approx(vega_numeric / 100, rel=1e-6, abs=1e-9)
    dt = 1e-6
    theta_numeric = (
        float(black76_value(call, spot, strike, sigma, t - dt))
        - float(black76_value(call, spot, strike, sigma, t + dt))
    ) / (2 * dt)
    assert float(greeks.theta) == pytest.approx(theta_numeric / 365, rel=1e-5, abs=1e-9)


def test_matches_the_reference_on_a_spread_of_inputs():
    rng = np.random.default_rng(12)
    call = rng.random(300) < 0.5
    spot = rng.uniform(10, 100_000, 300)
    strike = spot * rng.uniform(0.3, 3.0, 300)
    sigma = rng.uniform(0.05, 2.0, 300)
    t = rng.uniform(0.0, 3.0, 300)
    expected = [
        black76_by_hand(bool(c), s, k, v, y)
        for c, s, k, v, y in zip(call, spot, strike, sigma, t, strict=True)
    ]
    np.testing.assert_allclose(
        black76_value(call, spot, strike, sigma, t), expected, rtol=1e-12, atol=1e-9
    )


def test_intrinsic_value_and_greeks_at_expiry():
    call = np.array([True, True, True, False, False, False])
    spot = np.array([70.0, 60.0, 65.0, 60.0, 70.0, 65.0])
    strike = 65.0
    for t, sigma in ((0.0, 0.5), (-0.1, 0.5), (0.5, 0.0)):  # expired, past expiry, σ = 0
        greeks = black76(call, spot, strike, sigma, t)
        assert greeks.value.tolist() == [5.0, 0.0, 0.0, 5.0, 0.0, 0.0]
        # In the money: ±1; out of the money and at the strike: 0.
        assert greeks.delta.tolist() == [1.0, 0.0, 0.0, -1.0, 0.0, 0.0]
        assert greeks.gamma.tolist() == [0.0] * 6
        assert greeks.vega.tolist() == [0.0] * 6
        assert greeks.theta.tolist() == [0.0] * 6


def test_years_to_expiry_never_negative():
    now = 1_700_000_000.0
    assert years_to_expiry([now + 365 * 86_400, now + 86_400 * 36.5, now - 5], now).tolist() == [
        1.0,
        0.1,
        0.0,
    ]


# --- standard margin ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "strike", "im", "mm"),
    [
        # S = 65,000, short 2: MM = 2·0.075·65,000 = 9,750 unless a put's cap bites.
        (True, 60_000.0, 19_500.0, 9_750.0),  # ITM: OTM 0, 2·max(9,750, 6,500)
        (True, 68_000.0, 13_500.0, 9_750.0),  # OTM 3,000: 2·max(6,750, 6,500)
        (True, 70_000.0, 13_000.0, 9_750.0),  # OTM 5,000: 2·max(4,750, 6,500), the minimum
        (False, 70_000.0, 19_500.0, 9_750.0),  # ITM put: OTM 0
        (False, 62_000.0, 13_500.0, 9_750.0),  # OTM 3,000
        (False, 60_000.0, 13_000.0, 9_750.0),  # OTM 5,000: the minimum
        (False, 6_000.0, 12_000.0, 9_750.0),  # cap 2·6,000 = 12,000 < minimum 13,000
        (False, 4_000.0, 8_000.0, 8_000.0),  # cap 8,000 below both
    ],
)
def test_short_option_standard_margin(call, strike, im, mm):
    got_im, got_mm = short_option_margins(-2.0, 1.0, call, strike, SPOT, risk())
    assert float(got_im) == pytest.approx(im, abs=1e-9)
    assert float(got_mm) == pytest.approx(mm, abs=1e-9)


def test_long_options_need_no_margin_and_contract_size_scales():
    im, mm = short_option_margins([3.0, -3.0], 0.1, True, 70_000.0, SPOT, risk())
    # Short 3 × 0.1 BTC, OTM 5,000: 0.3·6,500 = 1,950 IM, 0.3·4,875 = 1,462.5 MM.
    assert im.tolist() == pytest.approx([0.0, 1_950.0])
    assert mm.tolist() == pytest.approx([0.0, 1_462.5])


def test_option_rates_come_from_the_parameters():
    r = RiskParameters(option_im_base=0.2, option_im_min=0.05, option_mm_base=0.1).arrays(("BTC",))
    im, mm = short_option_margins(-1.0, 1.0, True, 70_000.0, SPOT, r)
    assert (float(im), float(mm)) == pytest.approx((0.2 * SPOT - 5_000.0, 0.1 * SPOT))


# --- books: option rows of Positions -----------------------------------------------------------


def _book(*rows: tuple[float, float, tuple[bool, float] | None], sigma: float = 0.5):
    """Rows (size, mark, (is_call, strike) or None for a BTC perpetual), all on BTC."""
    legs = [
        Leg(size=q, mark=m, underlying=BTC, tiers=NO_TIERS if option else ((0.0, 0.10, 0.05),))
        for q, m, option in rows
    ]
    terms = OptionTerms.create(
        is_option=[option is not None for _, _, option in rows],
        is_call=[option is not None and option[0] for _, _, option in rows],
        strike=[option[1] if option else 1.0 for _, _, option in rows],
        time_to_expiry=THIRTY_DAYS,
        volatility=sigma,
        underlying_price=SPOT,
    )
    return positions(*legs), terms


CALL_70K = black76_by_hand(True, SPOT, 70_000.0, 0.5, THIRTY_DAYS)  # 1,859.88
CALL_65K = black76_by_hand(True, SPOT, 65_000.0, 0.5, THIRTY_DAYS)  # 3,713.95
PUT_65K = black76_by_hand(False, SPOT, 65_000.0, 0.5, THIRTY_DAYS)  # 3,713.95


def test_option_values_are_delta_adjusted():
    book, terms = _book((1.0, SPOT, None), (-2.0, CALL_70K, (True, 70_000.0)))
    values = option_values(book, terms, risk())
    delta = 0.3280459  # Φ(d1) of the 70,000 call
    assert values.value.tolist() == pytest.approx([0.0, -2 * CALL_70K])
    assert values.delta.tolist() == pytest.approx([0.0, -2 * delta], abs=1e-7)
    assert values.dollar_delta.tolist() == pytest.approx([0.0, -2 * delta * SPOT], abs=1e-2)
    assert values.notional.tolist() == pytest.approx([0.0, 2 * delta * SPOT], abs=1e-2)
    assert values.initial_margin.tolist() == pytest.approx([0.0, 13_000.0])
    assert values.maintenance_margin.tolist() == pytest.approx([0.0, 9_750.0])


def test_volatility_moves_shrink_with_expiry():
    # (30/max(days, 1))^0.3: 1 at 30 days, 4^0.3 = 1.5157 at 7.5 days, 30^0.3 = 2.7742 below a day.
    down, up = volatility_moves(np.array([30, 7.5, 0.2, 0.0]) / 365, risk())
    assert down.tolist() == pytest.approx([0.25, 0.378929, 0.693548, 0.693548], abs=1e-6)
    assert up.tolist() == pytest.approx([0.5, 0.757858, 1.387096, 1.387096], abs=1e-6)
    down, _ = volatility_moves(np.array([0.2 / 365]), risk(vol_down=0.4))
    assert down.tolist() == [0.9]  # 0.4·2.7742 = 1.11, capped


def _grid(legs, delta_one: float) -> list[list[float]]:
    """L(s, v) by hand: 30-day options, so vd = 0.25, vu = 0.5; r_BTC = 0.10."""
    rows = []
    for k in (-3, -2, -1, 0, 1, 2, 3):
        s = k / 3 * 0.10
        row = []
        for v in (-0.25, 0.0, 0.5):
            pnl = delta_one * s + sum(
                q
                * (
                    black76_by_hand(c, SPOT * (1 + s), strike, 0.5 * (1 + v), THIRTY_DAYS)
                    - black76_by_hand(c, SPOT, strike, 0.5, THIRTY_DAYS)
                )
                for q, c, strike in legs
            )
            row.append(-pnl)
        rows.append(row)
    return rows


def test_covered_call_costs_less_than_its_standard_margin():
    # Long 1 BTC-PERP at 65,000 (10%/5%), short 1 call 70,000 (30 days, σ 0.5).
    book, terms = _book((1.0, SPOT, None), (-1.0, CALL_70K, (True, 70_000.0)))
    charges = option_portfolio_charges(book, usdc(20_000.0), risk(), terms)
    grid = _grid([(-1.0, True, 70_000.0)], SPOT)
    np.testing.assert_allclose(charges.scenario_losses[BTC], grid, atol=1e-6)
    # L⁻ at s = −r, vol up: 6,190.07; L⁺ at s = 0, vol up (the short call's vega): 1,757.51.
    assert charges.loss_down[BTC] == pytest.approx(6_190.0662, abs=1e-3)
    assert charges.loss_up[BTC] == pytest.approx(1_757.5144, abs=1e-3)
    assert charges.directional == pytest.approx(6_190.0662 - 1_757.5144, abs=1e-3)
    assert charges.curvature == pytest.approx(1_757.5144, abs=1e-3)
    assert charges.basis == 0.0
    assert charges.short_option_minimum == pytest.approx(650.0)  # 0.01·65,000
    assert charges.floor == pytest.approx(325.0)  # 0.005·65,000, the perpetual only
    assert charges.maintenance_margin == pytest.approx(6_840.0662, abs=1e-3)
    assert charges.initial_margin == pytest.approx(1.25 * 6_840.0662, abs=1e-3)
    # Standard: perpetual 10% = 6,500, short call max(9,750 − 5,000, 6,500) = 6,500.
    values = option_values(book, terms, risk())
    standard = 0.10 * SPOT + float(values.initial_margin.sum())
    assert standard == pytest.approx(13_000.0)
    assert charges.initial_margin < standard


def test_long_straddle_pays_only_for_volatility_down():
    book, terms = _book((1.0, CALL_65K, (True, 65_000.0)), (1.0, PUT_65K, (False, 65_000.0)))
    charges = option_portfolio_charges(book, usdc(20_000.0), risk(), terms)
    # Worst loss either way is at s = 0 with σ·0.75: 2·(V(σ) − V(0.75σ)) = 1,854.89.
    vol_down_loss = 2 * (CALL_65K - black76_by_hand(True, SPOT, 65_000.0, 0.375, THIRTY_DAYS))
    assert vol_down_loss == pytest.approx(1_854.8885, abs=1e-3)
    assert charges.loss_down[BTC] == pytest.approx(vol_down_loss, abs=1e-6)
    assert charges.loss_up[BTC] == pytest.approx(vol_down_loss, abs=1e-6)
    assert charges.weighted_sensitivity[BTC] == 0.0
    assert charges.directional == 0.0
    assert charges.curvature == pytest.approx(vol_down_loss, abs=1e-6)
    assert (charges.short_option_minimum, charges.floor, charges.basis) == (0.0, 0.0, 0.0)
    assert charges.maintenance_margin == pytest.approx(vol_down_loss, abs=1e-6)
    # Every other scenario loses less (a rise in volatility or a big move is a gain).
    worst = np.unravel_index(np.argmax(charges.scenario_losses[BTC]), (7, 3))
    assert tuple(int(i) for i in worst) == (3, 0)


def test_short_straddle_pays_curvature_both_ways():
    book, terms = _book((-1.0, CALL_65K, (True, 65_000.0)), (-1.0, PUT_65K, (False, 65_000.0)))
    charges = option_portfolio_charges(book, usdc(20_000.0), risk(), terms)
    grid = _grid([(-1.0, True, 65_000.0), (-1.0, False, 65_000.0)], 0.0)
    np.testing.assert_allclose(charges.scenario_losses[BTC], grid, atol=1e-6)
    # L⁻ = L(−r, up) = 4,383.91, L⁺ = L(+r, up) = 5,382.80: the book loses whichever way BTC goes.
    assert charges.loss_down[BTC] == pytest.approx(4_383.9084, abs=1e-3)
    assert charges.loss_up[BTC] == pytest.approx(5_382.7989, abs=1e-3)
    assert charges.curvature == pytest.approx(4_383.9084, abs=1e-3)
    assert charges.directional == pytest.approx(5_382.7989 - 4_383.9084, abs=1e-3)
    assert charges.short_option_minimum == pytest.approx(1_300.0)  # 0.01·2·65,000
    assert charges.maintenance_margin == pytest.approx(
        5_382.7989 + 1_300.0, abs=1e-3
    )  # directional + curvature = L⁺ here


def test_curvature_has_no_offset_between_underlyings():
    # A BTC short straddle and the same on ETH: curvatures add, directional charges correlate.
    btc_book, btc_terms = _book(
        (-1.0, CALL_65K, (True, 65_000.0)), (-1.0, PUT_65K, (False, 65_000.0))
    )
    alone = option_portfolio_charges(btc_book, usdc(0.0), risk(), btc_terms)
    both = positions(
        *(
            Leg(size=float(q), mark=float(m), underlying=BTC, tiers=NO_TIERS)
            for q, m in zip(btc_book.size, btc_book.mark, strict=True)
        ),
        *(
            Leg(size=float(q), mark=float(m), underlying=ETH, tiers=NO_TIERS)
            for q, m in zip(btc_book.size, btc_book.mark, strict=True)
        ),
    )
    terms = OptionTerms.create(
        is_option=True,
        is_call=[True, False, True, False],
        strike=65_000.0,
        time_to_expiry=THIRTY_DAYS,
        volatility=0.5,
        underlying_price=SPOT,
    )
    # ETH with BTC's numbers but its own 0.12 scan range: same scenario logic, larger moves.
    charges = option_portfolio_charges(both, usdc(0.0), risk(), terms)
    assert charges.curvature == pytest.approx(
        alone.curvature + charges.curvature_by_underlying[ETH], abs=1e-9
    )
    ws = charges.weighted_sensitivity
    expected = math.sqrt(ws[BTC] ** 2 + ws[ETH] ** 2 + 2 * 0.8 * ws[BTC] * ws[ETH])
    assert charges.directional == pytest.approx(expected, rel=1e-12)


def test_stressed_option_values_move_with_price_and_volatility():
    book, terms = _book((1.0, SPOT, None), (-2.0, CALL_70K, (True, 70_000.0)))
    shocks = np.array([[0.0, 0.0, 0.0], [-0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
    vol_shocks = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    changes = stressed_option_value_changes(book, terms, shocks, vol_shocks)
    down = black76_by_hand(True, 58_500.0, 70_000.0, 0.5, THIRTY_DAYS) - CALL_70K
    up_vol = black76_by_hand(True, SPOT, 70_000.0, 0.75, THIRTY_DAYS) - CALL_70K
    np.testing.assert_allclose(
        changes, [[0.0, 0.0], [0.0, -2 * down], [0.0, -2 * up_vol]], atol=1e-6
    )


# --- a book without options is unchanged -------------------------------------------------------


@PROPERTY
@given(book=books())
def test_a_book_without_options_gives_todays_numbers(book):
    p, c = book.positions(), book.collateral()
    today = portfolio_charges(p, c, risk())
    charges = option_portfolio_charges(p, c, risk(), OptionTerms.none(p.n))
    assert charges.maintenance_margin == float(today.maintenance_margin)
    assert charges.initial_margin == float(today.initial_margin)
    assert charges.directional == float(today.directional)
    assert charges.basis == float(today.basis)
    assert charges.floor == float(today.floor)
    assert charges.curvature == 0.0
    assert charges.short_option_minimum == 0.0
    assert charges.delta.tolist() == today.delta.tolist()
    summary = margin_summary(p, c, risk(), "portfolio", liquidation_prices=False)
    assert charges.initial_margin == summary.portfolio_initial_margin


def test_a_perpetual_beside_an_option_on_another_underlying_keeps_its_numbers():
    book = positions(
        Leg(size=2.0, mark=3_000.0, underlying=ETH),
        Leg(size=-1.0, mark=CALL_70K, underlying=BTC, tiers=NO_TIERS),
    )
    terms = OptionTerms.create(
        is_option=[False, True],
        is_call=True,
        strike=70_000.0,
        time_to_expiry=THIRTY_DAYS,
        volatility=0.5,
        underlying_price=SPOT,
    )
    charges = option_portfolio_charges(book, Collateral.empty(), risk(), terms)
    assert charges.weighted_sensitivity[ETH] == 2.0 * 3_000.0 * 0.12
    assert charges.curvature_by_underlying[ETH] == 0.0
    assert charges.floor == 0.005 * 6_000.0


def test_option_terms_are_validated():
    with pytest.raises(ValueError, match="strike"):
        OptionTerms.create(
            is_option=[False, True],
            is_call=True,
            strike=[0.0, -1.0],  # row 0 is not an option: ignored
            time_to_expiry=0.1,
            volatility=0.5,
            underlying_price=SPOT,
        )
    with pytest.raises(ValueError, match="volatility"):
        OptionTerms.create(
            is_option=True,
            is_call=True,
            strike=1.0,
            time_to_expiry=0.1,
            volatility=-0.5,
            underlying_price=SPOT,
        )


def test_option_parameters_default_and_validate():
    p = RiskParameters()
    assert (p.option_im_base, p.option_im_min, p.option_mm_base) == (0.15, 0.10, 0.075)
    assert (p.vol_up, p.vol_down, p.vega_power, p.short_option_rate) == (0.5, 0.25, 0.3, 0.01)
    assert RiskParameters.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="vol_down"):
        RiskParameters.from_dict({"vol_down": 1.5})
    with pytest.raises(ValueError, match="short_option_rate"):
        RiskParameters.from_dict({"short_option_rate": -0.01})
