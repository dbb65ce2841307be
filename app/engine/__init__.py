"""Preflight's margin engine: pure functions over numpy arrays (numpy and the standard library only).

The methodology is ``shared/spec/margin.md``; ``docs/methodology.md`` restates every formula with a
worked example. Nothing here does I/O, holds state or knows about Decimal except ``rounding``.

Input contract (the caller converts from Decimal and keeps arrays resident):

- ``Positions`` of one subaccount, arrays (n,): signed size q (base units), contract size k,
  entry price e, mark m > 0, isolated margin A (isolated mode only; pass 0 otherwise), chosen
  leverage (0 or nan = none), next funding rate f (0 for futures), is_perpetual, tick size,
  underlying index into the universe, and a ``TierTable`` (n, T) of floors (padding +inf), imf,
  mmf (NaN mmf = imf/2). Flat rows (q = 0) are allowed and contribute nothing.
- ``Collateral`` of one subaccount, arrays (a,): balance (negative = debt), price, weight,
  underlying index (−1 for the settlement asset or none).
- ``RiskArrays`` from ``RiskParameters().arrays(universe)``: the parameters materialised for a tuple
  of underlying names; every underlying index refers to that tuple.
- ``reserved_initial_margin``: the IM of the subaccount's active reservations (a float).
- A margin mode: ``MarginMode.ISOLATED | CROSS | PORTFOLIO`` (or its string).

Amounts are settlement-asset floats; the conversion back to decimals (requirements up, equity
down, float noise snapped) is ``rounding``. ``batch`` evaluates many subaccounts at once.
"""

from app.engine.batch import BatchBook, batch_stress, batch_summary
from app.engine.liquidation import (
    IsolatedPositions,
    cross_liquidation_prices,
    isolated_liquidation_prices,
    isolated_positions,
    portfolio_liquidation_prices,
    solve_tiered,
)
from app.engine.option_portfolio import (
    PRICE_MOVES,
    VOLATILITY_DIRECTIONS,
    OptionPortfolioCharges,
    option_portfolio_charges,
    option_scenario_pnl,
    volatility_moves,
)
from app.engine.options import (
    SECONDS_PER_YEAR,
    Black76,
    OptionTerms,
    OptionValues,
    black76,
    black76_value,
    normal_cdf,
    normal_pdf,
    option_values,
    short_option_margins,
    stressed_option_value_changes,
    years_to_expiry,
)
from app.engine.parameters import AutoReduceOnly, RiskArrays, RiskParameters
from app.engine.portfolio import PortfolioCharges, charges_from_legs, portfolio_charges
from app.engine.rounding import (
    SNAP_ABSOLUTE,
    SNAP_ULPS,
    Direction,
    conservative_free_collateral,
    equity_to_decimal,
    liquidation_price_text,
    liquidation_price_to_decimal,
    requirement_to_decimal,
    snap_tolerance,
    summary_to_decimals,
    to_decimal,
    to_floats,
)
from app.engine.stress import (
    Scenario,
    default_scenarios,
    shock_matrix,
    shocked_prices,
    stress,
)
from app.engine.summary import (
    BookValues,
    book_values,
    collateral_values,
    margin_summary,
)
from app.engine.tiers import (
    TierTable,
    deductions_from_tiers,
    fill_default_mmf,
    position_margins,
    tiered_margins,
    tiers_from_deductions,
)
from app.engine.types import (
    RATIO_FIELDS,
    SUMMARY_FIELDS,
    BatchSummary,
    Collateral,
    MarginMode,
    MarginSummary,
    PositionMargins,
    Positions,
    StressResult,
    mode_codes,
)

__all__ = [
    "PRICE_MOVES",
    "RATIO_FIELDS",
    "SECONDS_PER_YEAR",
    "SNAP_ABSOLUTE",
    "SNAP_ULPS",
    "SUMMARY_FIELDS",
    "VOLATILITY_DIRECTIONS",
    "AutoReduceOnly",
    "BatchBook",
    "BatchSummary",
    "Black76",
    "BookValues",
    "Collateral",
    "Direction",
    "IsolatedPositions",
    "MarginMode",
    "MarginSummary",
    "OptionPortfolioCharges",
    "OptionTerms",
    "OptionValues",
    "PortfolioCharges",
    "PositionMargins",
    "Positions",
    "RiskArrays",
    "RiskParameters",
    "Scenario",
    "StressResult",
    "TierTable",
    "batch_stress",
    "batch_summary",
    "black76",
    "black76_value",
    "book_values",
    "charges_from_legs",
    "collateral_values",
    "conservative_free_collateral",
    "cross_liquidation_prices",
    "deductions_from_tiers",
    "default_scenarios",
    "equity_to_decimal",
    "fill_default_mmf",
    "isolated_liquidation_prices",
    "isolated_positions",
    "liquidation_price_text",
    "liquidation_price_to_decimal",
    "margin_summary",
    "mode_codes",
    "normal_cdf",
    "normal_pdf",
    "option_portfolio_charges",
    "option_scenario_pnl",
    "option_values",
    "portfolio_charges",
    "portfolio_liquidation_prices",
    "position_margins",
    "requirement_to_decimal",
    "shock_matrix",
    "shocked_prices",
    "short_option_margins",
    "snap_tolerance",
    "solve_tiered",
    "stress",
    "stressed_option_value_changes",
    "summary_to_decimals",
    "tiered_margins",
    "tiers_from_deductions",
    "to_decimal",
    "to_floats",
    "volatility_moves",
    "years_to_expiry",
]
