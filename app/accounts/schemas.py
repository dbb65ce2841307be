from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.core.types import (
    DecimalValue,
    Fraction,
    Identifier,
    Money,
    NonNegativeDecimal,
    PositiveDecimal,
    StrictIn,
    Timestamp,
)

# PostgreSQL text cannot hold NUL (a 500 at the INSERT): refused up front, named.
NO_NUL = r"^[^\x00]*$"
MarginMode = Literal["isolated", "cross", "portfolio"]
DEFAULT_WARN_AT = Decimal("0.8")
# Strict: a JSON integer (lax parsing took true as 1 and "5" as 5).
PositiveCount = Annotated[int, Field(gt=0, le=1_000_000, strict=True)]
# The description of a create's 200: the same request again (app/accounts/router.py and
# app/risk/account_router.py).
REPLAYED = "Already existed with the same content (a replay); nothing changed"


# --- accounts and subaccounts ------------------------------------------------------------


class AccountIn(StrictIn):
    account_id: Identifier
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class SubaccountIn(StrictIn):
    subaccount_id: Identifier
    account_id: Identifier
    margin_mode: MarginMode
    strategy: Identifier | None = None


class SubaccountPatch(StrictIn):
    margin_mode: MarginMode | None = None
    strategy: Identifier | None = None


# --- limits ---------------------------------------------------------------------------


class LimitIn(StrictIn):
    value: PositiveDecimal
    warn_at: Fraction = Field(DEFAULT_WARN_AT, description="Alert when usage crosses this share")


class CountLimitIn(StrictIn):
    value: PositiveCount
    warn_at: Fraction = DEFAULT_WARN_AT


def _as_limit(value: Any) -> Any:
    """A bare number means ``{"value": number}`` with the default ``warn_at``."""
    return value if isinstance(value, dict) else {"value": value}


Limit = Annotated[
    LimitIn, BeforeValidator(_as_limit, json_schema_input_type=PositiveDecimal | LimitIn)
]
CountLimit = Annotated[
    CountLimitIn, BeforeValidator(_as_limit, json_schema_input_type=PositiveCount | CountLimitIn)
]


class SymbolCapIn(StrictIn):
    value: PositiveDecimal
    warn_at: Fraction | None = Field(None, description="Default: the limit's own warn_at")


SymbolCap = Annotated[
    SymbolCapIn, BeforeValidator(_as_limit, json_schema_input_type=PositiveDecimal | SymbolCapIn)
]
MAX_SYMBOLS = 1000


class SymbolLimitIn(StrictIn):
    """A cap per symbol: ``value`` for every symbol, ``by_symbol`` replacing it for some (a
    symbol with neither is uncapped). Symbols need not be listed yet: a desk may cap an
    instrument before it trades."""

    value: PositiveDecimal | None = None
    warn_at: Fraction = Field(DEFAULT_WARN_AT, description="Alert when usage crosses this share")
    by_symbol: dict[Identifier, SymbolCap] | None = Field(None, max_length=MAX_SYMBOLS)

    @model_validator(mode="after")
    def _caps_something(self) -> Self:
        # A limit that caps nothing is refused rather than stored as a silent "no cap".
        if self.value is None and not self.by_symbol:
            raise ValueError("value: required unless by_symbol names at least one symbol")
        return self


SymbolLimit = Annotated[
    SymbolLimitIn,
    BeforeValidator(_as_limit, json_schema_input_type=PositiveDecimal | SymbolLimitIn),
]


class StrategyLimitsIn(StrictIn):
    max_gross_notional: Limit


class SubaccountLimitsIn(StrictIn):
    """Every limit is optional (absent = no cap); each is a number or ``{value, warn_at}``."""

    max_gross_notional: Limit | None = None
    max_leverage: Limit | None = None
    max_order_notional: Limit | None = None
    max_position_notional: SymbolLimit | None = Field(
        None, description="Per instrument; by_symbol keyed by instrument"
    )
    max_underlying_notional: SymbolLimit | None = Field(
        None,
        description="Per underlying, long and short netted, then absolute; by_symbol keyed by"
        " underlying",
    )
    max_daily_loss: Limit | None = Field(
        None, description="Realised + unrealised PnL since 00:00 UTC"
    )
    max_open_orders: CountLimit | None = Field(None, description="Active reservations")
    max_order_rate: CountLimit | None = Field(
        None, description="Accepted orders per sliding second"
    )


class AccountLimitsIn(SubaccountLimitsIn):
    strategy_limits: dict[Identifier, StrategyLimitsIn] | None = None


class LimitOut(BaseModel):
    value: Money
    warn_at: Money


class SymbolLimitOut(BaseModel):
    value: Money | None = Field(
        None, description="The cap of every symbol without its own; null: those are uncapped"
    )
    warn_at: Money
    by_symbol: dict[str, LimitOut] | None = None


class CountLimitOut(BaseModel):
    value: int
    warn_at: Money


class StrategyLimitsOut(BaseModel):
    max_gross_notional: LimitOut


class LimitsOut(BaseModel):
    max_gross_notional: LimitOut | None = None
    max_leverage: LimitOut | None = None
    max_order_notional: LimitOut | None = None
    max_position_notional: SymbolLimitOut | None = None
    max_underlying_notional: SymbolLimitOut | None = None
    max_daily_loss: LimitOut | None = None
    max_open_orders: CountLimitOut | None = None
    max_order_rate: CountLimitOut | None = None
    strategy_limits: dict[str, StrategyLimitsOut] | None = None


class AccountOut(BaseModel):
    account_id: str
    name: str
    limits: LimitsOut
    subaccounts: list[str]
    created_at: Timestamp


class AccountList(BaseModel):
    accounts: list[AccountOut]


class SubaccountOut(BaseModel):
    subaccount_id: str
    account_id: str
    margin_mode: MarginMode
    strategy: str | None
    limits: LimitsOut
    leverage: dict[str, Money]
    created_at: Timestamp


class SubaccountList(BaseModel):
    subaccounts: list[SubaccountOut]


class LeverageIn(StrictIn):
    instrument: Identifier
    leverage: PositiveDecimal


class TradingStateIn(StrictIn):
    # The rule of ``_id_matches_scope`` in the schema: ``id`` names the scope, except global.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"scope": {"const": "global"}}, "required": ["scope"]},
            "then": {"properties": {"id": {"type": "null"}}},
            "else": {"required": ["id"], "properties": {"id": {"not": {"type": "null"}}}},
        }
    )

    scope: Literal["global", "account", "subaccount", "instrument"]
    id: Identifier | None = None
    state: Literal["active", "reduce_only", "halted"]
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)

    @model_validator(mode="after")
    def _id_matches_scope(self) -> Self:
        if self.scope == "global" and self.id is not None:
            raise ValueError("id: must be absent for the global scope")
        if self.scope != "global" and self.id is None:
            raise ValueError(f"id: required for the {self.scope} scope")
        return self


class TradingStateOut(BaseModel):
    scope: str
    id: str | None
    state: str
    source: Literal["manual", "auto"]
    """``manual``: set through the API; ``auto``: the circuit breaker (``auto_reduce_only``)."""
    reason: str
    updated_at: Timestamp


class TradingStateList(BaseModel):
    trading_states: list[TradingStateOut]


# --- state from the venue ------------------------------------------------------------------


class TransferIn(StrictIn):
    # The rule of ``_destination`` in the schema: only a transfer names a destination.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "transfer"}}, "required": ["kind"]},
            "then": {
                "required": ["to_subaccount_id"],
                "properties": {"to_subaccount_id": {"not": {"type": "null"}}},
            },
            "else": {"properties": {"to_subaccount_id": {"type": "null"}}},
        }
    )

    transfer_id: Identifier
    asset: Identifier
    amount: PositiveDecimal
    kind: Literal["deposit", "withdrawal", "transfer"]
    to_subaccount_id: Identifier | None = None

    @model_validator(mode="after")
    def _destination(self) -> Self:
        if self.kind == "transfer" and self.to_subaccount_id is None:
            raise ValueError("to_subaccount_id: required for a transfer")
        if self.kind != "transfer" and self.to_subaccount_id is not None:
            raise ValueError("to_subaccount_id: applies to transfers only")
        return self


class TransferOut(BaseModel):
    transfer_id: str
    subaccount_id: str
    asset: str
    amount: Money
    kind: str
    to_subaccount_id: str | None
    created_at: Timestamp


class FillIn(StrictIn):
    fill_id: Identifier
    subaccount_id: Identifier
    instrument: Identifier
    side: Literal["buy", "sell"]
    size: PositiveDecimal
    price: PositiveDecimal
    fee: DecimalValue = Field(description="Positive = paid; negative = rebate")
    fee_asset: Identifier | None = Field(None, description="Default: the settlement asset")
    client_order_id: Identifier | None = None
    ts: Timestamp


class FillsIn(StrictIn):
    fills: list[FillIn] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        # A fill id is unique per subaccount: two subaccounts may each use it.
        seen: set[tuple[str, str]] = set()
        for index, fill in enumerate(self.fills):
            key = (fill.subaccount_id, fill.fill_id)
            if key in seen:
                raise ValueError(
                    f"fills[{index}].fill_id: {fill.fill_id!r} appears twice"
                    f" for subaccount {fill.subaccount_id!r}"
                )
            seen.add(key)
        return self


class FillOut(BaseModel):
    fill_id: str
    subaccount_id: str
    instrument: str
    side: str
    size: Money
    price: Money
    fee: Money
    fee_asset: str
    client_order_id: str | None
    ts: Timestamp
    realized_pnl: Money = Field(description="PnL this fill realised, before fees")
    position_size: Money = Field(description="The position's size after this fill")
    entry_price: Money = Field(description="The position's average entry after this fill")


class FillsOut(BaseModel):
    fills: list[FillOut]


class SnapshotPositionIn(StrictIn):
    instrument: Identifier
    size: DecimalValue
    entry_price: PositiveDecimal
    isolated_margin: NonNegativeDecimal | None = None


class SnapshotIn(StrictIn):
    balances: dict[Identifier, DecimalValue] = Field(max_length=1000)
    positions: list[SnapshotPositionIn] = Field(max_length=1000)

    @model_validator(mode="after")
    def _unique_instruments(self) -> Self:
        seen: set[str] = set()
        for index, position in enumerate(self.positions):
            if position.instrument in seen:
                raise ValueError(f"positions[{index}].instrument: {position.instrument!r} twice")
            seen.add(position.instrument)
        return self


class PositionOut(BaseModel):
    instrument: str
    size: Money
    entry_price: Money
    isolated_margin: Money
    realized_pnl: Money
    updated_at: Timestamp


class PositionsOut(BaseModel):
    subaccount_id: str
    positions: list[PositionOut]


class BalancesOut(BaseModel):
    subaccount_id: str
    balances: dict[str, Money]
