"""MarginSummary in isolated, cross and portfolio mode — every number worked by hand."""

from __future__ import annotations

import pytest

from app.engine import MarginMode, margin_summary, portfolio_charges
from tests.engine.helpers import BTC, ETH, Asset, Leg, collateral, positions, risk, usdc

approx = pytest.approx


def test_cross_summary_and_conventions():
    # 100,000 USDC; long 10 BTC entry 60,000 mark 65,000; one tier 5% / 2.5%.
    # N = 650,000; u = 10·(65,000 − 60,000) = 50,000; E = 150,000.
    # IM = 0.05·650,000 = 32,500 (+ reserved 10,000 = 42,500); MM = 16,250.
    # F = 150,000 − 42,500 = 107,500; W = max(0, 150,000 − max(42,500, 0)) = 107,500.
    book = positions(Leg(10, 65_000, entry=60_000, tiers=[(0.0, 0.05, 0.025)]))
    s = margin_summary(
        book, usdc(100_000), risk(), MarginMode.CROSS, reserved_initial_margin=10_000
    )
    assert s.equity == approx(150_000)
    assert s.collateral_value == approx(100_000)
    assert s.unrealized_pnl == approx(50_000)
    assert s.initial_margin == approx(42_500)
    assert s.reserved_initial_margin == approx(10_000)
    assert s.standard_initial_margin == approx(32_500)  # without reservations
    assert s.maintenance_margin == approx(16_250)
    assert s.free_collateral == approx(107_500)
    assert s.withdrawable == approx(107_500)
    assert s.gross_notional == approx(650_000)
    # Ratios: 42,500 / 150,000 = 0.283333…; 16,250 / 150,000 = 0.108333…; 650,000 / 150,000.
    assert s.initial_margin_ratio == approx(42_500 / 150_000)
    assert s.maintenance_margin_ratio == approx(16_250 / 150_000)
    assert s.leverage == approx(650_000 / 150_000)
    assert s.positions.notional.tolist() == approx([650_000])
    assert s.positions.initial_margin.tolist() == approx([32_500])
    assert s.positions.equity is None


def test_withdrawable_with_withdrawal_floor_0_1():
    # Same book, withdrawal_floor 0.1 (Hyperliquid's transfer rule):
    # floor = 0.1·650,000 = 65,000 > IM 42,500 → W = 150,000 − 65,000 = 85,000.
    # Free collateral is unchanged: 107,500.
    book = positions(Leg(10, 65_000, entry=60_000, tiers=[(0.0, 0.05, 0.025)]))
    s = margin_summary(
        book, usdc(100_000), risk(withdrawal_floor=0.1), "cross", reserved_initial_margin=10_000
    )
    assert s.withdrawable == approx(85_000)
    assert s.free_collateral == approx(107_500)


def test_withdrawable_never_negative_and_ratios_null_under_water():
    # 10,000 USDC; long 10 BTC entry 65,000 mark 63,000: u = −20,000 → E = −10,000.
    # F = −10,000 − 63,000 = −73,000; W = 0; ratios null (E ≤ 0).
    s = margin_summary(positions(Leg(10, 63_000, entry=65_000)), usdc(10_000), risk(), "cross")
    assert s.equity == approx(-10_000)
    assert s.free_collateral == approx(-73_000)
    assert s.withdrawable == 0.0
    assert s.initial_margin_ratio is None
    assert s.maintenance_margin_ratio is None
    assert s.leverage is None


def test_next_funding_sign():
    # Long 10 BTC-PERP at 65,000, f = +0.0001: −10·65,000·0.0001 = −65 (longs pay).
    # Short 5 ETH-PERP at 3,000, f = +0.0001: −(−5)·3,000·0.0001 = +1.5 (shorts receive).
    # A BTC future with a funding rate set is not a perpetual: contributes 0.
    # Total = −65 + 1.5 = −63.5.
    book = positions(
        Leg(10, 65_000, funding_rate=0.0001),
        Leg(-5, 3_000, underlying=ETH, funding_rate=0.0001),
        Leg(1, 65_000, funding_rate=0.0001, perpetual=False),
    )
    s = margin_summary(book, usdc(1_000_000), risk(), "cross")
    assert s.next_funding == approx(-63.5)
    # Negative rate: longs receive. −10·65,000·(−0.0002) = +130.
    s = margin_summary(positions(Leg(10, 65_000, funding_rate=-0.0002)), usdc(0), risk(), "cross")
    assert s.next_funding == approx(130.0)


def test_collateral_haircut_in_standard_mode_full_value_in_portfolio_mode():
    # 100,000 USDC + 2 BTC at 65,000 with weight 0.9; long 10 BTC-PERP at 65,000 (10% / 5%).
    # Standard: C = 100,000 + 2·65,000·0.9 = 100,000 + 117,000 = 217,000 = E.
    #           IM = 65,000, MM = 32,500.
    # Portfolio: C = 100,000 + 130,000 = 230,000 = E; D_BTC = 650,000 + 130,000 = 780,000;
    #   directional = 0.10·780,000 = 78,000; basis 0 (no short leg); floor = 0.005·650,000 = 3,250
    #   (positions only); MM_pm = 78,000; IM_pm = 1.25·78,000 = 97,500.
    book = positions(Leg(10, 65_000))
    coll = collateral(Asset(100_000), Asset(2, price=65_000, weight=0.9, underlying=BTC))
    cross = margin_summary(book, coll, risk(), "cross")
    assert cross.collateral_value == approx(217_000)
    assert cross.equity == approx(217_000)
    assert cross.initial_margin == approx(65_000)
    assert cross.portfolio_initial_margin == approx(97_500)
    pm = margin_summary(book, coll, risk(), "portfolio")
    assert pm.collateral_value == approx(230_000)
    assert pm.equity == approx(230_000)
    assert pm.maintenance_margin == approx(78_000)
    assert pm.initial_margin == approx(97_500)
    assert pm.standard_initial_margin == approx(65_000)
    # Per-position margins in portfolio mode are the standard model's (informational).
    assert pm.positions.initial_margin.tolist() == approx([65_000])


def test_cash_and_carry_against_spot_collateral():
    # 100,000 USDC + 2 BTC spot (weight 0.9); short 2 BTC-PERP at 65,000.
    # Portfolio: D_BTC = 130,000 − 130,000 = 0 → directional 0;
    #   basis = 0.01·min(130,000, 130,000) = 1,300; floor = 0.005·130,000 = 650;
    #   MM_pm = 1,300; IM_pm = 1,625.
    # Standard: IM = 0.10·130,000 = 13,000.
    book = positions(Leg(-2, 65_000))
    coll = collateral(Asset(100_000), Asset(2, price=65_000, weight=0.9, underlying=BTC))
    pm = margin_summary(book, coll, risk(), "portfolio")
    assert pm.maintenance_margin == approx(1_300)
    assert pm.initial_margin == approx(1_625)
    assert pm.standard_initial_margin == approx(13_000)


def test_negative_balance_is_a_debt_at_full_weight():
    # −20,000 USDC and 1 BTC (weight 0.8) at 65,000: C = −20,000 + 52,000 = 32,000.
    # A BTC debt of −0.1 BTC counts at weight 1: −6,500 (not −0.8·6,500).
    coll = collateral(Asset(-20_000), Asset(1, price=65_000, weight=0.8, underlying=BTC))
    assert margin_summary(positions(), coll, risk(), "cross").collateral_value == approx(32_000)
    coll = collateral(Asset(10_000), Asset(-0.1, price=65_000, weight=0.8, underlying=BTC))
    # C = 10,000 − 6,500 = 3,500.
    assert margin_summary(positions(), coll, risk(), "cross").collateral_value == approx(3_500)


def test_isolated_summary():
    # 50,000 USDC free; long 1 BTC entry 65,000 mark 64,000 with A = 6,500;
    # short 10 ETH entry 3,000 mark 2,900 with A = 3,000 (both 10% / 5%).
    # u = (−1,000, +1,000); position equity A + u = (5,500, 4,000).
    # E = 50,000 + 5,500 + 4,000 = 59,500.
    # IM = 0.10·64,000 + 0.10·29,000 = 6,400 + 2,900 = 9,300 (+ reserved 1,000 = 10,300).
    # MM = 3,200 + 1,450 = 4,650.
    # F = C − reserved = 50,000 − 1,000 = 49,000 (a position's profit never funds another);
    # W = max(0, 49,000) = 49,000.
    book = positions(
        Leg(1, 64_000, entry=65_000, isolated_margin=6_500),
        Leg(-10, 2_900, entry=3_000, underlying=ETH, isolated_margin=3_000),
    )
    s = margin_summary(book, usdc(50_000), risk(), "isolated", reserved_initial_margin=1_000)
    assert s.equity == approx(59_500)
    assert s.collateral_value == approx(50_000)
    assert s.initial_margin == approx(10_300)
    assert s.maintenance_margin == approx(4_650)
    assert s.free_collateral == approx(49_000)
    assert s.withdrawable == approx(49_000)
    assert s.positions.equity is not None
    assert s.positions.equity.tolist() == approx([5_500, 4_000])


def test_margin_md_basis_example():
    # margin.md: long 10 BTC-PERP, short 10 BTC-0327, both at 65,000, tiers 10% / 5%.
    # Standard IM = 2·650,000·0.10 = 130,000.
    # Portfolio: D = 0 → directional 0; basis = 0.01·650,000 = 6,500;
    #   floor = 0.005·1,300,000 = 6,500; MM_pm = 6,500; IM_pm = 1.25·6,500 = 8,125.
    book = positions(Leg(10, 65_000), Leg(-10, 65_000, perpetual=False))
    s = margin_summary(book, usdc(100_000), risk(), "portfolio")
    assert s.standard_initial_margin == approx(130_000)
    assert s.portfolio_initial_margin == approx(8_125)
    assert s.maintenance_margin == approx(6_500)
    assert 1 - s.portfolio_initial_margin / s.standard_initial_margin == approx(0.9375)  # "94%"
    parts = portfolio_charges(book, usdc(100_000), risk())
    assert float(parts.directional) == approx(0.0, abs=1e-9)
    assert float(parts.basis) == approx(6_500)
    assert float(parts.floor) == approx(6_500)
    # In cross mode the same book reports the same two numbers.
    cross = margin_summary(book, usdc(100_000), risk(), "cross")
    assert cross.initial_margin == approx(130_000)
    assert cross.portfolio_initial_margin == approx(8_125)


def test_long_btc_short_eth_equal_notionals():
    # Long 10 BTC at 65,000 (650,000); short 200 ETH at 3,250 (650,000).
    # WS_BTC = 0.10·650,000 = 65,000; WS_ETH = 0.12·(−650,000) = −78,000.
    # WS'ρWS = 65,000² + 78,000² + 2·0.8·65,000·(−78,000)
    #        = 4,225,000,000 + 6,084,000,000 − 8,112,000,000 = 2,197,000,000
    # directional = √2,197,000,000 ≈ 46,872.17 ; basis 0; floor = 0.005·1,300,000 = 6,500.
    # MM_pm ≈ 46,872.17; IM_pm ≈ 58,590.21; standard IM = 130,000 → saves ≈ 55%, less than 94%.
    directional = 2_197_000_000**0.5
    book = positions(Leg(10, 65_000), Leg(-200, 3_250, underlying=ETH))
    s = margin_summary(book, usdc(100_000), risk(), "portfolio")
    assert directional == approx(46_872.17, abs=0.01)
    assert s.maintenance_margin == approx(directional)
    assert s.portfolio_initial_margin == approx(1.25 * directional)
    assert s.standard_initial_margin == approx(130_000)
    assert 0.5 < 1 - s.portfolio_initial_margin / s.standard_initial_margin < 0.6


def test_unhedged_book_saves_nothing():
    # Long 10 BTC at 65,000, nothing else. Portfolio: directional = 0.10·650,000 = 65,000;
    # basis 0; floor 3,250 → MM_pm = 65,000, IM_pm = 81,250. Standard with 10% tiers: 65,000.
    # margin.md says "an unhedged book [saves] nothing"; precisely, IM_pm = 1.25·r_u·N, which
    # with BTC's 10% scan range and 10% tiers is 25% MORE than standard, and equal to it only
    # when imf = 1.25·r_u (12.5% here).
    book = positions(Leg(10, 65_000))
    s = margin_summary(book, usdc(100_000), risk(), "portfolio")
    assert s.portfolio_initial_margin == approx(81_250)
    assert s.standard_initial_margin == approx(65_000)
    even = positions(Leg(10, 65_000, tiers=[(0.0, 0.125, 0.0625)]))
    s = margin_summary(even, usdc(100_000), risk(), "portfolio")
    assert s.portfolio_initial_margin == approx(s.standard_initial_margin)


def test_floor_binds_on_a_small_hedged_book_and_vanishes_with_no_positions():
    # Long 1 BTC-PERP, short 1 BTC future at 65,000: basis 0.01·65,000 = 650,
    # floor 0.005·130,000 = 650 → MM_pm = 650 (they tie). Raise spread to 0 → floor 650 binds.
    book = positions(Leg(1, 65_000), Leg(-1, 65_000, perpetual=False))
    s = margin_summary(book, usdc(10_000), risk(default_spread_rate=0.0), "portfolio")
    assert s.maintenance_margin == approx(650)
    # No open positions, 1 BTC of collateral: no floor, directional = 0.10·65,000 = 6,500.
    coll = collateral(Asset(1, price=65_000, weight=0.9, underlying=BTC))
    s = margin_summary(positions(), coll, risk(), "portfolio")
    assert s.maintenance_margin == approx(6_500)
    assert s.gross_notional == 0.0


def test_portfolio_free_collateral_and_withdrawable():
    # Basis book with 100,000 USDC and 5,000 reserved: IM = 8,125 + 5,000 = 13,125.
    # F = 100,000 − 13,125 = 86,875. withdrawal_floor 0.1: 0.1·1,300,000 = 130,000 > IM
    # → W = max(0, 100,000 − 130,000) = 0.
    book = positions(Leg(10, 65_000), Leg(-10, 65_000, perpetual=False))
    s = margin_summary(
        book, usdc(100_000), risk(withdrawal_floor=0.1), "portfolio", reserved_initial_margin=5_000
    )
    assert s.initial_margin == approx(13_125)
    assert s.free_collateral == approx(86_875)
    assert s.withdrawable == 0.0
