"""Field types shared by request and response schemas.

Money, prices and sizes travel as decimal strings; requests also accept JSON numbers. Every
decimal is finite, has at most 18 integer and 18 fractional digits, so it fits ``NUMERIC`` and
float64 comparisons stay meaningful.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 18

Identifier = Annotated[str, Field(pattern=ID_PATTERN, examples=["fund-a.basis"])]


def parse_decimal(value: Any) -> Decimal:
    """Accept a decimal string or a JSON number; refuse NaN, infinities, and oversized values."""
    if isinstance(value, bool):
        raise ValueError("expected a decimal string or number, not a boolean")
    if isinstance(value, Decimal):
        parsed = value
    elif isinstance(value, int | float | str):
        text = str(value).strip()
        if len(text) > 64:
            raise ValueError("too many digits")
        try:
            parsed = Decimal(text)
        except InvalidOperation:
            raise ValueError('expected a decimal string such as "65000.5"') from None
    else:
        raise ValueError("expected a decimal string or number")
    if not parsed.is_finite():
        raise ValueError("must be a finite number")
    _, digits, exponent = parsed.as_tuple()
    assert isinstance(exponent, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    significant = len(digits) - trailing_zeros
    exponent += trailing_zeros
    if significant and significant + exponent > MAX_INTEGER_DIGITS:
        raise ValueError(f"at most {MAX_INTEGER_DIGITS} digits before the decimal point")
    if -exponent > MAX_FRACTION_DIGITS:
        raise ValueError(f"at most {MAX_FRACTION_DIGITS} digits after the decimal point")
    return parsed.copy_abs() if parsed == 0 else parsed


EXACT_DIGITS = 80
"""Significant digits of every Decimal operation: accepted amounts have at most 18 digits on
either side of the point, so their sums and products fit without rounding."""
_WIDE = Context(prec=EXACT_DIGITS)


def exact_decimal_arithmetic() -> None:
    """Money is exact: Decimal arithmetic anywhere in the service runs at ``EXACT_DIGITS``.
    Python's default context keeps 28 digits and would silently round, e.g. a balance of 10^8
    plus a realised PnL of 10^-4 carried to 18 places. Sets the template new contexts copy
    (threads, tasks) and the context already current."""
    decimal.DefaultContext.prec = EXACT_DIGITS
    decimal.getcontext().prec = EXACT_DIGITS


def format_decimal(value: Decimal) -> str:
    """Plain notation, no exponent, no trailing zeros: ``Decimal("6.50E+4")`` → ``"65000"``."""
    if value == 0:
        return "0"
    return format(value.normalize(_WIDE), "f")


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _fraction(value: Decimal) -> Decimal:
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")
    return value


_decimal_schema = WithJsonSchema(
    {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["65000.5"]},
    mode="serialization",
)
_decimal_input_schema = WithJsonSchema(
    {"anyOf": [{"type": "string", "examples": ["65000.5"]}, {"type": "number"}]},
    mode="validation",
)
_to_string = PlainSerializer(format_decimal, return_type=str, when_used="json")

DecimalValue = Annotated[
    Decimal, BeforeValidator(parse_decimal), _to_string, _decimal_input_schema, _decimal_schema
]
"""Signed decimal (sizes, PnL, balances)."""
PositiveDecimal = Annotated[DecimalValue, AfterValidator(_positive)]
NonNegativeDecimal = Annotated[DecimalValue, AfterValidator(_non_negative)]
Fraction = Annotated[DecimalValue, AfterValidator(_fraction)]

Money = Annotated[Decimal, _to_string, _decimal_schema]
"""A decimal in a response."""


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def rfc3339_only(value: Any) -> Any:
    """A timestamp is an RFC 3339 string: no Unix seconds (a number, or digits in a query)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 timestamp, e.g. 2026-01-01T00:00:00Z")
    return value


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339), e.g. 2026-01-01T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise ValueError("out of range once converted to UTC") from None


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    BeforeValidator(rfc3339_only),
    AfterValidator(to_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StrictIn(BaseModel):
    """A request body: unknown fields are refused (422) rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Actor:
    """Who made a change, as the audit log records it: an API key, or None for the system.
    Here rather than in app.audit so that app.auth's Principal can name its actor without
    importing the audit log, which sits above auth."""

    key_id: str | None
