from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Exact, JSONDocument, UTCDateTime


class StoredRiskParameters(Base):
    """The methodology's parameters as set by an admin (one row; absent = margin.md defaults)."""

    __tablename__ = "risk_parameters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MarginCall(Base):
    """A subaccount past a level: ``warning`` / ``liquidation`` on its maintenance margin ratio,
    or ``limit`` when a limit's usage crossed its ``warn_at`` (``subject`` names the limit).
    At most one unresolved call per subaccount, level and subject (a partial unique index)."""

    __tablename__ = "margin_calls"
    __table_args__ = (
        Index(
            "uq_margin_calls_unresolved",
            "subaccount_id",
            "level",
            "subject",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
            sqlite_where=text("resolved_at IS NULL"),
        ),
        Index("ix_margin_calls_raised_at", "raised_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subaccount_id: Mapped[str] = mapped_column(ForeignKey("subaccounts.subaccount_id"))
    account_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    """Empty for the margin levels; the limit's name for ``limit`` (``<limit>:<symbol>`` for a
    per-symbol cap: a 64-character symbol needs the room)."""
    status: Mapped[str] = mapped_column(String(16))
    ratio: Mapped[float | None] = mapped_column(Float)
    shortfall: Mapped[Decimal] = mapped_column(Exact)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(32))


class WebhookEvent(Base):
    """The outbox: written in the transaction that raised the event, delivered afterwards by a
    background worker with retries, so an event is never lost and never slows a request."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))


class DailyMarginReport(Base):
    """A subaccount's ``MarginSummary`` captured for the end of a UTC day (shortly after
    midnight, by whichever server process gets there first)."""

    __tablename__ = "margin_reports"

    report_date: Mapped[date] = mapped_column(Date, primary_key=True)
    subaccount_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    margin_mode: Mapped[str] = mapped_column(String(16))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
