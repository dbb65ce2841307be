"""checks by subaccount and time: the order-rate window counted in PostgreSQL when Redis is down

Revision ID: d5e8f1a2b3c4
Revises: c41d7a0e9b52
Create Date: 2026-11-25 03:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "d5e8f1a2b3c4"
down_revision: str | None = "c41d7a0e9b52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_checks_subaccount_id_created_at", "checks", ["subaccount_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_checks_subaccount_id_created_at", table_name="checks")
