from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from app.core.types import (
    DecimalValue,
    Identifier,
    Money,
    PositiveDecimal,
    StrictIn,
    Timestamp,
)

MAX_IV = Decimal(10)
"""The largest implied volatility a mark may carry (1,000 % a year)."""


def _volatility(value: Decimal) -> Decimal:
    if not 0 < value <= MAX_IV:
        raise ValueError(f"must be greater than 0 and at most {MAX_IV}")
    return value


Volatility = Annotated[DecimalValue, AfterValidator(_volatility)]
"""An annualised implied volatility as a decimal (0.55 = 55 %), in (0, 10]."""


class MarkIn(StrictIn):
    symbol: Identifier = Field(
        description="An instrument, an asset or an underlying's index (e.g. BTC)"
    )
    price: PositiveDecimal
    source: Identifier
    ts: Timestamp
    funding_rate: DecimalValue | None = Field(
        None, description="Perpetuals: the rate of the next funding interval"
    )
    iv: Volatility | None = Field(
        None,
        description="Options (required there, refused elsewhere): the annualised implied "
        "volatility, a decimal in (0, 10], e.g. 0.55",
    )

    @model_validator(mode="after")
    def _bounded_funding(self) -> Self:
        if self.funding_rate is not None and abs(self.funding_rate) >= 1:
            raise ValueError("funding_rate: must be between -1 and 1")
        return self


class MarksIn(StrictIn):
    marks: list[MarkIn] = Field(min_length=1, max_length=1000)


class MarksAccepted(BaseModel):
    accepted: int
    superseded: int = Field(description="Older than what the same source already sent; ignored")


class SourceOut(BaseModel):
    source: str
    price: Money
    ts: Timestamp
    age_ms: int
    fresh: bool
    iv: Money | None = Field(description="This source's implied volatility; null where absent")


class MarkOut(BaseModel):
    symbol: str
    price: Money
    twap: Money
    status: str = Field(description="fresh | stale | deviating")
    age_ms: int
    funding_rate: Money | None
    iv: Money | None = Field(
        description="Options: the median implied volatility of the sources the price is the "
        "median of (the fresh ones); null for other symbols"
    )
    sources: list[SourceOut]


class MarkList(BaseModel):
    marks: list[MarkOut]


Level = tuple[PositiveDecimal, PositiveDecimal]


class BookIn(StrictIn):
    bids: list[Level] = Field(max_length=500, description="[price, size], best (highest) first")
    asks: list[Level] = Field(max_length=500, description="[price, size], best (lowest) first")
    ts: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        bids = [price for price, _ in self.bids]
        asks = [price for price, _ in self.asks]
        if any(b >= a for a, b in itertools.pairwise(bids)):
            raise ValueError("bids: must be strictly descending by price")
        if any(b <= a for a, b in itertools.pairwise(asks)):
            raise ValueError("asks: must be strictly ascending by price")
        if bids and asks and bids[0] >= asks[0]:
            raise ValueError("bids: the book is crossed (best bid must be below best ask)")
        return self


# A level is two decimal strings. Spelled as an array of exactly two (the same thing for two
# items of one type) rather than ``prefixItems``: Schemathesis 4 rewrites ``prefixItems`` in a
# response schema to draft-4 ``items: [...]`` and then refuses the schema under OpenAPI 3.1.
LevelOut = Annotated[
    tuple[Money, Money],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["65000.5"]},
            "minItems": 2,
            "maxItems": 2,
            "description": "[price, size]",
        },
        mode="serialization",
    ),
]


class BookOut(BaseModel):
    symbol: str
    bids: list[LevelOut]
    asks: list[LevelOut]
    ts: Timestamp
    age_ms: int
    status: str = Field(description="fresh | stale")
