from __future__ import annotations

import itertools
from typing import Annotated, Self

from pydantic import BaseModel, Field, WithJsonSchema, model_validator

from app.core.types import (
    DecimalValue,
    Identifier,
    Money,
    PositiveDecimal,
    StrictIn,
    Timestamp,
)


class MarkIn(StrictIn):
    symbol: Identifier = Field(description="An instrument or an asset")
    price: PositiveDecimal
    source: Identifier
    ts: Timestamp
    funding_rate: DecimalValue | None = Field(
        None, description="Perpetuals: the rate of the next funding interval"
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


class MarkOut(BaseModel):
    symbol: str
    price: Money
    twap: Money
    status: str = Field(description="fresh | stale | deviating")
    age_ms: int
    funding_rate: Money | None
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
