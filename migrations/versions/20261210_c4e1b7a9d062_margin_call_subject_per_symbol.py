"""margin_calls.subject widens to 128: a per-symbol cap's call is subject
``<limit>:<symbol>`` (``max_underlying_notional:`` and a 64-character symbol need 88).

Revision ID: c4e1b7a9d062
Revises: b3e1c7d95a20
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4e1b7a9d062"
down_revision: str | None = "b3e1c7d95a20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _subject(old: int, new: int) -> None:
    # PostgreSQL alters in place; SQLite rebuilds the table (it has no triggers to keep).
    with op.batch_alter_table("margin_calls") as batch_op:
        batch_op.alter_column(
            "subject",
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=False,
        )


def upgrade() -> None:
    _subject(64, 128)


def downgrade() -> None:
    # A longer subject cannot be kept: those calls are per-symbol ones, which the old code
    # never raises; they are dropped rather than truncated into another call's subject.
    op.execute("DELETE FROM margin_calls WHERE length(subject) > 64")
    _subject(128, 64)
