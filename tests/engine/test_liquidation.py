"""Liquidation prices: hand-worked cases per mode, and the defining property in all three."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from app.engine import (
    MarginMode,
    book_values,
    margin_summary,
    portfolio_liquidation_prices,
)
from tests.engine.helpers import ETH, SOL, Asset, Leg, collateral, positions, risk, usdc
from tests.engine.strategies import PROPERTY, books

approx = pytest.approx


def liq(book, coll, mode) -> list[float]:
    return margin_summary(book, coll, risk(), mode).positions.liquidation_price.tolist()


def test_cross_long_single_tier():
    # 100,000 USDC; long 10 BTC at 65,000; mmf 5%.
    # E(m) = 100,000 + 10·(m − 65,000); MM(m) = 0.05·10·m = 0.5·m.
    # 100,000 + 10m − 650,000 = 0.5m → 9.5m = 550,000 → m = 57,894.736842…
    assert liq(positions(Leg(10, 65_000)), usdc(100_000), "cross") == approx([550_000 / 9.5])


def test_cross_short_single_tier():
    # 100,000 USDC; short 10 BTC at 65,000; mmf 5%.
    # E(m) = 100,000 − 10·(m − 65,000) = 750,000 − 10m; MM = 0.5m.
    # 750,000 = 10.5m → m = 71,428.571428…
    assert liq(positions(Leg(-10, 65_000)), usdc(100_000), "cross") == approx([750_000 / 10.5])


def test_cross_other_marks_held_fixed():
    # Add long 100 ETH at 3,000 (MM 0.05·300,000 = 15,000, u = 0), held fixed.
    # BTC: 100,000 + 10m − 650,000 = 0.5m + 15,000 → 9.5m = 565,000 → m = 59,473.684210…
    # ETH: E = 100,000 + 100·(p − 3,000), MM = 32,500 + 5p → 95p = 232,500 → p = 2,447.368421…
    book = positions(Leg(10, 65_000), Leg(100, 3_000, underlying=ETH))
    assert liq(book, usdc(100_000), "cross") == approx([565_000 / 9.5, 232_500 / 95])


def test_cross_no_positive_price():
    # 1,000,000 USDC; long 1 BTC at 65,000: E(m) = 935,000 + m > 0.05m for every m ≥ 0 → null.
    assert math.isnan(liq(positions(Leg(1, 65_000)), usdc(1_000_000), "cross")[0])
    # Short already hopeless: −100,000 USDC debt; E(m) = −100,000 − (m − 65,000) < 0.05m always.
    assert math.isnan(liq(positions(Leg(-1, 65_000)), usdc(-100_000), "cross")[0])


def test_isolated_long_margin_md_formula():
    # Long 1 BTC entry 65,000, A = 6,500, mmf 5%: m = (q·k·e − A)/(q·k·(1 − mmf))
    # = (65,000 − 6,500)/(1·0.95) = 58,500 / 0.95 = 61,578.947368…
    book = positions(Leg(1, 64_000, entry=65_000, isolated_margin=6_500))
    assert liq(book, usdc(1_000_000), "isolated") == approx([58_500 / 0.95])


def test_isolated_short():
    # Short 1 BTC entry 65,000, A = 6,500: 6,500 − (m − 65,000) = 0.05m
    # → 71,500 = 1.05m → m = 68,095.238095…  (the free balance does not protect it)
    book = positions(Leg(-1, 66_000, entry=65_000, isolated_margin=6_500))
    assert liq(book, usdc(1_000_000), "isolated") == approx([71_500 / 1.05])


def test_isolated_liquidation_lands_in_a_lower_tier():
    # Tiers: mmf 1% below 1,000,000, 5% above. Long 20 BTC entry 65,000, A = 350,000.
    # Equity(m) = 350,000 + 20(m − 65,000) = 20m − 950,000.
    # Try tier 1 (N > 1e6): MM = 10,000 + 0.05·(20m − 1,000,000) = m − 40,000
    #   → 19m = 910,000 → m = 47,894.7, N = 957,895 < 1,000,000: not in tier 1.
    # Tier 0: MM = 0.01·20m = 0.2m → 19.8m = 950,000 → m = 47,979.797979…, N = 959,596 ✓.
    tiers = [(0.0, 0.02, 0.01), (1_000_000.0, 0.10, 0.05)]
    book = positions(Leg(20, 65_000, isolated_margin=350_000, tiers=tiers))
    assert liq(book, usdc(0), "isolated") == approx([950_000 / 19.8])
    # With A = 100,000: tier 1: 20m − 1,200,000 = m − 40,000 → m = 1,160,000/19 = 61,052.63,
    # N = 1,221,053 > 1,000,000 ✓.
    book = positions(Leg(20, 65_000, isolated_margin=100_000, tiers=tiers))
    assert liq(book, usdc(0), "isolated") == approx([1_160_000 / 19])


def test_portfolio_basis_book_by_hand():
    # margin.md's basis book with 100,000 USDC. Move the perp mark m (< 65,000), future fixed:
    #   E = 100,000 + 10(m − 65,000) = 10m − 550,000
    #   D = 10m − 650,000 → directional = 0.10·(650,000 − 10m) = 65,000 − m
    #   basis = 0.01·min(10m, 650,000) = 0.1m; floor = 0.005·(10m + 650,000) = 0.05m + 3,250
    #   MM = max(65,000 − 0.9m, 0.05m + 3,250) = 65,000 − 0.9m near the root
    #   10m − 550,000 = 65,000 − 0.9m → m = 615,000 / 10.9 = 56,422.018348…
    # Move the future mark p (> 65,000), perp fixed:
    #   E = 100,000 − 10(p − 65,000) = 750,000 − 10p; directional = 0.10·(10p − 650,000)
    #   = p − 65,000; basis = 0.01·650,000 = 6,500; floor = 0.005·(650,000 + 10p)
    #   750,000 − 10p = p − 58,500 → p = 808,500 / 11 = 73,500.
    book = positions(Leg(10, 65_000, tick=0.1), Leg(-10, 65_000, perpetual=False, tick=0.1))
    got = liq(book, usdc(100_000), "portfolio")
    assert got[0] == approx(615_000 / 10.9, abs=0.1)
    assert got[1] == approx(73_500, abs=0.1)


def test_portfolio_bisection_alone_agrees_with_the_hand_result():
    book = positions(Leg(10, 65_000, tick=0.1), Leg(-10, 65_000, perpetual=False, tick=0.1))
    coll = usdc(100_000)
    values = book_values(book, coll, risk())
    prices = portfolio_liquidation_prices(
        book,
        values.charges,
        values.collateral_full + values.unrealized_pnl_total,
        risk(),
        exact_seed=False,
    )
    # Bisection returns the end outside liquidation: above the root for the long,
    # below it for the short, within one tick.
    assert 0 <= prices[0] - 615_000 / 10.9 <= 0.1
    assert 0 <= 73_500 - prices[1] <= 0.1


def residual(book, coll, mode, j, price):
    """E − MM (isolated: A_j + u_j − MM_j) with position j's mark at ``price``."""
    marks = book.mark.copy()
    marks[j] = price
    moved = book.take(np.arange(book.n))
    moved.mark[:] = marks
    s = margin_summary(moved, coll, risk(), mode, liquidation_prices=False)
    if mode == MarginMode.ISOLATED:
        assert s.positions.equity is not None
        return float(s.positions.equity[j] - s.positions.maintenance_margin[j])
    return s.equity - s.maintenance_margin


@pytest.mark.parametrize("mode", list(MarginMode))
@PROPERTY
@given(book=books())
def test_equity_meets_maintenance_at_the_liquidation_price(mode, book):
    pos, coll = book.positions(), book.collateral()
    prices = margin_summary(pos, coll, risk(), mode).positions.liquidation_price
    for j in np.flatnonzero(np.isfinite(prices)):
        price, tick = float(prices[j]), float(pos.tick_size[j])
        sign = 1.0 if pos.size[j] > 0 else -1.0
        scale = 1e-9 * (abs(float(pos.size[j])) * price + float(np.abs(coll.balance).sum()) + 1.0)
        # One tick to the safe side equity exceeds maintenance; one tick to the other it does not.
        assert residual(pos, coll, mode, j, price + sign * tick) > -scale
        assert residual(pos, coll, mode, j, price - sign * tick) <= scale
        if mode != MarginMode.PORTFOLIO:
            # Exact modes: at the price itself the two are equal (float rounding aside).
            assert residual(pos, coll, mode, j, price) == approx(0.0, abs=scale * 100)


@PROPERTY
@given(book=books())
def test_portfolio_seed_and_bisection_agree_within_a_tick(book):
    pos, coll = book.positions(), book.collateral()
    values = book_values(pos, coll, risk())
    equity = values.collateral_full + values.unrealized_pnl_total
    seeded = portfolio_liquidation_prices(pos, values.charges, equity, risk())
    bisected = portfolio_liquidation_prices(pos, values.charges, equity, risk(), exact_seed=False)
    np.testing.assert_array_equal(np.isnan(seeded), np.isnan(bisected))
    both = np.isfinite(seeded)
    assert np.all(np.abs(seeded - bisected)[both] <= 1.0001 * pos.tick_size[both])


def test_flat_rows_have_no_liquidation_price():
    book = positions(Leg(0, 65_000), Leg(1, 3_000, underlying=ETH))
    for mode in MarginMode:
        assert math.isnan(liq(book, usdc(100), mode)[0])


def test_portfolio_collateral_counts_in_liquidation():
    # Short 2 SOL-PERP at 150 against 2 SOL collateral (price held fixed at 150) and 10 USDC.
    # Move the perp mark p > 150:
    #   E = 10 + 2·150 − 2·(p − 150) = 610 − 2p
    #   D_SOL = 300 − 2p → directional = 0.20·(2p − 300) = 0.4p − 60
    #   legs: long 300 (collateral), short 2p → basis = 0.01·300 = 3; floor = 0.005·2p = 0.01p
    #   MM = 0.4p − 57  →  610 − 2p = 0.4p − 57  →  p = 667 / 2.4 = 277.91666…
    book = positions(Leg(-2, 150, underlying=SOL, tick=0.001))
    coll = collateral(Asset(10), Asset(2, price=150, weight=0.5, underlying=SOL))
    assert liq(book, coll, "portfolio")[0] == approx(667 / 2.4, abs=0.001)
