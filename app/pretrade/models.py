from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONDocument, UTCDateTime


class CheckRecord(Base):
    """A check's answer, kept so that a replayed ``client_order_id`` gets the same answer."""

    __tablename__ = "checks"

    check_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subaccount_id: Mapped[str] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # The order-rate window read from PostgreSQL while Redis is down (repository).
    __table_args__ = (Index("ix_checks_subaccount_id_created_at", "subaccount_id", "created_at"),)


class OrderId(Base):
    """A ``client_order_id`` a subaccount has used, and the check that used it."""

    __tablename__ = "check_orders"

    subaccount_id: Mapped[str] = mapped_column(
        ForeignKey("subaccounts.subaccount_id"), primary_key=True
    )
    client_order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.check_id"))


class Reservation(Base):
    """An accepted basket held as if filled until a fill consumes it, it is released, or it
    expires (``expires_at`` passed: no sweeper is needed to stop counting it)."""

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
