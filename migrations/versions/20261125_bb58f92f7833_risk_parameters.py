"""risk parameters

Revision ID: bb58f92f7833
Revises: a3360ab3884a
Create Date: 2026-11-25 00:53:36.577680
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "bb58f92f7833"
down_revision: str | None = "a3360ab3884a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "risk_parameters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_parameters")),
    )


def downgrade() -> None:

    op.drop_table("risk_parameters")
