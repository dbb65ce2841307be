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
