from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime


class AuditEntry(Base):
    """One entry of the audit log. The write it describes inserts it unsealed (``seq``,
    ``prev_hash`` and ``hash`` null) in its own transaction; the sealer links it into the hash
    chain a few milliseconds after it commits (app/audit/sealer.py):
    ``hash = sha256(prev_hash ‖ entry)`` (app/audit/chain.py)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_subaccount_seq", "subaccount_id", "seq"),
        Index("ix_audit_log_kind_seq", "kind", "seq"),
        Index("ix_audit_log_created_at", "created_at"),
    )

    # INTEGER on SQLite: only an INTEGER PRIMARY KEY is numbered automatically there.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    """Insertion order: the sealer links entries in this order (among those committed)."""
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    """The position in the chain, from 1; null until sealed."""
    kind: Mapped[str] = mapped_column(String(32))
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(64))
    subaccount_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    """A JSON object, hashed byte for byte as stored (``record`` writes canonical JSON)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64), unique=True)
