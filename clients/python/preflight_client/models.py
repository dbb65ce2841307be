"""The API's request and response models, generated from openapi/openapi.json by
clients/python/generate.py: do not edit by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, RootModel

from preflight_client._base import RequestModel, ResponseModel, new_id

__all__ = [
    "AccountIn",
    "AccountLimitsIn",
    "AccountList",
    "AccountMarginOut",
    "AccountOut",
    "ApiKeyIn",
    "ApiKeyList",
    "ApiKeyOut",
    "AssetIn",
    "AssetList",
    "AssetOut",
    "AuditEntryOut",
    "AuditPage",
    "BalanceDifference",
    "BalancesOut",
    "BookIn",
    "BookOut",
    "BookStressIn",
    "BookStressOut",
    "CheckIn",
    "CheckOut",
    "CountLimitIn",
    "CountLimitOut",
    "CreatedApiKeyOut",
    "ExecutionOut",
    "FieldError",
    "FillIn",
    "FillOut",
    "FillsIn",
    "FillsOut",
    "GreeksOut",
    "Health",
    "InstrumentIn",
    "InstrumentList",
    "InstrumentOut",
    "LeverageIn",
    "LimitIn",
    "LimitOut",
    "LimitsOut",
    "LiquidatedOut",
    "MarginCallList",
    "MarginCallOut",
    "MarginReportOut",
    "MarginReportRow",
    "MarginSummaryOut",
    "MarginTierIn",
    "MarginTierOut",
    "MarkIn",
    "MarkList",
    "MarkOut",
    "MarkUsedOut",
    "MarksAccepted",
    "MarksIn",
    "MaxScaleIn",
    "MaxScaleOut",
    "MaxSizeIn",
    "MaxSizeOut",
    "OrderIn",
    "OverviewOut",
    "OverviewRow",
    "PositionDifference",
    "PositionMarginOut",
    "PositionOut",
    "PositionsOut",
    "Problem",
    "Readiness",
    "Reason",
    "ReconcileOut",
    "ReservationLegOut",
    "ReservationList",
    "ReservationOut",
    "RiskParametersBody",
    "Role",
    "ScaledOrderOut",
    "ScenarioIn",
    "ScenarioOut",
    "SnapshotIn",
    "SnapshotPositionIn",
    "SourceOut",
    "StrategyLimitsIn",
    "StrategyLimitsOut",
    "StressIn",
    "StressOut",
    "SubaccountIn",
    "SubaccountLimitsIn",
    "SubaccountList",
    "SubaccountMarginOut",
    "SubaccountOut",
    "SubaccountPatch",
    "SubaccountTotalOut",
    "SymbolCapIn",
    "SymbolLimitIn",
    "SymbolLimitOut",
    "TradingStateIn",
    "TradingStateList",
    "TradingStateOut",
    "TransferIn",
    "TransferOut",
    "VerificationOut",
]


class AccountIn(RequestModel):
    account_id: str
    name: str


class CountLimitIn(RequestModel):
    value: int
    warn_at: Decimal = Decimal("0.8")


class LimitIn(RequestModel):
    value: Decimal
    warn_at: Decimal = Field(Decimal("0.8"), description="Alert when usage crosses this share")


class StrategyLimitsIn(RequestModel):
    max_gross_notional: Decimal | LimitIn


class SymbolCapIn(RequestModel):
    value: Decimal
    warn_at: Decimal | None = Field(None, description="Default: the limit's own warn_at")


class SymbolLimitIn(RequestModel):
    """A cap per symbol: ``value`` for every symbol, ``by_symbol`` replacing it for some (a symbol
    with neither is uncapped). Symbols need not be listed yet: a desk may cap an instrument
    before it trades.
    """

    by_symbol: dict[str, Decimal | SymbolCapIn] | None = None
    value: Decimal | None = None
    warn_at: Decimal = Field(Decimal("0.8"), description="Alert when usage crosses this share")


class AccountLimitsIn(RequestModel):
    max_daily_loss: Decimal | LimitIn | None = Field(
        None, description="Realised + unrealised PnL since 00:00 UTC"
    )
    max_gross_notional: Decimal | LimitIn | None = None
    max_leverage: Decimal | LimitIn | None = None
    max_open_orders: int | CountLimitIn | None = Field(None, description="Active reservations")
    max_order_notional: Decimal | LimitIn | None = None
    max_order_rate: int | CountLimitIn | None = Field(
        None, description="Accepted orders per sliding second"
    )
    max_position_notional: Decimal | SymbolLimitIn | None = Field(
        None, description="Per instrument; by_symbol keyed by instrument"
    )
    max_underlying_notional: Decimal | SymbolLimitIn | None = Field(
        None,
        description="Per underlying, long and short netted, then absolute; by_symbol keyed by underlying",
    )
    strategy_limits: dict[str, StrategyLimitsIn] | None = None


class CountLimitOut(ResponseModel):
    value: int
    warn_at: Decimal


class LimitOut(ResponseModel):
    value: Decimal
    warn_at: Decimal


class StrategyLimitsOut(ResponseModel):
    max_gross_notional: LimitOut


class SymbolLimitOut(ResponseModel):
    by_symbol: dict[str, LimitOut] | None = None
    value: Decimal | None = Field(
        None, description="The cap of every symbol without its own; null: those are uncapped"
    )
    warn_at: Decimal


class LimitsOut(ResponseModel):
    max_daily_loss: LimitOut | None = None
    max_gross_notional: LimitOut | None = None
    max_leverage: LimitOut | None = None
    max_open_orders: CountLimitOut | None = None
    max_order_notional: LimitOut | None = None
    max_order_rate: CountLimitOut | None = None
    max_position_notional: SymbolLimitOut | None = None
    max_underlying_notional: SymbolLimitOut | None = None
    strategy_limits: dict[str, StrategyLimitsOut] | None = None


class AccountOut(ResponseModel):
    account_id: str
    created_at: str
    limits: LimitsOut
    name: str
    subaccounts: list[str]


class AccountList(ResponseModel):
    accounts: list[AccountOut]


class MarginSummaryOut(ResponseModel):
    """api.md ``MarginSummary``: requirements rounded up, equity rounded down (6 places)."""

    collateral_value: Decimal
    equity: Decimal
    free_collateral: Decimal
    gross_notional: Decimal
    initial_margin: Decimal = Field(
        description="Positions' IM in the subaccount's mode + reserved IM"
    )
    initial_margin_ratio: float | None
    leverage: float | None
    maintenance_margin: Decimal
    maintenance_margin_ratio: float | None
    next_funding: Decimal = Field(description="Due at the next funding of each perpetual; < 0 pays")
    portfolio_initial_margin: Decimal
    reserved_initial_margin: Decimal
    standard_initial_margin: Decimal
    unrealized_pnl: Decimal
    withdrawable: Decimal


class SubaccountTotalOut(ResponseModel):
    margin_mode: str
    subaccount_id: str
    summary: MarginSummaryOut


class AccountMarginOut(ResponseModel):
    account_id: str
    as_of: str
    subaccounts: list[SubaccountTotalOut]
    total: MarginSummaryOut = Field(description="Sums over subaccounts; ratios of the sums")


Role = Literal["admin", "risk", "trader", "feeder", "auditor"]


class ApiKeyIn(RequestModel):
    accounts: list[str] | None = Field(
        None, description="Account scope; absent means every account"
    )
    label: str | None = None
    role: Role


class ApiKeyOut(ResponseModel):
    accounts: list[str] | None
    created_at: str
    key_id: str
    label: str | None
    revoked_at: str | None
    role: Role


class ApiKeyList(ResponseModel):
    api_keys: list[ApiKeyOut]


class AssetIn(RequestModel):
    collateral_weight: Decimal = Field(description="0–1; the haircut is 1 − weight")
    is_settlement: bool = False
    underlying: str | None = Field(None, description="Risk factor it moves with, e.g. BTC")


class AssetOut(ResponseModel):
    collateral_weight: Decimal
    is_settlement: bool
    symbol: str
    underlying: str | None
    updated_at: str


class AssetList(ResponseModel):
    assets: list[AssetOut]


class AuditEntryOut(ResponseModel):
    """One link of the chain: ``hash = sha256(prev_hash ‖ entry)``, where ``entry`` is the JSON
    object of {seq, kind, actor_key_id, account_id, subaccount_id, payload, created_at} with
    sorted keys, no whitespace, UTF-8, and the payload's stored text spliced in byte for byte.
    An export line carries that text as it is stored (the line without ``prev_hash`` and
    ``hash`` is ``entry``); a listed entry carries it parsed.
    """

    account_id: str | None
    actor_key_id: str | None
    created_at: str
    hash: str
    kind: str
    payload: dict[str, Any] | str = Field(
        description="The JSON object recorded; the stored text only if a row was edited into something that is not one (verify names such a row)"
    )
    prev_hash: str
    seq: int
    subaccount_id: str | None


class AuditPage(ResponseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class BalanceDifference(ResponseModel):
    asset: str
    difference: Decimal
    ours: Decimal
    venue: Decimal


class BalancesOut(ResponseModel):
    balances: dict[str, Decimal]
    subaccount_id: str


class BookIn(RequestModel):
    asks: list[tuple[Decimal, Decimal]] = Field(description="[price, size], best (lowest) first")
    bids: list[tuple[Decimal, Decimal]] = Field(description="[price, size], best (highest) first")
    ts: dt.datetime


class BookOut(ResponseModel):
    age_ms: int
    asks: list[list[Decimal]]
    bids: list[list[Decimal]]
    status: str = Field(description="fresh | stale")
    symbol: str
    ts: str


class ScenarioIn(RequestModel):
    name: str
    shocks: dict[str, float] = Field(
        description='Relative move per underlying, e.g. {"BTC": -0.2}; unlisted ones do not move'
    )
    vol_shocks: dict[str, float] | None = Field(
        None,
        description='Relative move of implied volatility per underlying, e.g. {"BTC": 0.5}: every option on it is revalued at σ·(1 + 0.5); unlisted ones (and null) do not move',
    )


class BookStressIn(RequestModel):
    scenario: ScenarioIn


class LiquidatedOut(ResponseModel):
    account_id: str
    deficit: Decimal
    equity: Decimal
    maintenance_margin: Decimal
    margin_mode: str
    shortfall: Decimal
    subaccount_id: str


class BookStressOut(ResponseModel):
    as_of: str
    liquidated: list[LiquidatedOut]
    name: str
    shocks: dict[str, float]
    subaccounts: int
    total_deficit: Decimal
    total_shortfall: Decimal


class OrderIn(RequestModel):
    _auto_ids: ClassVar[tuple[str, ...]] = ("client_order_id",)
    client_order_id: str | None = Field(
        default_factory=new_id, description="Idempotency id: a replay answers the first check"
    )
    instrument: str
    limit_price: Decimal | None = None
    reduce_only: bool = False
    side: Literal["buy", "sell"]
    size: Decimal
    time_in_force: Literal["gtc", "ioc", "fok"] = "gtc"
    type: Literal["market", "limit"]


class CheckIn(RequestModel):
    orders: list[OrderIn]
    reservation_ttl_s: int = 60
    reserve: bool = False
    subaccount_id: str


class ExecutionOut(ResponseModel):
    avg_price: Decimal | None
    book: Literal["fresh", "stale", "missing"]
    fee: Decimal
    filled_size: Decimal
    order_index: int
    price_source: Literal["book", "limit", "mark"]
    slippage_bps: float | None
    unfilled_size: Decimal


class MarkUsedOut(ResponseModel):
    age_ms: int | None
    price: Decimal
    status: str = Field(description="fresh | stale | deviating | missing")


class GreeksOut(ResponseModel):
    """An option position's Black-76 greeks, the per-unit greeks × q·k (margin.md "Options")."""

    delta: Decimal = Field(description="In units of the underlying")
    gamma: Decimal = Field(description="Change of delta per unit move of the underlying's index")
    vega: Decimal = Field(description="Change of value per volatility point (σ + 0.01)")


class PositionMarginOut(ResponseModel):
    entry_price: Decimal
    greeks: GreeksOut | None = Field(None, description="Options only; null for other positions")
    initial_margin: Decimal
    instrument: str
    isolated_margin: Decimal
    liquidation_price: Decimal | None
    maintenance_margin: Decimal
    mark: Decimal
    notional: Decimal
    size: Decimal
    unrealized_pnl: Decimal


class Reason(ResponseModel):
    code: Literal[
        "INSUFFICIENT_MARGIN",
        "MAX_ORDER_NOTIONAL",
        "MAX_POSITION_NOTIONAL",
        "MAX_UNDERLYING_NOTIONAL",
        "MAX_GROSS_NOTIONAL",
        "MAX_LEVERAGE",
        "STRATEGY_LIMIT",
        "ACCOUNT_LIMIT",
        "PRICE_BAND",
        "INSUFFICIENT_LIQUIDITY",
        "STALE_MARK",
        "ORACLE_DEVIATION",
        "HALTED",
        "REDUCE_ONLY",
        "LOT_SIZE",
        "TICK_SIZE",
        "LOSS_LIMIT",
        "MAX_OPEN_ORDERS",
        "ORDER_RATE",
    ]
    limit: Decimal | int | float | None = Field(None, description="What the rule allows")
    message: str
    order_index: int | None
    shortfall: Decimal | None = Field(
        None,
        description="INSUFFICIENT_MARGIN only: the smallest deposit of the settlement asset that lets the basket pass the margin rule",
    )
    value: Decimal | int | float | None = Field(
        None,
        description="What the basket would make the rule's quantity (money and sizes as decimal strings, ratios and counts as numbers); null for a rule that measures nothing",
    )


class CheckOut(ResponseModel):
    after: MarginSummaryOut
    as_of: str
    before: MarginSummaryOut
    check_id: str
    decision: Literal["accept", "reject"]
    executions: list[ExecutionOut]
    expires_at: str | None
    margin_mode: str
    marks: dict[str, MarkUsedOut]
    positions_after: list[PositionMarginOut]
    reasons: list[Reason]
    reservation_id: str | None


class CreatedApiKeyOut(ResponseModel):
    accounts: list[str] | None
    created_at: str
    key: str = Field(description="The key itself: shown in this response only")
    key_id: str
    label: str | None
    revoked_at: str | None
    role: Role


class FieldError(ResponseModel):
    field: str = Field(description="The request field at fault, e.g. ``fills[3].size``")
    message: str


class FillIn(RequestModel):
    _auto_ids: ClassVar[tuple[str, ...]] = ("fill_id",)
    client_order_id: str | None = None
    fee: Decimal = Field(description="Positive = paid; negative = rebate")
    fee_asset: str | None = Field(None, description="Default: the settlement asset")
    fill_id: str = Field(default_factory=new_id)
    instrument: str
    price: Decimal
    side: Literal["buy", "sell"]
    size: Decimal
    subaccount_id: str
    ts: dt.datetime


class FillOut(ResponseModel):
    client_order_id: str | None
    entry_price: Decimal = Field(description="The position's average entry after this fill")
    fee: Decimal
    fee_asset: str
    fill_id: str
    instrument: str
    position_size: Decimal = Field(description="The position's size after this fill")
    price: Decimal
    realized_pnl: Decimal = Field(description="PnL this fill realised, before fees")
    side: str
    size: Decimal
    subaccount_id: str
    ts: str


class FillsIn(RequestModel):
    fills: list[FillIn]


class FillsOut(ResponseModel):
    fills: list[FillOut]


class Health(ResponseModel):
    status: Literal["ok"]


class MarginTierIn(RequestModel):
    initial_margin_fraction: Decimal
    maintenance_margin_fraction: Decimal | None = Field(
        None, description="Defaults to half the initial margin fraction"
    )
    notional_floor: Decimal


class InstrumentIn(RequestModel):
    contract_size: Decimal = Decimal("1")
    expiry: dt.datetime | None = Field(
        None,
        description="Required for futures and options (in the future when an option is created)",
    )
    funding_interval_s: int | None = Field(None, description="Perpetuals only")
    kind: Literal["perpetual", "future", "option"]
    lot_size: Decimal
    maker_fee_rate: Decimal = Decimal("0")
    margin_tiers: list[MarginTierIn] | None = Field(
        None,
        description="1–64 tiers, required for a perpetual or a future; absent or empty for an option (options are not margined by tiers)",
    )
    max_order_notional: Decimal | None = None
    max_twap_deviation: Decimal | None = Field(None, description="Default 0.05")
    option_type: Literal["call", "put"] | None = Field(None, description="Options only; required")
    price_band: Decimal | None = Field(None, description="max |limit − mark| / mark")
    stale_after_s: Decimal | None = Field(None, description="Default 5")
    strike: Decimal | None = Field(None, description="Options only; required, > 0")
    taker_fee_rate: Decimal = Decimal("0")
    tick_size: Decimal
    underlying: str = Field(
        description="Risk factor; for an option, the symbol whose mark is its index (e.g. BTC)"
    )


class MarginTierOut(ResponseModel):
    initial_margin_fraction: Decimal
    maintenance_margin_fraction: Decimal
    notional_floor: Decimal


class InstrumentOut(ResponseModel):
    contract_size: Decimal
    expiry: str | None
    funding_interval_s: int | None
    kind: str
    lot_size: Decimal
    maker_fee_rate: Decimal
    margin_tiers: list[MarginTierOut] = Field(description="Empty for an option")
    max_leverage: Decimal | None = Field(
        description="1 / the first tier's initial margin fraction: the most a chosen leverage may be; null for an option (no tiers, no chosen leverage)"
    )
    max_order_notional: Decimal | None
    max_twap_deviation: Decimal
    option_type: Literal["call", "put"] | None = Field(description="Null unless an option")
    price_band: Decimal | None
    stale_after_s: Decimal
    strike: Decimal | None = Field(description="Null unless an option")
    symbol: str
    taker_fee_rate: Decimal
    tick_size: Decimal
    underlying: str
    updated_at: str


class InstrumentList(ResponseModel):
    instruments: list[InstrumentOut]


class LeverageIn(RequestModel):
    instrument: str
    leverage: Decimal


class MarginCallOut(ResponseModel):
    account_id: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    id: str
    level: Literal["warning", "liquidation", "limit"]
    raised_at: str
    ratio: float | None = Field(description="maintenance_margin_ratio (a limit's usage share)")
    resolved_at: str | None
    shortfall: Decimal = Field(description="What a deposit must bring to get back below the level")
    status: Literal["open", "acknowledged", "resolved"]
    subaccount_id: str
    subject: str = Field(
        description="For a limit call, the limit's name (``<limit>:<symbol>`` for a per-symbol cap: max_position_notional, max_underlying_notional); for an isolated position's, its instrument"
    )


class MarginCallList(ResponseModel):
    margin_calls: list[MarginCallOut]


class MarginReportRow(ResponseModel):
    account_id: str
    collateral_value: Decimal
    equity: Decimal
    free_collateral: Decimal
    gross_notional: Decimal
    initial_margin: Decimal = Field(
        description="Positions' IM in the subaccount's mode + reserved IM"
    )
    initial_margin_ratio: float | None
    leverage: float | None
    maintenance_margin: Decimal
    maintenance_margin_ratio: float | None
    margin_mode: str
    next_funding: Decimal = Field(description="Due at the next funding of each perpetual; < 0 pays")
    portfolio_initial_margin: Decimal
    reserved_initial_margin: Decimal
    standard_initial_margin: Decimal
    subaccount_id: str
    unrealized_pnl: Decimal
    withdrawable: Decimal


class MarginReportOut(ResponseModel):
    as_of: str = Field(description="When the figures were computed")
    date: dt.date
    live: bool = Field(description="True for today (computed now), False for a captured day")
    subaccounts: list[MarginReportRow]


class MarkIn(RequestModel):
    funding_rate: Decimal | None = Field(
        None, description="Perpetuals: the rate of the next funding interval"
    )
    iv: Decimal | None = Field(
        None,
        description="Options (required there, refused elsewhere): the annualised implied volatility, a decimal in (0, 10], e.g. 0.55",
    )
    price: Decimal
    source: str
    symbol: str = Field(description="An instrument, an asset or an underlying's index (e.g. BTC)")
    ts: dt.datetime


class SourceOut(ResponseModel):
    age_ms: int
    fresh: bool
    iv: Decimal | None = Field(description="This source's implied volatility; null where absent")
    price: Decimal
    source: str
    ts: str


class MarkOut(ResponseModel):
    age_ms: int
    funding_rate: Decimal | None
    iv: Decimal | None = Field(
        description="Options: the median implied volatility of the sources the price is the median of (the fresh ones); null for other symbols"
    )
    price: Decimal
    sources: list[SourceOut]
    status: str = Field(description="fresh | stale | deviating")
    symbol: str
    twap: Decimal


class MarkList(ResponseModel):
    marks: list[MarkOut]


class MarksAccepted(ResponseModel):
    accepted: int
    superseded: int = Field(description="Older than what the same source already sent; ignored")


class MarksIn(RequestModel):
    marks: list[MarkIn]


class MaxScaleIn(RequestModel):
    """A basket as a check takes it (no ``reserve``: nothing is held), and the largest factor to
    try. ``client_order_id``s are allowed so a desk can send the basket it will check, but
    nothing is recorded under them.
    """

    max_scale: Decimal = Field(
        Decimal("1"), description="The largest factor to try: greater than 0, at most 1000"
    )
    orders: list[OrderIn]
    subaccount_id: str


class ScaledOrderOut(ResponseModel):
    order_index: int
    size: Decimal = Field(
        description="floor(scale · size / lot_size) · lot_size: this leg's size at ``scale``"
    )


class MaxScaleOut(ResponseModel):
    after: MarginSummaryOut = Field(
        description="The subaccount after the basket at ``scale`` (as it stands when 0)"
    )
    binding: (
        Literal[
            "INSUFFICIENT_MARGIN",
            "MAX_ORDER_NOTIONAL",
            "MAX_POSITION_NOTIONAL",
            "MAX_UNDERLYING_NOTIONAL",
            "MAX_GROSS_NOTIONAL",
            "MAX_LEVERAGE",
            "STRATEGY_LIMIT",
            "ACCOUNT_LIMIT",
            "PRICE_BAND",
            "INSUFFICIENT_LIQUIDITY",
            "STALE_MARK",
            "ORACLE_DEVIATION",
            "HALTED",
            "REDUCE_ONLY",
            "LOT_SIZE",
            "TICK_SIZE",
            "LOSS_LIMIT",
            "MAX_OPEN_ORDERS",
            "ORDER_RATE",
        ]
        | None
    ) = Field(
        description="The rule the basket breaks at the next step (the least larger factor at which some leg gains a lot); null when ``max_scale`` itself passes"
    )
    orders: list[ScaledOrderOut] = Field(description="Every leg's size at ``scale``")
    reasons: list[Reason] = Field(
        description="Every reason the check gives at the next step, with its numbers"
    )
    scale: Decimal = Field(
        description="The largest factor whose basket (each leg's size times it, rounded down to the leg's lot) the check accepts now; \"0\" when no basket with every leg at least one lot fits"
    )
    subaccount_id: str


class MaxSizeIn(RequestModel):
    instrument: str
    limit_price: Decimal | None = None
    side: Literal["buy", "sell"]
    subaccount_id: str
    type: Literal["market", "limit"]


class MaxSizeOut(ResponseModel):
    after: MarginSummaryOut
    binding: (
        Literal[
            "INSUFFICIENT_MARGIN",
            "MAX_ORDER_NOTIONAL",
            "MAX_POSITION_NOTIONAL",
            "MAX_UNDERLYING_NOTIONAL",
            "MAX_GROSS_NOTIONAL",
            "MAX_LEVERAGE",
            "STRATEGY_LIMIT",
            "ACCOUNT_LIMIT",
            "PRICE_BAND",
            "INSUFFICIENT_LIQUIDITY",
            "STALE_MARK",
            "ORACLE_DEVIATION",
            "HALTED",
            "REDUCE_ONLY",
            "LOT_SIZE",
            "TICK_SIZE",
            "LOSS_LIMIT",
            "MAX_OPEN_ORDERS",
            "ORDER_RATE",
        ]
        | None
    ) = Field(description="The rule one lot more would break")
    instrument: str
    reasons: list[Reason] = Field(
        description="Every reason the check gives one lot more, with its numbers"
    )
    side: str
    size: Decimal = Field(description="The largest multiple of lot_size the check accepts now")
    subaccount_id: str


class OverviewRow(ResponseModel):
    account_id: str
    collateral_value: Decimal
    equity: Decimal
    free_collateral: Decimal
    gross_notional: Decimal
    initial_margin: Decimal = Field(
        description="Positions' IM in the subaccount's mode + reserved IM"
    )
    initial_margin_ratio: float | None
    leverage: float | None
    maintenance_margin: Decimal
    maintenance_margin_ratio: float | None
    margin_mode: str
    next_funding: Decimal = Field(description="Due at the next funding of each perpetual; < 0 pays")
    portfolio_initial_margin: Decimal
    reserved_initial_margin: Decimal
    standard_initial_margin: Decimal
    subaccount_id: str
    unrealized_pnl: Decimal
    withdrawable: Decimal


class OverviewOut(ResponseModel):
    as_of: str
    next_cursor: str | None
    subaccounts: list[OverviewRow]


class PositionDifference(ResponseModel):
    difference: Decimal
    field: Literal["size", "entry_price", "isolated_margin"]
    instrument: str
    ours: Decimal
    venue: Decimal


class PositionOut(ResponseModel):
    entry_price: Decimal
    instrument: str
    isolated_margin: Decimal
    realized_pnl: Decimal
    size: Decimal
    updated_at: str


class PositionsOut(ResponseModel):
    positions: list[PositionOut]
    subaccount_id: str


class Problem(ResponseModel):
    """RFC 9457 problem details with a machine ``code``: the body of every error."""

    code: str = Field(description="e.g. VALIDATION_ERROR, NOT_FOUND, CONFLICT, UNAVAILABLE")
    detail: str
    errors: list[FieldError] | None = Field(
        None, description="Validation errors only: each bad field and what is wrong with it"
    )
    status: int
    title: str
    type: str


class Readiness(ResponseModel):
    cache: Literal["ok", "degraded", "in-process"]
    database: Literal["ok", "unavailable"]
    status: Literal["ready", "degraded", "unavailable"]


class ReconcileOut(ResponseModel):
    balances: list[BalanceDifference]
    matches: bool
    positions: list[PositionDifference]
    subaccount_id: str


class ReservationLegOut(ResponseModel):
    client_order_id: str | None
    instrument: str
    price: Decimal
    side: str
    size: Decimal


class ReservationOut(ResponseModel):
    check_id: str
    created_at: str
    expires_at: str
    legs: list[ReservationLegOut]
    reservation_id: str
    status: Literal["active", "released", "consumed", "expired"]
    subaccount_id: str


class ReservationList(ResponseModel):
    next_cursor: str | None = Field(
        None, description="Pass as ``cursor`` for the next page; null on the last one"
    )
    reservations: list[ReservationOut]
    subaccount_id: str


class RiskParametersBody(RootModel[dict[str, Any]]):
    """Every parameter of the methodology; a PUT replaces them all (absent = default)."""


class ScenarioOut(ResponseModel):
    deficit: Decimal
    equity: Decimal
    liquidatable: bool
    maintenance_margin: Decimal
    maintenance_margin_ratio: float | None
    name: str
    shocks: dict[str, float]
    shortfall: Decimal
    vol_shocks: dict[str, float] = Field(description="The volatility moves applied ({} if none)")


class SnapshotPositionIn(RequestModel):
    entry_price: Decimal
    instrument: str
    isolated_margin: Decimal | None = None
    size: Decimal


class SnapshotIn(RequestModel):
    balances: dict[str, Decimal]
    positions: list[SnapshotPositionIn]


class StressIn(RequestModel):
    scenarios: list[ScenarioIn] | None = Field(None, description="Default: the methodology's grid")


class StressOut(ResponseModel):
    as_of: str
    margin_mode: str
    scenarios: list[ScenarioOut]
    subaccount_id: str


class SubaccountIn(RequestModel):
    account_id: str
    margin_mode: Literal["isolated", "cross", "portfolio"]
    strategy: str | None = None
    subaccount_id: str


class SubaccountLimitsIn(RequestModel):
    """Every limit is optional (absent = no cap); each is a number or ``{value, warn_at}``."""

    max_daily_loss: Decimal | LimitIn | None = Field(
        None, description="Realised + unrealised PnL since 00:00 UTC"
    )
    max_gross_notional: Decimal | LimitIn | None = None
    max_leverage: Decimal | LimitIn | None = None
    max_open_orders: int | CountLimitIn | None = Field(None, description="Active reservations")
    max_order_notional: Decimal | LimitIn | None = None
    max_order_rate: int | CountLimitIn | None = Field(
        None, description="Accepted orders per sliding second"
    )
    max_position_notional: Decimal | SymbolLimitIn | None = Field(
        None, description="Per instrument; by_symbol keyed by instrument"
    )
    max_underlying_notional: Decimal | SymbolLimitIn | None = Field(
        None,
        description="Per underlying, long and short netted, then absolute; by_symbol keyed by underlying",
    )


class SubaccountOut(ResponseModel):
    account_id: str
    created_at: str
    leverage: dict[str, Decimal]
    limits: LimitsOut
    margin_mode: Literal["isolated", "cross", "portfolio"]
    strategy: str | None
    subaccount_id: str


class SubaccountList(ResponseModel):
    subaccounts: list[SubaccountOut]


class SubaccountMarginOut(ResponseModel):
    as_of: str
    margin_mode: str
    marks: dict[str, MarkUsedOut]
    positions: list[PositionMarginOut]
    subaccount_id: str
    summary: MarginSummaryOut


class SubaccountPatch(RequestModel):
    margin_mode: Literal["isolated", "cross", "portfolio"] | None = None
    strategy: str | None = None


class TradingStateIn(RequestModel):
    id: str | None = None
    reason: str
    scope: Literal["global", "account", "subaccount", "instrument"]
    state: Literal["active", "reduce_only", "halted"]


class TradingStateOut(ResponseModel):
    id: str | None
    reason: str
    scope: str
    source: Literal["manual", "auto"]
    state: str
    updated_at: str


class TradingStateList(ResponseModel):
    trading_states: list[TradingStateOut]


class TransferIn(RequestModel):
    _auto_ids: ClassVar[tuple[str, ...]] = ("transfer_id",)
    amount: Decimal
    asset: str
    kind: Literal["deposit", "withdrawal", "transfer"]
    to_subaccount_id: str | None = None
    transfer_id: str = Field(default_factory=new_id)


class TransferOut(ResponseModel):
    amount: Decimal
    asset: str
    created_at: str
    kind: str
    subaccount_id: str
    to_subaccount_id: str | None
    transfer_id: str


class VerificationOut(ResponseModel):
    entries: int = Field(description="Entries that verified, from seq 1")
    first_bad_seq: int | None = Field(
        description="The first entry that does not verify: edited, or the first after a gap"
    )
    head_hash: str | None
    head_seq: int | None = Field(
        description="The last entry that verified (the chain's head when ok). Walking cannot see rows removed from the end: note the head down elsewhere and compare later."
    )
    ok: bool
