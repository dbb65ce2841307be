"""A book with options through ``margin_summary`` and ``stress`` (margin.md "Options").

Expected numbers are worked by hand from margin.md; Φ comes from the standard library
(``statistics.NormalDist``), never from the engine.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from app.engine import OptionTerms, margin_summary, shock_matrix, stress
from app.engine.stress import Scenario
from tests.engine.helpers import (
    ETH,
    Leg,
    black76_by_hand,
    black76_delta_by_hand,
    positions,
    risk,
    usdc,
)

SPOT = 65_000.0
THIRTY_DAYS = 30 / 365
NO_TIERS = ((0.0, 0.0, 0.0),)


def _terms(*rows: tuple[bool, float] | None, sigma: float = 0.5) -> OptionTerms:
    return OptionTerms.create(
        is_option=[row is not None for row in rows],
        is_call=[row is not None and row[0] for row in rows],
        strike=[row[1] if row else 1.0 for row in rows],
        time_to_expiry=THIRTY_DAYS,
        volatility=sigma,
        underlying_price=SPOT,
    )


def _covered_call():
    # Long 1 BTC-PERP bought at 60,000, marked 65,000 (10%/5%); short 1 call 70,000 sold at
    # 1,500, marked 1,200; 100,000 USDC.
    book = positions(
        Leg(size=1.0, mark=SPOT, entry=60_000.0),
        Leg(size=-1.0, mark=1_200.0, entry=1_500.0, tiers=NO_TIERS, perpetual=False),
    )
    return book, _terms(None, (True, 70_000.0))


def test_cross_summary_counts_the_option_at_its_value_and_its_standard_margin():
    book, terms = _covered_call()
    summary = margin_summary(book, usdc(100_000.0), risk(), "cross", options=terms)
    # E = C + u_perp + q·k·m = 100,000 + 5,000 − 1,200; the option's PnL (+300) is reported.
    assert summary.equity == pytest.approx(103_800.0)
    assert summary.unrealized_pnl == pytest.approx(5_300.0)
    # Perp 10% / 5% of 65,000; short call IM max(0.15·65,000 − 5,000, 0.10·65,000) = 6,500,
    # MM 0.075·65,000 = 4,875.
    assert summary.initial_margin == pytest.approx(13_000.0)
    assert summary.maintenance_margin == pytest.approx(8_125.0)
    assert summary.free_collateral == pytest.approx(90_800.0)
    assert summary.withdrawable == pytest.approx(90_800.0)  # no long option to hold back
    # Gross notional: 65,000 + |Δ|·65,000 (delta-adjusted).
    delta = black76_delta_by_hand(True, SPOT, 70_000.0, 0.5, THIRTY_DAYS)
    assert summary.gross_notional == pytest.approx(SPOT + delta * SPOT)
    rows = summary.positions
    assert rows.notional.tolist() == pytest.approx([SPOT, delta * SPOT])
    assert rows.initial_margin.tolist() == pytest.approx([6_500.0, 6_500.0])
    assert rows.maintenance_margin.tolist() == pytest.approx([3_250.0, 4_875.0])
    assert rows.unrealized_pnl.tolist() == pytest.approx([5_000.0, 300.0])
    assert rows.options.delta.tolist() == pytest.approx([0.0, -delta])
    # The call's liquidation mark: E + q·k·(m − 1,200) = MM → m = 1,200 + (8,125 − 103,800)/−1.
    assert rows.liquidation_price[1] == pytest.approx(96_875.0)


def test_the_value_of_long_options_is_not_withdrawable():
    # Long 1 put 60,000 marked 2,000 (bought at 2,500); 10,000 USDC.
    book = positions(Leg(size=1.0, mark=2_000.0, entry=2_500.0, tiers=NO_TIERS, perpetual=False))
    terms = _terms((False, 60_000.0))
    summary = margin_summary(book, usdc(10_000.0), risk(), "cross", options=terms)
    assert summary.equity == pytest.approx(12_000.0)
    assert summary.unrealized_pnl == pytest.approx(-500.0)
    assert (summary.initial_margin, summary.maintenance_margin) == (0.0, 0.0)
    assert summary.free_collateral == pytest.approx(12_000.0)
    assert summary.withdrawable == pytest.approx(10_000.0)  # E − 2,000 of long option value
    # No positive mark takes E = 10,000 + m down to MM = 0.
    assert math.isnan(summary.positions.liquidation_price[0])


def test_a_short_call_under_water_liquidates_where_equity_meets_maintenance():
    # Short 2 calls 70,000 marked 3,000 on 10,000 USDC: E = 4,000 < MM = 2·4,875 = 9,750.
    book = positions(Leg(size=-2.0, mark=3_000.0, tiers=NO_TIERS, perpetual=False))
    summary = margin_summary(
        book, usdc(10_000.0), risk(), "cross", options=_terms((True, 70_000.0))
    )
    assert summary.equity == pytest.approx(4_000.0)
    assert summary.maintenance_margin == pytest.approx(9_750.0)
    # 10,000 − 2·m = 9,750 at m = 125.
    assert summary.positions.liquidation_price[0] == pytest.approx(125.0)


def test_portfolio_summary_uses_the_grid_and_counts_the_option_at_its_value():
    book, terms = _covered_call()
    summary = margin_summary(book, usdc(100_000.0), risk(), "portfolio", options=terms)
    # Portfolio equity: C at full price + u_perp + q·k·m.
    assert summary.equity == pytest.approx(103_800.0)
    # The grid's own numbers are in test_options.py (6,840.07 for this book at σ 0.5, with the
    # call at its Black-76 value); here the mark differs from the model value, which the grid
    # never reads: MM_pm is the same.
    assert summary.maintenance_margin == pytest.approx(6_840.0662, abs=1e-3)
    assert summary.portfolio_initial_margin == pytest.approx(1.25 * 6_840.0662, abs=1e-3)
    assert summary.standard_initial_margin == pytest.approx(13_000.0)


def test_portfolio_liquidation_price_of_the_perpetual_beside_an_option():
    # 8,000 USDC only: the perp's liquidation mark is where E(m) = MM_pm(m), options fixed.
    book, terms = _covered_call()
    collateral = usdc(8_000.0)
    summary = margin_summary(book, collateral, risk(), "portfolio", options=terms)
    price = summary.positions.liquidation_price[0]
    assert 0 < price < SPOT

    def surplus(mark: float) -> float:
        moved = positions(
            Leg(size=1.0, mark=mark, entry=60_000.0),
            Leg(size=-1.0, mark=1_200.0, entry=1_500.0, tiers=NO_TIERS, perpetual=False),
        )
        at = margin_summary(moved, collateral, risk(), "portfolio", options=terms)
        return at.equity - at.maintenance_margin

    # To one tick (0.1): still outside liquidation at the price, liquidated a tick below.
    assert surplus(price) > 0
    assert surplus(price - 0.1) <= 0


def test_stress_moves_options_with_price_and_volatility():
    # Short 1 call 70,000 at its Black-76 value, 20,000 USDC, cross; BTC −10% and vol +50%.
    def value(spot: float, sigma: float) -> float:
        return black76_by_hand(True, spot, 70_000.0, sigma, THIRTY_DAYS)

    mark = value(SPOT, 0.5)
    book = positions(Leg(size=-1.0, mark=mark, tiers=NO_TIERS, perpetual=False))
    terms = _terms((True, 70_000.0))
    scenarios = [Scenario("crash, vol up", {"BTC": -0.1}, {"BTC": 0.5})]
    shocks = shock_matrix(scenarios, risk().universe)
    vol_shocks = shock_matrix(scenarios, risk().universe, volatility=True)
    result = stress(
        book, usdc(20_000.0), risk(), "cross", shocks, options=terms, vol_shocks=vol_shocks
    )
    moved = value(SPOT * 0.9, 0.75)
    assert result.equity[0] == pytest.approx(20_000.0 - moved, abs=1e-6)
    # MM at the moved index: 0.075·58,500.
    assert result.maintenance_margin[0] == pytest.approx(0.075 * 58_500.0)
    assert result.shortfall[0] == 0.0
    # Volatility alone, BTC unmoved: the short call loses V(σ·1.5) − V(σ).
    scenarios = [Scenario("vol up", {}, {"BTC": 0.5})]
    result = stress(
        book, usdc(20_000.0), risk(), "cross",
        shock_matrix(scenarios, risk().universe), options=terms,
        vol_shocks=shock_matrix(scenarios, risk().universe, volatility=True),
    )  # fmt: skip
    assert result.equity[0] == pytest.approx(20_000.0 - value(SPOT, 0.75), abs=1e-6)


def test_every_delta_one_liquidation_price_of_a_mixed_portfolio_is_one_tick_from_the_root():
    # BTC and ETH perpetuals long and short beside a short BTC straddle and a long ETH put.
    legs = [
        Leg(size=2.0, mark=SPOT, entry=64_000.0),
        Leg(size=-1.5, mark=SPOT, entry=66_000.0, perpetual=False),
        Leg(size=10.0, mark=3_000.0, entry=3_000.0, underlying=ETH, tick=0.01),
        Leg(size=-1.0, mark=2_500.0, tiers=NO_TIERS, perpetual=False),
        Leg(size=-1.0, mark=2_400.0, tiers=NO_TIERS, perpetual=False),
        Leg(size=5.0, mark=150.0, underlying=ETH, tiers=NO_TIERS, perpetual=False, tick=0.01),
    ]
    terms = OptionTerms.create(
        is_option=[False, False, False, True, True, True],
        is_call=[False, False, False, True, False, False],
        strike=[1.0, 1.0, 1.0, 65_000.0, 65_000.0, 2_900.0],
        time_to_expiry=THIRTY_DAYS,
        volatility=[0.0, 0.0, 0.0, 0.5, 0.5, 0.7],
        underlying_price=[1.0, 1.0, 1.0, SPOT, SPOT, 3_000.0],
    )
    collateral = usdc(9_000.0)
    summary = margin_summary(positions(*legs), collateral, risk(), "portfolio", options=terms)
    for row in (0, 1, 2):
        price = summary.positions.liquidation_price[row]
        assert math.isfinite(price) and price > 0

        def surplus(mark: float, row: int = row) -> float:
            moved = [replace(leg, mark=mark) if i == row else leg for i, leg in enumerate(legs)]
            at = margin_summary(positions(*moved), collateral, risk(), "portfolio", options=terms)
            return at.equity - at.maintenance_margin

        tick = legs[row].tick
        towards_liquidation = -tick if legs[row].size > 0 else tick
        assert surplus(price) > 0, row
        assert surplus(price + towards_liquidation) <= 0, row


def test_the_bracketing_fallback_finds_the_same_prices(monkeypatch):
    # Where the secant step does not settle, rows are bracketed and narrowed instead: forced
    # here for every row, the prices stay within one tick of the secant's.
    from app.engine import liquidation

    book, terms = _covered_call()
    collateral = usdc(8_000.0)
    secant = margin_summary(book, collateral, risk(), "portfolio", options=terms)
    monkeypatch.setattr(liquidation, "_secant_roots", lambda g, n, width: np.full(n, np.nan))
    bracketed = margin_summary(book, collateral, risk(), "portfolio", options=terms)
    assert math.isfinite(bracketed.positions.liquidation_price[0])
    assert bracketed.positions.liquidation_price[0] == pytest.approx(
        secant.positions.liquidation_price[0], abs=0.1
    )
