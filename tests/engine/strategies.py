"""Hypothesis strategies: small random books over BTC / ETH / SOL."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

from tests.engine.helpers import Asset, Book, Leg

# Applied to each property test (not as a global profile, which would reach other suites):
# enough examples to find the edge cases, few enough to keep the engine suite near 10 s.
PROPERTY = settings(max_examples=60, deadline=None)

PRICES = (65_000.0, 3_000.0, 150.0)
TICKS = (0.1, 0.01, 0.001)
TIER_TABLES = (
    ((0.0, 0.10, 0.05),),
    ((0.0, 0.02, 0.01), (1_000_000.0, 0.05, 0.025), (5_000_000.0, 0.10, 0.05)),
    ((0.0, 0.05, None), (200_000.0, 0.20, None)),
)


@st.composite
def legs(draw: st.DrawFn) -> Leg:
    u = draw(st.integers(0, 2))
    mark = PRICES[u] * draw(st.floats(0.5, 1.5))
    notional = draw(st.floats(100.0, 3_000_000.0))
    side = draw(st.sampled_from((1.0, -1.0)))
    size = side * notional / mark
    return Leg(
        size=size,
        mark=mark,
        entry=mark * draw(st.floats(0.8, 1.2)),
        underlying=u,
        tiers=draw(st.sampled_from(TIER_TABLES)),
        isolated_margin=notional * draw(st.floats(0.0, 0.5)),
        leverage=draw(st.sampled_from((float("nan"), 0.0, 2.0, 10.0, 50.0))),
        funding_rate=draw(st.floats(-0.001, 0.001)),
        perpetual=draw(st.booleans()),
        tick=TICKS[u],
    )


@st.composite
def assets(draw: st.DrawFn) -> list[Asset]:
    out = [Asset(draw(st.floats(-200_000.0, 2_000_000.0)))]
    for u in draw(st.lists(st.integers(0, 2), max_size=2, unique=True)):
        price = PRICES[u] * draw(st.floats(0.5, 1.5))
        out.append(
            Asset(
                balance=draw(st.floats(-500_000.0, 1_000_000.0)) / price,
                price=price,
                weight=draw(st.floats(0.0, 1.0)),
                underlying=u,
            )
        )
    return out


@st.composite
def books(draw: st.DrawFn, max_legs: int = 5) -> Book:
    return Book(
        legs=draw(st.lists(legs(), min_size=0, max_size=max_legs)),
        assets=draw(assets()),
    )
