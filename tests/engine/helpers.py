"""Small builders for engine tests: readable books without the array plumbing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from app.engine import Collateral, Positions, RiskArrays, RiskParameters, TierTable

UNIVERSE = ("BTC", "ETH", "SOL")
NORMAL = NormalDist()


def black76_by_hand(call: bool, spot: float, strike: float, sigma: float, years: float) -> float:
    """Black-76 at a zero rate (margin.md), one option at a time, on the standard library's Φ:
    what tests compare the engine's vectorised Black-76 with."""
    if years <= 0 or sigma <= 0:
        return max(0.0, spot - strike if call else strike - spot)
    spread = sigma * math.sqrt(years)
    d1 = (math.log(spot / strike) + spread * spread / 2) / spread
    d2 = d1 - spread
    if call:
        return spot * NORMAL.cdf(d1) - strike * NORMAL.cdf(d2)
    return strike * NORMAL.cdf(-d2) - spot * NORMAL.cdf(-d1)


def black76_delta_by_hand(
    call: bool, spot: float, strike: float, sigma: float, years: float
) -> float:
    """Black-76's delta per unit, Φ(d1) (call) or Φ(d1) − 1 (put), for σ·√T > 0."""
    spread = sigma * math.sqrt(years)
    d1 = (math.log(spot / strike) + spread * spread / 2) / spread
    return NORMAL.cdf(d1) - (0.0 if call else 1.0)


BTC, ETH, SOL = 0, 1, 2

# One tier at 10% initial / 5% maintenance: margin.md's example instrument.
FLAT_10 = ((0.0, 0.10, 0.05),)


def risk(**overrides: object) -> RiskArrays:
    return RiskParameters(**overrides).arrays(UNIVERSE)  # type: ignore[arg-type]


@dataclass
class Leg:
    size: float
    mark: float
    entry: float | None = None
    underlying: int = BTC
    tiers: Sequence[tuple[float, float, float | None]] = FLAT_10
    isolated_margin: float = 0.0
    leverage: float = float("nan")
    funding_rate: float = 0.0
    perpetual: bool = True
    tick: float = 0.1
    contract_size: float = 1.0


def positions(*legs: Leg) -> Positions:
    return Positions.create(
        size=[leg.size for leg in legs],
        contract_size=[leg.contract_size for leg in legs],
        entry_price=[leg.mark if leg.entry is None else leg.entry for leg in legs],
        mark=[leg.mark for leg in legs],
        tiers=TierTable.from_rows([list(leg.tiers) for leg in legs])
        if legs
        else TierTable(np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1))),
        underlying=np.array([leg.underlying for leg in legs], dtype=np.intp),
        tick_size=[leg.tick for leg in legs],
        isolated_margin=[leg.isolated_margin for leg in legs],
        leverage=[leg.leverage for leg in legs],
        funding_rate=[leg.funding_rate for leg in legs],
        is_perpetual=np.array([leg.perpetual for leg in legs], dtype=bool),
    )


@dataclass
class Asset:
    balance: float
    price: float = 1.0
    weight: float = 1.0
    underlying: int = -1


def collateral(*assets: Asset) -> Collateral:
    return Collateral.create(
        balance=[a.balance for a in assets],
        price=[a.price for a in assets],
        weight=[a.weight for a in assets],
        underlying=np.array([a.underlying for a in assets], dtype=np.intp),
    )


def usdc(amount: float) -> Collateral:
    return collateral(Asset(amount))


@dataclass
class Book:
    legs: list[Leg] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)

    def positions(self) -> Positions:
        return positions(*self.legs)

    def collateral(self) -> Collateral:
        return collateral(*self.assets)
