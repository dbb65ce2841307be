"""Properties the methodology promises for every book, not just the worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine import margin_summary, portfolio_charges
from tests.engine.helpers import BTC, Asset, Book, Leg, collateral, positions, risk
from tests.engine.strategies import PROPERTY, books, legs


@PROPERTY
@given(book=books(), which=st.integers(0, 10), factor=st.floats(1.0, 20.0))
def test_no_standard_requirement_falls_as_a_position_grows(book, which, factor):
    if not book.legs:
        return
    j = which % len(book.legs)
    before = margin_summary(book.positions(), book.collateral(), risk(), "cross")
    book.legs[j].size *= factor
    after = margin_summary(book.positions(), book.collateral(), risk(), "cross")
    tolerance = 1e-9 * (1.0 + after.gross_notional)
    assert after.positions.initial_margin[j] >= before.positions.initial_margin[j] - tolerance
    assert (
        after.positions.maintenance_margin[j] >= before.positions.maintenance_margin[j] - tolerance
    )
    assert after.standard_initial_margin >= before.standard_initial_margin - tolerance
    assert after.maintenance_margin >= before.maintenance_margin - tolerance


@PROPERTY
@given(leg=legs(), factor=st.floats(1.0, 20.0))
def test_no_portfolio_requirement_falls_as_an_unhedged_position_grows(leg, factor):
    # Growing a lone position only adds exposure (a hedge leg growing may of course reduce it).
    book = Book(legs=[leg], assets=[Asset(1_000_000.0)])
    before = margin_summary(book.positions(), book.collateral(), risk(), "portfolio")
    leg.size *= factor
    after = margin_summary(book.positions(), book.collateral(), risk(), "portfolio")
    assert after.maintenance_margin >= before.maintenance_margin * (1 - 1e-12)
    assert after.initial_margin >= before.initial_margin * (1 - 1e-12)


@PROPERTY
@given(book=books(), underlying=st.integers(0, 2), hedge_with_collateral=st.booleans())
def test_a_perfectly_hedged_single_underlying_book_has_no_directional_charge(
    book, underlying, hedge_with_collateral
):
    # Keep only exposure to one underlying, then offset its dollar delta exactly.
    book.legs = [leg for leg in book.legs if leg.underlying == underlying]
    book.assets = [a for a in book.assets if a.underlying in (-1, underlying)]
    delta = sum(leg.size * leg.contract_size * leg.mark for leg in book.legs) + sum(
        a.balance * a.price for a in book.assets if a.underlying == underlying
    )
    if hedge_with_collateral:
        book.assets.append(Asset(-delta / 1_000.0, price=1_000.0, underlying=underlying))
    else:
        book.legs.append(Leg(-delta / 1_000.0, 1_000.0, underlying=underlying))
    parts = portfolio_charges(book.positions(), book.collateral(), risk())
    gross = float(np.abs(parts.long).sum() + np.abs(parts.short).sum())
    assert float(parts.directional) <= 1e-9 * (1.0 + gross)


def test_hedged_book_example():
    # Long 3 BTC-PERP at 65,000 = 195,000; short 2 BTC-0327 at 65,500 = 131,000; a BTC debt of
    # −64,000/65,000 BTC at 65,000 = −64,000. D = 195,000 − 131,000 − 64,000 = 0 → directional 0.
    # Legs: long 195,000, short 131,000 + 64,000 = 195,000 → basis = 0.01·195,000 = 1,950.
    book = positions(Leg(3, 65_000), Leg(-2, 65_500, perpetual=False))
    coll = collateral(Asset(100_000), Asset(-64_000 / 65_000, price=65_000, underlying=BTC))
    parts = portfolio_charges(book, coll, risk())
    assert float(parts.directional) < 1e-9
    assert float(parts.basis) == pytest.approx(1_950.0)
