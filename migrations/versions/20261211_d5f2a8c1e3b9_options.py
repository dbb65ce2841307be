"""Options: an instrument's ``option_type`` and ``strike``, and a mark's implied volatility
``iv`` (margin.md "Options"; null on every other kind and on marks of other symbols).

Revision ID: d5f2a8c1e3b9
Revises: c4e1b7a9d062
Create Date: 2026-12-11 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "d5f2a8c1e3b9"
down_revision: str | None = "c4e1b7a9d062"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("instruments", sa.Column("option_type", sa.String(8), nullable=True))
    op.add_column("instruments", sa.Column("strike", app.core.db.Exact(), nullable=True))
    op.add_column("marks", sa.Column("iv", app.core.db.Exact(), nullable=True))


def downgrade() -> None:
    # Options cannot be kept without their terms: they go, and the marks of their symbols too.
    op.execute(
        "DELETE FROM marks WHERE symbol IN (SELECT symbol FROM instruments WHERE kind = 'option')"
    )
    op.execute("DELETE FROM instruments WHERE kind = 'option'")
    with op.batch_alter_table("marks") as batch_op:
        batch_op.drop_column("iv")
    with op.batch_alter_table("instruments") as batch_op:
        batch_op.drop_column("strike")
        batch_op.drop_column("option_type")
