from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.core.types import Identifier, Money, PositiveDecimal, StrictIn, Timestamp
from app.risk.schemas import MarginSummaryOut, MarkUsedOut, PositionMarginOut

ReasonCode = Literal[
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


# The rule of ``check_limit_price`` in the schema, so a client (and a generator) can see it.
LIMIT_PRICE_RULE = ConfigDict(
    json_schema_extra={
        "if": {"properties": {"type": {"const": "limit"}}, "required": ["type"]},
        "then": {
            "required": ["limit_price"],
            "properties": {"limit_price": {"not": {"type": "null"}}},
        },
        "else": {"properties": {"limit_price": {"type": "null"}}},
    }
)


def check_limit_price(order_type: str, limit_price: Decimal | None) -> None:
    """A limit order names its price; a market order has none."""
    if order_type == "limit" and limit_price is None:
        raise ValueError("limit_price: required for a limit order")
    if order_type == "market" and limit_price is not None:
        raise ValueError("limit_price: a market order has no limit price")


class OrderIn(StrictIn):
    model_config = LIMIT_PRICE_RULE

    client_order_id: Identifier | None = Field(
        None, description="Idempotency id: a replay answers the first check"
    )
    instrument: Identifier
    side: Literal["buy", "sell"]
    size: PositiveDecimal
    type: Literal["market", "limit"]
    limit_price: PositiveDecimal | None = None
    time_in_force: Literal["gtc", "ioc", "fok"] = "gtc"
    reduce_only: StrictBool = False

    @model_validator(mode="after")
    def _price_matches_type(self) -> Self:
        check_limit_price(self.type, self.limit_price)
        return self


def check_distinct_order_ids(orders: list[OrderIn]) -> None:
    """No ``client_order_id`` twice in one basket."""
    seen: set[str] = set()
    for index, order in enumerate(orders):
        if order.client_order_id is not None:
            if order.client_order_id in seen:
                raise ValueError(f"orders[{index}].client_order_id: appears twice")
            seen.add(order.client_order_id)


class CheckIn(StrictIn):
    subaccount_id: Identifier
    orders: list[OrderIn] = Field(min_length=1, max_length=50)
    # Strict: JSON true/false and integers only, as documented (lax parsing took "yes", 1, "60").
    reserve: StrictBool = False
    reservation_ttl_s: int = Field(60, gt=0, le=86_400, strict=True)

    @model_validator(mode="after")
    def _distinct_order_ids(self) -> Self:
        check_distinct_order_ids(self.orders)
        return self


class Reason(BaseModel):
    code: ReasonCode
    order_index: int | None
    message: str
    value: Money | int | float | None = Field(
        None,
        description="What the basket would make the rule's quantity (money and sizes as decimal "
        "strings, ratios and counts as numbers); null for a rule that measures nothing",
    )
    limit: Money | int | float | None = Field(None, description="What the rule allows")
    shortfall: Money | None = Field(
        None,
        description="INSUFFICIENT_MARGIN only: the smallest deposit of the settlement asset that "
        "lets the basket pass the margin rule",
    )


class ExecutionOut(BaseModel):
    order_index: int
    filled_size: Money
    avg_price: Money | None
    unfilled_size: Money
    slippage_bps: float | None
    fee: Money
    book: Literal["fresh", "stale", "missing"]
    price_source: Literal["book", "limit", "mark"]


class CheckOut(BaseModel):
    check_id: str
    decision: Literal["accept", "reject"]
    reasons: list[Reason]
    as_of: Timestamp
    margin_mode: str
    executions: list[ExecutionOut]
    before: MarginSummaryOut
    after: MarginSummaryOut
    positions_after: list[PositionMarginOut]
    marks: dict[str, MarkUsedOut]
    reservation_id: str | None
    expires_at: Timestamp | None


class MaxSizeIn(StrictIn):
    model_config = LIMIT_PRICE_RULE

    subaccount_id: Identifier
    instrument: Identifier
    side: Literal["buy", "sell"]
    type: Literal["market", "limit"]
    limit_price: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _price_matches_type(self) -> Self:
        check_limit_price(self.type, self.limit_price)
        return self


class MaxSizeOut(BaseModel):
    subaccount_id: str
    instrument: str
    side: str
    size: Money = Field(description="The largest multiple of lot_size the check accepts now")
    binding: ReasonCode | None = Field(description="The rule one lot more would break")
    reasons: list[Reason] = Field(
        description="Every reason the check gives one lot more, with its numbers"
    )
    after: MarginSummaryOut


MAX_SCALE = Decimal(1000)
"""The largest ``max_scale`` a max-scale search accepts."""


def _scale_in_range(value: Decimal) -> Decimal:
    if value > MAX_SCALE:
        raise ValueError(f"must be at most {MAX_SCALE}")
    return value


class MaxScaleIn(StrictIn):
    """A basket as a check takes it (no ``reserve``: nothing is held), and the largest factor
    to try. ``client_order_id``s are allowed so a desk can send the basket it will check, but
    nothing is recorded under them."""

    subaccount_id: Identifier
    orders: list[OrderIn] = Field(min_length=1, max_length=50)
    max_scale: Annotated[PositiveDecimal, AfterValidator(_scale_in_range)] = Field(
        Decimal(1), description="The largest factor to try: greater than 0, at most 1000"
    )

    @model_validator(mode="after")
    def _distinct_order_ids(self) -> Self:
        check_distinct_order_ids(self.orders)
        return self


class ScaledOrderOut(BaseModel):
    order_index: int
    size: Money = Field(
        description="floor(scale · size / lot_size) · lot_size: this leg's size at ``scale``"
    )


class MaxScaleOut(BaseModel):
    subaccount_id: str
    scale: Money = Field(
        description="The largest factor whose basket (each leg's size times it, rounded down "
        'to the leg\'s lot) the check accepts now; "0" when no basket with every leg at least '
        "one lot fits"
    )
    orders: list[ScaledOrderOut] = Field(description="Every leg's size at ``scale``")
    binding: ReasonCode | None = Field(
        description="The rule the basket breaks at the next step (the least larger factor at "
        "which some leg gains a lot); null when ``max_scale`` itself passes"
    )
    reasons: list[Reason] = Field(
        description="Every reason the check gives at the next step, with its numbers"
    )
    after: MarginSummaryOut = Field(
        description="The subaccount after the basket at ``scale`` (as it stands when 0)"
    )


class ReservationLegOut(BaseModel):
    client_order_id: str | None
    instrument: str
    side: str
    size: Money
    price: Money


class ReservationOut(BaseModel):
    reservation_id: str
    subaccount_id: str
    check_id: str
    status: Literal["active", "released", "consumed", "expired"]
    legs: list[ReservationLegOut]
    created_at: Timestamp
    expires_at: Timestamp


class ReservationList(BaseModel):
    subaccount_id: str
    reservations: list[ReservationOut]
    """Newest first."""
    next_cursor: str | None = Field(
        None, description="Pass as ``cursor`` for the next page; null on the last one"
    )
