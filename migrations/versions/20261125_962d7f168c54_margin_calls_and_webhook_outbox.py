"""margin calls and webhook outbox

Revision ID: 962d7f168c54
Revises: 2be65190bf6a
Create Date: 2026-11-25 01:20:29.627191
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "962d7f168c54"
down_revision: str | None = "2be65190bf6a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
    )
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_outbox_due", ["delivered_at", "next_attempt_at"], unique=False
        )

    op.create_table(
        "margin_calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=True),
        sa.Column("shortfall", app.core.db.Exact(), nullable=False),
        sa.Column("raised_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_margin_calls_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_margin_calls")),
    )
    with op.batch_alter_table("margin_calls", schema=None) as batch_op:
        batch_op.create_index("ix_margin_calls_raised_at", ["raised_at"], unique=False)
        batch_op.create_index(
            "uq_margin_calls_unresolved",
            ["subaccount_id", "level", "subject"],
            unique=True,
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        )


def downgrade() -> None:

    with op.batch_alter_table("margin_calls", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_margin_calls_unresolved",
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        )
        batch_op.drop_index("ix_margin_calls_raised_at")

    op.drop_table("margin_calls")
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_outbox_due")

    op.drop_table("webhook_outbox")
