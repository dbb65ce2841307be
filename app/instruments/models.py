from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Exact, JSONDocument, UTCDateTime


class Asset(Base):
    __tablename__ = "assets"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    collateral_weight: Mapped[Decimal] = mapped_column(Exact)
    underlying: Mapped[str | None] = mapped_column(String(64))
    is_settlement: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Instrument(Base):
    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    underlying: Mapped[str] = mapped_column(String(64))
    contract_size: Mapped[Decimal] = mapped_column(Exact)
    tick_size: Mapped[Decimal] = mapped_column(Exact)
    lot_size: Mapped[Decimal] = mapped_column(Exact)
    margin_tiers: Mapped[list[dict[str, str]]] = mapped_column(JSONDocument)
    """Ascending ``{notional_floor, initial_margin_fraction, maintenance_margin_fraction}``,
    decimal strings, maintenance already defaulted to half the initial fraction."""
    taker_fee_rate: Mapped[Decimal] = mapped_column(Exact)
    maker_fee_rate: Mapped[Decimal] = mapped_column(Exact)
    price_band: Mapped[Decimal | None] = mapped_column(Exact)
    max_order_notional: Mapped[Decimal | None] = mapped_column(Exact)
    expiry: Mapped[datetime | None] = mapped_column(UTCDateTime)
    option_type: Mapped[str | None] = mapped_column(String(8))
    """``call`` or ``put`` for an option; null for every other kind."""
    strike: Mapped[Decimal | None] = mapped_column(Exact)
    """An option's strike K; null for every other kind."""
    funding_interval_s: Mapped[int | None]
    stale_after_s: Mapped[Decimal | None] = mapped_column(Exact)
    """Null: the global default applies."""
    max_twap_deviation: Mapped[Decimal | None] = mapped_column(Exact)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
