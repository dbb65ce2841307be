"""Stress scenarios: shortfall and deficit by hand, the default grid, isolated ring-fencing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.engine import (
    RiskParameters,
    Scenario,
    default_scenarios,
    shock_matrix,
    stress,
)
from tests.engine.helpers import BTC, ETH, UNIVERSE, Asset, Leg, collateral, positions, risk, usdc

approx = pytest.approx


def shocks(*moves: dict[str, float]) -> np.ndarray:
    return shock_matrix([Scenario(str(m), m) for m in moves], UNIVERSE)


def test_cross_shortfall_and_deficit_by_hand():
    # 50,000 USDC; long 10 BTC entry = mark = 65,000; mmf 5%.
    # BTC −20%: mark 52,000; u = 10·(−13,000) = −130,000 → E = −80,000;
    #   MM = 0.05·520,000 = 26,000; shortfall = 26,000 + 80,000 = 106,000; deficit = 80,000.
    # BTC −5%: mark 61,750; u = −32,500 → E = 17,500; MM = 30,875; ratio = 1.764…;
    #   shortfall = 13,375; deficit 0.
    # BTC +10%: mark 71,500; u = +65,000 → E = 115,000; MM = 35,750; shortfall 0.
    # ETH −50%: no BTC move: E = 50,000, MM = 32,500.
    r = stress(
        positions(Leg(10, 65_000)),
        usdc(50_000),
        risk(),
        "cross",
        shocks({"BTC": -0.2}, {"BTC": -0.05}, {"BTC": 0.1}, {"ETH": -0.5}),
    )
    assert r.equity.tolist() == approx([-80_000, 17_500, 115_000, 50_000])
    assert r.maintenance_margin.tolist() == approx([26_000, 30_875, 35_750, 32_500])
    assert math.isnan(r.maintenance_margin_ratio[0])
    assert r.maintenance_margin_ratio[1] == approx(30_875 / 17_500)
    assert r.shortfall.tolist() == approx([106_000, 13_375, 0, 0])
    assert r.deficit.tolist() == approx([80_000, 0, 0, 0])
    assert r.liquidatable.tolist() == [True, True, False, False]


def test_collateral_moves_with_its_underlying():
    # 1 BTC of collateral (weight 0.9) at 65,000 and no positions. BTC −20% → price 52,000:
    # cross E = 0.9·52,000 = 46,800; portfolio E = 52,000, MM = 0.10·52,000 = 5,200.
    coll = collateral(Asset(1, price=65_000, weight=0.9, underlying=BTC))
    r = stress(positions(), coll, risk(), "cross", shocks({"BTC": -0.2}))
    assert r.equity.tolist() == approx([46_800])
    r = stress(positions(), coll, risk(), "portfolio", shocks({"BTC": -0.2}))
    assert r.equity.tolist() == approx([52_000])
    assert r.maintenance_margin.tolist() == approx([5_200])
    assert r.liquidatable.tolist() == [False]  # nothing open


def test_portfolio_basis_book_survives_a_crash():
    # margin.md basis book, 20,000 USDC, BTC −20%: both marks 52,000; u = −130,000 + 130,000 = 0;
    # D = 0; basis = 0.01·520,000 = 5,200; floor = 0.005·1,040,000 = 5,200 → MM = 5,200.
    book = positions(Leg(10, 65_000), Leg(-10, 65_000, perpetual=False))
    r = stress(book, usdc(20_000), risk(), "portfolio", shocks({"BTC": -0.2}))
    assert r.equity.tolist() == approx([20_000])
    assert r.maintenance_margin.tolist() == approx([5_200])
    assert r.shortfall.tolist() == [0.0]


def test_isolated_positions_are_ring_fenced():
    # 5,000 USDC; long 1 BTC entry 65,000 with A = 6,500; short 10 ETH entry 3,000 with A = 3,000.
    # BTC −20%: BTC mark 52,000: u₁ = −13,000 → A₁ + u₁ = −6,500; MM₁ = 2,600.
    #   ETH unmoved: A₂ + u₂ = 3,000; MM₂ = 1,500.
    # E = 5,000 − 6,500 + 3,000 = 1,500; MM = 4,100.
    # shortfall = max(0, (2,600 + 6,500) − 5,000) = 4,100 (ETH's surplus cannot help BTC);
    # deficit = max(0, 6,500 − 5,000) = 1,500.
    # (The pooled formulas would say max(0, 4,100 − 1,500) = 2,600 and max(0, −1,500) = 0.)
    book = positions(
        Leg(1, 65_000, isolated_margin=6_500),
        Leg(-10, 3_000, underlying=ETH, isolated_margin=3_000),
    )
    r = stress(book, usdc(5_000), risk(), "isolated", shocks({"BTC": -0.2}, {"BTC": -0.1}))
    assert r.equity[0] == approx(1_500)
    assert r.maintenance_margin[0] == approx(4_100)
    assert r.shortfall[0] == approx(4_100)
    assert r.deficit[0] == approx(1_500)
    assert bool(r.liquidatable[0])
    # BTC −10%: mark 58,500: A₁ + u₁ = 0 ≤ MM₁ = 2,925 → liquidatable, though the 5,000 of
    # balances could cover it if moved in: shortfall = max(0, 2,925 − 5,000) = 0.
    assert r.shortfall[1] == 0.0
    assert bool(r.liquidatable[1])


def test_default_grid():
    params = RiskParameters()
    grid = default_scenarios(("BTC", "ETH", "DOGE"), params)
    # 8 single-underlying moves per underlying + crash + rally.
    assert len(grid) == 3 * 8 + 2
    names = [s.name for s in grid]
    assert names[0] == "BTC −2 × scan (−20.00%)"
    assert names[3] == "BTC −1/3 × scan (−3.33%)"
    assert names[-2:] == ["all −1 × scan (crash)", "all +1 × scan (rally)"]
    assert grid[0].shocks == {"BTC": approx(-0.20)}
    assert grid[8 + 4].shocks == {"ETH": approx(0.12 / 3)}  # ETH +1/3 × 0.12 = +4%
    assert grid[16 + 7].shocks == {"DOGE": approx(0.40)}  # others: scan 0.20, × 2
    assert grid[-2].shocks == {"BTC": -0.10, "ETH": -0.12, "DOGE": -0.20}


def test_bad_scenarios_are_refused():
    with pytest.raises(ValueError, match="unknown underlying"):
        shock_matrix([Scenario("x", {"XRP": -0.1})], UNIVERSE)
    with pytest.raises(ValueError, match="at least"):
        shock_matrix([Scenario("x", {"BTC": -1.5})], UNIVERSE)
