from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

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


class AssetIn(StrictIn):
    collateral_weight: Fraction = Field(description="0–1; the haircut is 1 − weight")
    underlying: Identifier | None = Field(None, description="Risk factor it moves with, e.g. BTC")
    is_settlement: StrictBool = False

    @model_validator(mode="after")
    def _settlement_shape(self) -> Self:
        if self.is_settlement and (self.collateral_weight != 1 or self.underlying is not None):
            raise ValueError(
                "is_settlement: the settlement asset has collateral_weight 1 and no underlying"
            )
        return self


class AssetOut(BaseModel):
    symbol: str
    collateral_weight: Money
    underlying: str | None
    is_settlement: bool
    updated_at: Timestamp


class AssetList(BaseModel):
    assets: list[AssetOut]


class MarginTierIn(StrictIn):
    notional_floor: NonNegativeDecimal
    initial_margin_fraction: Fraction
    maintenance_margin_fraction: Fraction | None = Field(
        None, description="Defaults to half the initial margin fraction"
    )


class MarginTierOut(BaseModel):
    notional_floor: Money
    initial_margin_fraction: Money
    maintenance_margin_fraction: Money


class InstrumentIn(StrictIn):
    # The kind rules of ``_consistent`` in the schema: a future has an expiry and no funding
    # interval; a perpetual has no expiry.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "future"}}, "required": ["kind"]},
            "then": {
                "required": ["expiry"],
                "properties": {
                    "expiry": {"not": {"type": "null"}},
                    "funding_interval_s": {"type": "null"},
                },
            },
            "else": {"properties": {"expiry": {"type": "null"}}},
        }
    )

    kind: Literal["perpetual", "future"]
    underlying: Identifier
    contract_size: PositiveDecimal = Decimal(1)
    tick_size: PositiveDecimal
    lot_size: PositiveDecimal
    margin_tiers: list[MarginTierIn] = Field(min_length=1, max_length=64)
    taker_fee_rate: DecimalValue = Decimal(0)
    maker_fee_rate: DecimalValue = Decimal(0)
    price_band: PositiveDecimal | None = Field(None, description="max |limit − mark| / mark")
    max_order_notional: PositiveDecimal | None = None
    expiry: Timestamp | None = Field(None, description="Required for futures")
    funding_interval_s: int | None = Field(None, gt=0, le=7 * 24 * 3600, strict=True)
    stale_after_s: PositiveDecimal | None = Field(None, description="Default 5")
    max_twap_deviation: PositiveDecimal | None = Field(None, description="Default 0.05")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        floors = [tier.notional_floor for tier in self.margin_tiers]
        if floors[0] != 0:
            raise ValueError("margin_tiers[0].notional_floor: must be 0")
        if any(b <= a for a, b in itertools.pairwise(floors)):
            raise ValueError("margin_tiers: notional_floor values must be strictly ascending")
        for index, tier in enumerate(self.margin_tiers):
            if tier.initial_margin_fraction == 0:
                raise ValueError(f"margin_tiers[{index}].initial_margin_fraction: must be > 0")
            mmf = tier.maintenance_margin_fraction
            if mmf is not None and not 0 < mmf <= tier.initial_margin_fraction:
                raise ValueError(
                    f"margin_tiers[{index}].maintenance_margin_fraction: must be in "
                    "(0, initial_margin_fraction]"
                )
        for name in ("taker_fee_rate", "maker_fee_rate"):
            if not -0.01 <= getattr(self, name) <= 0.1:
                raise ValueError(f"{name}: must be between -0.01 and 0.1")
        if self.kind == "future" and self.expiry is None:
            raise ValueError("expiry: required for a future")
        if self.kind == "perpetual" and self.expiry is not None:
            raise ValueError("expiry: a perpetual has no expiry")
        if self.kind == "future" and self.funding_interval_s is not None:
            raise ValueError("funding_interval_s: applies to perpetuals only")
        return self


class InstrumentOut(BaseModel):
    symbol: str
    kind: str
    underlying: str
    contract_size: Money
    tick_size: Money
    lot_size: Money
    margin_tiers: list[MarginTierOut]
    taker_fee_rate: Money
    maker_fee_rate: Money
    price_band: Money | None
    max_order_notional: Money | None
    expiry: Timestamp | None
    funding_interval_s: int | None
    stale_after_s: Money
    max_twap_deviation: Money
    max_leverage: Money = Field(description="1 / the first tier's initial margin fraction")
    updated_at: Timestamp


class InstrumentList(BaseModel):
    instruments: list[InstrumentOut]
