"""The batch form equals the one-subaccount form, field by field."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine import (
    SUMMARY_FIELDS,
    BatchBook,
    MarginMode,
    batch_stress,
    batch_summary,
    margin_summary,
    stress,
)
from tests.engine.helpers import UNIVERSE, Leg, positions, risk, usdc
from tests.engine.strategies import PROPERTY, books

subaccounts = st.lists(
    st.tuples(books(max_legs=4), st.sampled_from(list(MarginMode)), st.floats(0.0, 50_000.0)),
    min_size=1,
    max_size=5,
)


def close(a: float | None, b: float | None, scale: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * scale


@PROPERTY
@given(accounts=subaccounts, shuffle=st.randoms(use_true_random=False))
def test_batch_summary_equals_one_at_a_time(accounts, shuffle):
    built = [(b.positions(), b.collateral(), mode, reserved) for b, mode, reserved in accounts]
    book = BatchBook.from_books(built)
    # Rows need not be grouped by owner: permute them.
    order = np.array(shuffle.sample(range(book.positions.n), book.positions.n), dtype=np.intp)
    book = BatchBook(
        positions=book.positions.take(order),
        position_owner=book.position_owner[order],
        collateral=book.collateral,
        collateral_owner=book.collateral_owner,
        modes=book.modes,
        reserved_initial_margin=book.reserved_initial_margin,
    )
    got = batch_summary(book, risk())
    for i, (pos, coll, mode, reserved) in enumerate(built):
        alone = margin_summary(pos, coll, risk(), mode, reserved).scalars()
        row = got.row(i)
        scale = 1.0 + sum(abs(v) for v in alone.values() if v is not None)
        for name in SUMMARY_FIELDS:
            ratio = name in ("initial_margin_ratio", "maintenance_margin_ratio", "leverage")
            if ratio and alone[name] is not None and abs(alone["equity"]) < 1e-6 * scale:
                continue  # a ratio over an equity that is float noise away from 0
            assert close(
                row[name], alone[name], scale if not ratio else 1.0 + abs(alone[name] or 0)
            ), (name, row[name], alone[name])


@PROPERTY
@given(
    accounts=subaccounts,
    move=st.lists(st.floats(-0.6, 0.6), min_size=len(UNIVERSE), max_size=len(UNIVERSE)),
)
def test_batch_stress_equals_one_at_a_time(accounts, move):
    built = [(b.positions(), b.collateral(), mode, reserved) for b, mode, reserved in accounts]
    got = batch_stress(BatchBook.from_books(built), risk(), np.array(move))
    for i, (pos, coll, mode, _) in enumerate(built):
        alone = stress(pos, coll, risk(), mode, np.array([move]))
        scale = 1.0 + abs(float(alone.equity[0])) + abs(float(alone.maintenance_margin[0]))
        for name in ("equity", "maintenance_margin", "shortfall", "deficit"):
            assert abs(getattr(got, name)[i] - getattr(alone, name)[0]) <= 1e-9 * scale, name
        if abs(float(alone.equity[0] - alone.maintenance_margin[0])) > 1e-9 * scale:
            assert got.liquidatable[i] == alone.liquidatable[0]


def test_mixed_modes_by_hand():
    # Subaccount 0 (cross): 100,000 USDC, long 10 BTC at 65,000 → IM 65,000, F = 35,000.
    # Subaccount 1 (portfolio): margin.md's basis book, 100,000 USDC → IM 8,125, F = 91,875.
    # Subaccount 2 (isolated): 1,000 USDC, nothing open → F = 1,000.
    basis = positions(Leg(10, 65_000), Leg(-10, 65_000, perpetual=False))
    book = BatchBook.from_books(
        [
            (positions(Leg(10, 65_000)), usdc(100_000), "cross", 0.0),
            (basis, usdc(100_000), "portfolio", 0.0),
            (positions(), usdc(1_000), "isolated", 0.0),
        ]
    )
    got = batch_summary(book, risk())
    assert got.initial_margin.tolist() == pytest.approx([65_000, 8_125, 0])
    assert got.free_collateral.tolist() == pytest.approx([35_000, 91_875, 1_000])
    assert got.standard_initial_margin.tolist() == pytest.approx([65_000, 130_000, 0])


def test_batch_validation():
    with pytest.raises(ValueError, match="position_owner"):
        BatchBook(
            positions=positions(Leg(1, 65_000)),
            position_owner=np.array([3]),
            collateral=usdc(1),
            collateral_owner=np.array([0]),
            modes=np.array([1]),
            reserved_initial_margin=np.array([0.0]),
        )
