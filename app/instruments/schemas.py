from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any, Literal, Self

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


_NULL: dict[str, Any] = {"type": "null"}
_PRESENT: dict[str, Any] = {"not": {"type": "null"}}
_TIERED: dict[str, Any] = {"type": "array", "minItems": 1}
"""A perpetual's or a future's ``margin_tiers``: a list of at least one tier."""


class InstrumentIn(StrictIn):
    # The kind rules of ``_consistent`` in the schema: a future has an expiry and tiers and no
    # funding interval; an option has an option_type, a strike and an expiry, and no tiers and
    # no funding interval; a perpetual has tiers and no expiry; only an option has an
    # option_type or a strike.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "future"}}, "required": ["kind"]},
            "then": {
                "required": ["expiry", "margin_tiers"],
                "properties": {
                    "expiry": _PRESENT,
                    "funding_interval_s": _NULL,
                    "margin_tiers": _TIERED,
                    "option_type": _NULL,
                    "strike": _NULL,
                },
            },
            "else": {
                "if": {"properties": {"kind": {"const": "option"}}, "required": ["kind"]},
                "then": {
                    "required": ["option_type", "strike", "expiry"],
                    "properties": {
                        "option_type": _PRESENT,
                        "strike": _PRESENT,
                        "expiry": _PRESENT,
                        "funding_interval_s": _NULL,
                        "margin_tiers": {"anyOf": [_NULL, {"type": "array", "maxItems": 0}]},
                    },
                },
                "else": {
                    "required": ["margin_tiers"],
                    "properties": {
                        "expiry": _NULL,
                        "margin_tiers": _TIERED,
                        "option_type": _NULL,
                        "strike": _NULL,
                    },
                },
            },
        }
    )

    kind: Literal["perpetual", "future", "option"]
    underlying: Identifier = Field(
        description="Risk factor; for an option, the symbol whose mark is its index (e.g. BTC)"
    )
    contract_size: PositiveDecimal = Decimal(1)
    tick_size: PositiveDecimal
    lot_size: PositiveDecimal
    margin_tiers: list[MarginTierIn] | None = Field(
        None,
        max_length=64,
        description="1–64 tiers, required for a perpetual or a future; absent or empty for an "
        "option (options are not margined by tiers)",
    )
    taker_fee_rate: DecimalValue = Decimal(0)
    maker_fee_rate: DecimalValue = Decimal(0)
    price_band: PositiveDecimal | None = Field(None, description="max |limit − mark| / mark")
    max_order_notional: PositiveDecimal | None = None
    expiry: Timestamp | None = Field(
        None,
        description="Required for futures and options (in the future when an option is created)",
    )
    option_type: Literal["call", "put"] | None = Field(None, description="Options only; required")
    strike: PositiveDecimal | None = Field(None, description="Options only; required, > 0")
    funding_interval_s: int | None = Field(
        None, gt=0, le=7 * 24 * 3600, strict=True, description="Perpetuals only"
    )
    stale_after_s: PositiveDecimal | None = Field(None, description="Default 5")
    max_twap_deviation: PositiveDecimal | None = Field(None, description="Default 0.05")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "option":
            self._option_terms()
        else:
            self._tiers_well_formed()
            if self.option_type is not None:
                raise ValueError(f"option_type: only an option has one, not a {self.kind}")
            if self.strike is not None:
                raise ValueError(f"strike: only an option has one, not a {self.kind}")
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

    def _option_terms(self) -> None:
        """margin.md, Options: a type, a strike and an expiry; no tiers, no funding."""
        if self.option_type is None:
            raise ValueError("option_type: required for an option (call or put)")
        if self.strike is None:
            raise ValueError("strike: required for an option")
        if self.expiry is None:
            raise ValueError("expiry: required for an option")
        if self.margin_tiers:
            raise ValueError("margin_tiers: an option has no margin tiers")
        if self.funding_interval_s is not None:
            raise ValueError("funding_interval_s: applies to perpetuals only")

    def _tiers_well_formed(self) -> None:
        if not self.margin_tiers:
            raise ValueError(f"margin_tiers: at least one tier is required for a {self.kind}")
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


class InstrumentOut(BaseModel):
    symbol: str
    kind: str
    underlying: str
    contract_size: Money
    tick_size: Money
    lot_size: Money
    margin_tiers: list[MarginTierOut] = Field(description="Empty for an option")
    taker_fee_rate: Money
    maker_fee_rate: Money
    price_band: Money | None
    max_order_notional: Money | None
    expiry: Timestamp | None
    option_type: Literal["call", "put"] | None = Field(description="Null unless an option")
    strike: Money | None = Field(description="Null unless an option")
    funding_interval_s: int | None
    stale_after_s: Money
    max_twap_deviation: Money
    max_leverage: Money | None = Field(
        description="1 / the first tier's initial margin fraction: the most a chosen leverage "
        "may be; null for an option (no tiers, no chosen leverage)"
    )
    updated_at: Timestamp


class InstrumentList(BaseModel):
    instruments: list[InstrumentOut]
