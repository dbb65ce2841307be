from __future__ import annotations

import math
from datetime import date as date_type
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictFloat, field_validator

from app.core.types import Identifier, Money, StrictIn, Timestamp


class MarginSummaryOut(BaseModel):
    """api.md ``MarginSummary``: requirements rounded up, equity rounded down (6 places)."""

    equity: Money
    collateral_value: Money
    unrealized_pnl: Money
    initial_margin: Money = Field(
        description="Positions' IM in the subaccount's mode + reserved IM"
    )
    maintenance_margin: Money
    reserved_initial_margin: Money
    free_collateral: Money
    withdrawable: Money
    initial_margin_ratio: float | None
    maintenance_margin_ratio: float | None
    leverage: float | None
    gross_notional: Money
    next_funding: Money = Field(description="Due at the next funding of each perpetual; < 0 pays")
    standard_initial_margin: Money
    portfolio_initial_margin: Money


class GreeksOut(BaseModel):
    """An option position's Black-76 greeks, the per-unit greeks × q·k (margin.md "Options")."""

    delta: Money = Field(description="In units of the underlying")
    gamma: Money = Field(description="Change of delta per unit move of the underlying's index")
    vega: Money = Field(description="Change of value per volatility point (σ + 0.01)")


class PositionMarginOut(BaseModel):
    instrument: str
    size: Money
    entry_price: Money
    mark: Money
    notional: Money
    unrealized_pnl: Money
    initial_margin: Money
    maintenance_margin: Money
    isolated_margin: Money
    liquidation_price: Money | None
    greeks: GreeksOut | None = Field(None, description="Options only; null for other positions")


class MarkUsedOut(BaseModel):
    price: Money
    status: str = Field(description="fresh | stale | deviating | missing")
    age_ms: int | None


class SubaccountMarginOut(BaseModel):
    subaccount_id: str
    margin_mode: str
    as_of: Timestamp
    summary: MarginSummaryOut
    positions: list[PositionMarginOut]
    marks: dict[str, MarkUsedOut]


class SubaccountTotalOut(BaseModel):
    subaccount_id: str
    margin_mode: str
    summary: MarginSummaryOut


class AccountMarginOut(BaseModel):
    account_id: str
    as_of: Timestamp
    total: MarginSummaryOut = Field(description="Sums over subaccounts; ratios of the sums")
    subaccounts: list[SubaccountTotalOut]


class RiskParametersBody(RootModel[dict[str, Any]]):
    """Every parameter of the methodology; a PUT replaces them all (absent = default)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "scan_ranges": {"BTC": 0.1, "ETH": 0.12},
                "default_scan_range": 0.2,
                "correlations": {"BTC/ETH": 0.8},
                "default_correlation": 0.8,
                "spread_rates": {},
                "default_spread_rate": 0.01,
                "floor_rate": 0.005,
                "im_multiplier": 1.25,
                "withdrawal_floor": 0.0,
                "default_slippage": 0.005,
                "margin_call_warning": 0.8,
                "margin_call_liquidation": 1.0,
                "settlement_decimals": 6,
            }
        }
    )


class OverviewRow(MarginSummaryOut):
    subaccount_id: str
    account_id: str
    margin_mode: str


class OverviewOut(BaseModel):
    as_of: Timestamp
    subaccounts: list[OverviewRow]
    next_cursor: str | None


class ScenarioIn(StrictIn):
    # No NUL: the name is echoed, and audited where a scenario is stored.
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")
    # Strict: a JSON number only (lax float would take true/false as 1/0 and "0.1" strings).
    shocks: dict[Identifier, StrictFloat] = Field(
        description='Relative move per underlying, e.g. {"BTC": -0.2}; unlisted ones do not move'
    )

    vol_shocks: dict[Identifier, StrictFloat] | None = Field(
        None,
        description='Relative move of implied volatility per underlying, e.g. {"BTC": 0.5}: '
        "every option on it is revalued at σ·(1 + 0.5); unlisted ones (and null) do not move",
    )

    @field_validator("shocks", "vol_shocks")
    @classmethod
    def _moves(cls, shocks: dict[str, float] | None) -> dict[str, float] | None:
        for underlying, move in (shocks or {}).items():
            if not math.isfinite(move) or move < -1 or move > 10:
                raise ValueError(f"{underlying}: a move must lie between -1 and 10")
        return shocks


class StressIn(StrictIn):
    scenarios: list[ScenarioIn] | None = Field(
        None, max_length=200, description="Default: the methodology's grid"
    )


class ScenarioOut(BaseModel):
    name: str
    shocks: dict[str, float]
    vol_shocks: dict[str, float] = Field(description="The volatility moves applied ({} if none)")
    equity: Money
    maintenance_margin: Money
    maintenance_margin_ratio: float | None
    shortfall: Money
    deficit: Money
    liquidatable: bool


class StressOut(BaseModel):
    subaccount_id: str
    margin_mode: str
    as_of: Timestamp
    scenarios: list[ScenarioOut]


class BookStressIn(StrictIn):
    scenario: ScenarioIn


class LiquidatedOut(BaseModel):
    subaccount_id: str
    account_id: str
    margin_mode: str
    equity: Money
    maintenance_margin: Money
    shortfall: Money
    deficit: Money


class BookStressOut(BaseModel):
    name: str
    shocks: dict[str, float]
    as_of: Timestamp
    subaccounts: int
    liquidated: list[LiquidatedOut]
    total_shortfall: Money
    total_deficit: Money


class MarginCallOut(BaseModel):
    id: str
    subaccount_id: str
    account_id: str
    level: Literal["warning", "liquidation", "limit"]
    subject: str = Field(
        description="For a limit call, the limit's name (``<limit>:<symbol>`` for a per-symbol"
        " cap: max_position_notional, max_underlying_notional); for an isolated position's,"
        " its instrument"
    )
    status: Literal["open", "acknowledged", "resolved"]
    ratio: float | None = Field(description="maintenance_margin_ratio (a limit's usage share)")
    shortfall: Money = Field(description="What a deposit must bring to get back below the level")
    raised_at: Timestamp
    resolved_at: Timestamp | None
    acknowledged_at: Timestamp | None
    acknowledged_by: str | None


class MarginCallList(BaseModel):
    margin_calls: list[MarginCallOut]


class MarginReportRow(MarginSummaryOut):
    subaccount_id: str
    account_id: str
    margin_mode: str


class MarginReportOut(BaseModel):
    date: date_type
    as_of: Timestamp = Field(description="When the figures were computed")
    live: bool = Field(description="True for today (computed now), False for a captured day")
    subaccounts: list[MarginReportRow]
