"""Risk parameters: margin.md defaults, JSON round trip, validation, per-universe arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.engine import RiskParameters


def test_defaults_follow_margin_md():
    p = RiskParameters()
    assert (p.scan_range("BTC"), p.scan_range("ETH"), p.scan_range("DOGE")) == (0.10, 0.12, 0.20)
    assert p.correlation("BTC", "ETH") == 0.8
    assert p.correlation("BTC", "BTC") == 1.0
    assert p.spread_rate("SOL") == 0.01
    assert (p.floor_rate, p.im_multiplier, p.withdrawal_floor) == (0.005, 1.25, 0.0)
    assert (p.default_slippage, p.margin_call_warning, p.margin_call_liquidation) == (
        0.005,
        0.8,
        1.0,
    )
    assert p.settlement_decimals == 6


def test_arrays_for_a_universe():
    p = RiskParameters(correlations={"ETH/BTC": 0.9}, spread_rates={"ETH": 0.02})
    a = p.arrays(("BTC", "ETH", "SOL"))
    np.testing.assert_allclose(a.scan_range, [0.10, 0.12, 0.20])
    np.testing.assert_allclose(a.spread_rate, [0.01, 0.02, 0.01])
    np.testing.assert_allclose(a.correlation, [[1.0, 0.9, 0.8], [0.9, 1.0, 0.8], [0.8, 0.8, 1.0]])
    assert a.index("SOL") == 2


def test_json_round_trip():
    p = RiskParameters(
        scan_ranges={"BTC": 0.08, "DOGE": 0.3}, correlations={"BTC/ETH": 0.95}, withdrawal_floor=0.1
    )
    text = json.dumps(p.to_dict())
    assert RiskParameters.from_dict(json.loads(text)) == p
    assert RiskParameters.from_dict({}) == RiskParameters()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "unknown risk parameter"),
        ({"floor_rate": -0.1}, "floor_rate"),
        ({"scan_ranges": {"BTC": 1.5}}, "scan_ranges"),
        ({"correlations": {"BTC": 0.5}}, "A/B"),
        ({"correlations": {"BTC/ETH": 2}}, "correlations"),
        ({"im_multiplier": 0.5}, "im_multiplier"),
        ({"settlement_decimals": 2.5}, "settlement_decimals"),
        ({"floor_rate": "0.1"}, "floor_rate"),
        ({"scan_ranges": {"X": 0.6}, "spread_rates": {"X": 0.5}}, "below 1"),
    ],
)
def test_validation_names_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        RiskParameters.from_dict(data)


def test_non_psd_correlation_is_refused_for_a_universe():
    p = RiskParameters(correlations={"A/B": 0.9, "A/C": 0.9, "B/C": -0.9})
    with pytest.raises(ValueError, match="semi-definite"):
        p.arrays(("A", "B", "C"))
