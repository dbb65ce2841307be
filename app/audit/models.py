from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class AuditEntry(Base):
    """One link of the hash chain: ``hash = sha256(prev_hash ‖ canonical JSON of the entry)``."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_subaccount_seq", "subaccount_id", "seq"),
        Index("ix_audit_log_kind_seq", "kind", "seq"),
        Index("ix_audit_log_created_at", "created_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(64))
    subaccount_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    """Canonical JSON (sorted keys, no spaces), stored byte for byte as it was hashed."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
