from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Exact, JSONDocument, UTCDateTime


class Account(Base):
    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    limits: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subaccount(Base):
    __tablename__ = "subaccounts"

    subaccount_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    margin_mode: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str | None] = mapped_column(String(64))
    limits: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Leverage(Base):
    """A subaccount's chosen leverage on one instrument."""

    __tablename__ = "leverage"

    subaccount_id: Mapped[str] = mapped_column(
        ForeignKey("subaccounts.subaccount_id"), primary_key=True
    )
    instrument: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), primary_key=True)
    leverage: Mapped[Decimal] = mapped_column(Exact)


class TradingState(Base):
    """A non-default trading state; ``scope_id`` is empty for the global scope. ``source`` is
    ``manual`` (set through the API) or ``auto`` (the circuit breaker, app/risk/breaker.py):
    each source keeps its own row, so neither overwrites the other; the stricter governs."""

    __tablename__ = "trading_states"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(8), primary_key=True, server_default="manual")
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Balance(Base):
    __tablename__ = "balances"

    subaccount_id: Mapped[str] = mapped_column(
        ForeignKey("subaccounts.subaccount_id"), primary_key=True
    )
    asset: Mapped[str] = mapped_column(ForeignKey("assets.symbol"), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Exact)


class Position(Base):
    __tablename__ = "positions"

    subaccount_id: Mapped[str] = mapped_column(
        ForeignKey("subaccounts.subaccount_id"), primary_key=True
    )
    instrument: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), primary_key=True)
    size: Mapped[Decimal] = mapped_column(Exact)
    entry_price: Mapped[Decimal] = mapped_column(Exact)
    isolated_margin: Mapped[Decimal] = mapped_column(Exact)
    realized_pnl: Mapped[Decimal] = mapped_column(Exact)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Fill(Base):
    __tablename__ = "fills"
    # ``fill_id`` is the client's idempotency id, unique per subaccount only: the same id in
    # another tenant's subaccount is another fill (a global key would 409 and reveal it).
    __table_args__ = (
        PrimaryKeyConstraint("subaccount_id", "fill_id"),
        Index("ix_fills_subaccount_ts", "subaccount_id", "ts"),
    )

    fill_id: Mapped[str] = mapped_column(String(64))
    subaccount_id: Mapped[str] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    instrument: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"))
    side: Mapped[str] = mapped_column(String(4))
    size: Mapped[Decimal] = mapped_column(Exact)
    price: Mapped[Decimal] = mapped_column(Exact)
    fee: Mapped[Decimal] = mapped_column(Exact)
    fee_asset: Mapped[str] = mapped_column(ForeignKey("assets.symbol"))
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    realized_pnl: Mapped[Decimal] = mapped_column(Exact)
    position_size_after: Mapped[Decimal] = mapped_column(Exact)
    entry_price_after: Mapped[Decimal] = mapped_column(Exact)
    request_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the canonical request item: a replay with other content is a conflict."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Transfer(Base):
    __tablename__ = "transfers"
    # Unique per source subaccount (the one in the path), like ``Fill.fill_id``.
    __table_args__ = (PrimaryKeyConstraint("subaccount_id", "transfer_id"),)

    transfer_id: Mapped[str] = mapped_column(String(64))
    subaccount_id: Mapped[str] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    asset: Mapped[str] = mapped_column(ForeignKey("assets.symbol"))
    amount: Mapped[Decimal] = mapped_column(Exact)
    kind: Mapped[str] = mapped_column(String(16))
    to_subaccount_id: Mapped[str | None] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Reservation(Base):
    """An accepted basket (a pre-trade check's, app/pretrade) held as if filled until a fill
    consumes it, it is released, or it expires (``expires_at`` passed: no sweeper is needed to
    stop counting it). Here, below risk, because every margin figure counts it (app/risk) and
    a recorded fill consumes it (app/accounts/venue.py)."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_subaccount_status", "subaccount_id", "status"),)

    reservation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.check_id"))
    subaccount_id: Mapped[str] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    status: Mapped[str] = mapped_column(String(16))
    """``active``, ``released`` or ``consumed``; an active one past ``expires_at`` is expired."""
    legs: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    """``[{client_order_id, instrument, side, size, price}]``, sizes still unfilled."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
