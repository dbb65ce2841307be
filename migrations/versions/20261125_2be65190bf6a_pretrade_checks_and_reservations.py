"""pretrade checks and reservations

Revision ID: 2be65190bf6a
Revises: bb58f92f7833
Create Date: 2026-11-25 01:03:20.936460
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "2be65190bf6a"
down_revision: str | None = "bb58f92f7833"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "checks",
        sa.Column("check_id", sa.String(length=32), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_checks_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("check_id", name=op.f("pk_checks")),
    )
    op.create_table(
        "check_orders",
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("check_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["check_id"], ["checks.check_id"], name=op.f("fk_check_orders_check_id_checks")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_check_orders_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("subaccount_id", "client_order_id", name=op.f("pk_check_orders")),
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("check_id", sa.String(length=32), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "legs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["check_id"], ["checks.check_id"], name=op.f("fk_reservations_check_id_checks")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_reservations_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reservations_subaccount_status", ["subaccount_id", "status"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_subaccount_status")

    op.drop_table("reservations")
    op.drop_table("check_orders")
    op.drop_table("checks")
