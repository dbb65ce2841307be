"""end of day margin reports

Revision ID: e687f0fce8ed
Revises: 962d7f168c54
Create Date: 2026-11-25 01:32:45.429809
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "e687f0fce8ed"
down_revision: str | None = "962d7f168c54"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "margin_reports",
        sa.Column("report_date", sa.Date(), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("margin_mode", sa.String(length=16), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("captured_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("report_date", "subaccount_id", name=op.f("pk_margin_reports")),
    )


def downgrade() -> None:

    op.drop_table("margin_reports")
