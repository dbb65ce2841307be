from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Exact, JSONDocument, UTCDateTime


class MarkSource(Base):
    """The latest mark of one symbol from one source: the write-through copy of the cache."""

    __tablename__ = "marks"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    price: Mapped[Decimal] = mapped_column(Exact)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    funding_rate: Mapped[Decimal | None] = mapped_column(Exact)
    iv: Mapped[Decimal | None] = mapped_column(Exact)
    """An option's implied volatility from this source (annualised); null for other symbols."""


class MarkTwap(Base):
    """A symbol's TWAP state (``marks.TwapState``): the point it was last extended to, in ms
    since the epoch, the mark then, and the average over the span before it. Floats: the TWAP
    only decides ``deviating``."""

    __tablename__ = "mark_twaps"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    at_ms: Mapped[float] = mapped_column(Float(precision=53))
    last: Mapped[float] = mapped_column(Float(precision=53))
    average: Mapped[float] = mapped_column(Float(precision=53))
    span_ms: Mapped[float] = mapped_column(Float(precision=53))


class MovedMark(Base):
    """A symbol marked since the last margin-call sweep (written with the marks, taken by the
    sweep in its transaction: a sweep that fails leaves it for the next)."""

    __tablename__ = "marks_moved"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Book(Base):
    __tablename__ = "books"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    bids: Mapped[list[Any]] = mapped_column(JSONDocument)
    asks: Mapped[list[Any]] = mapped_column(JSONDocument)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
