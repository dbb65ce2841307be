"""The check evaluates the book after a basket by patching the rows of the book before it:
the numbers are the ones a full conversion gives, whichever rows the basket touches."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from app.accounts.fills import SimulatedFill
from app.engine import RiskParameters
from app.instruments.models import Asset, Instrument
from app.risk.book import Book, Holding, MarkUsed
from app.risk.service import evaluate

D = Decimal
TIERS = [
    {"notional_floor": "0", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05"}
]


def instrument(symbol: str, underlying: str) -> Instrument:
    return Instrument(
        symbol=symbol,
        kind="perpetual",
        underlying=underlying,
        contract_size=D(1),
        tick_size=D("0.1"),
        lot_size=D("0.001"),
        margin_tiers=TIERS,
        taker_fee_rate=D("0.0005"),
        maker_fee_rate=D("0.0002"),
    )


INSTRUMENTS = {
    "BTC-PERP": instrument("BTC-PERP", "BTC"),
    "ETH-PERP": instrument("ETH-PERP", "ETH"),
    "SOL-PERP": instrument("SOL-PERP", "SOL"),
}
ASSETS = {"USDC": Asset(symbol="USDC", collateral_weight=D(1), underlying=None, is_settlement=True)}
MARKS = {
    "BTC-PERP": MarkUsed(D(50000), "fresh", 10),
    "ETH-PERP": MarkUsed(D(3000), "fresh", 10),
    "SOL-PERP": MarkUsed(D(100), "fresh", 10),
}


def before_book() -> Book:
    return Book(
        subaccount_id="s1",
        account_id="a1",
        strategy=None,
        margin_mode="cross",
        settlement="USDC",
        holdings=(
            Holding("BTC-PERP", D(1), D(49000), D(0)),
            Holding("ETH-PERP", D(-10), D(3100), D(0)),
        ),
        balances={"USDC": D(20000)},
        instruments=INSTRUMENTS,
        assets=ASSETS,
        leverage={},
        marks=MARKS,
    )


def buy(symbol: str, size: str, price: str) -> SimulatedFill:
    return SimulatedFill(symbol, "buy", D(size), D(price), D(0))


@pytest.mark.parametrize(
    "fills",
    [
        [buy("BTC-PERP", "0.5", "50000")],  # a held row grows: patched
        [buy("SOL-PERP", "10", "100")],  # a new row: converted in full
        [buy("ETH-PERP", "10", "3000")],  # a row closed: converted in full
    ],
)
def test_after_a_basket_equals_the_full_conversion(fills: list[SimulatedFill]) -> None:
    parameters = RiskParameters()
    before = evaluate(before_book(), parameters)
    after_book = before_book().with_fills(fills)
    patched = evaluate(after_book, parameters, like=before)
    full = evaluate(after_book, parameters)
    assert patched.summary.scalars() == full.summary.scalars()
    assert patched.rounded == full.rounded
    for name in ("size", "mark", "entry_price", "initial_margin", "liquidation_price"):
        left = getattr(patched.summary.positions, name, None)
        right = getattr(full.summary.positions, name, None)
        if left is None:
            left = getattr(patched.inputs.positions, name)
            right = getattr(full.inputs.positions, name)
        np.testing.assert_array_equal(left, right)


def test_a_grown_position_and_a_moved_mark_are_both_seen() -> None:
    """BTC grows from 1 to 1.5 and ETH's mark moves to 3200 between the two books: IM by hand
    is 10 % of 1.5 · 50,000 + 10 % of 10 · 3,200 = 7,500 + 3,200 = 10,700."""
    parameters = RiskParameters()
    before = evaluate(before_book(), parameters)
    moved = {**MARKS, "ETH-PERP": MarkUsed(D(3200), "fresh", 10)}
    after_book = replace(before_book(), marks=moved).with_fills([buy("BTC-PERP", "0.5", "50000")])
    after = evaluate(after_book, parameters, like=before)
    assert after.rounded["initial_margin"] == D(10700)
    # equity: 20,000 + 1.5 · 50,000 − 49,000 − 0.5 · 50,000 … as unrealised PnL:
    # BTC (1.5 at an average entry of 49,333.33…) at 50,000 → +1,000; ETH −10 · (3,200 − 3,100)
    # → −1,000: equity 20,000.
    assert after.rounded["equity"] == D(20000)
