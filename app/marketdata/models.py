from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String
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


class Book(Base):
    __tablename__ = "books"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    bids: Mapped[list[Any]] = mapped_column(JSONDocument)
    asks: Mapped[list[Any]] = mapped_column(JSONDocument)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
