"""trading_states.source: ``manual`` (set through the API; every existing row) or ``auto``
(the circuit breaker). The source joins the primary key, so a manual and an automatic state
of the same scope and id stand side by side.

Revision ID: f2a6c8d4e5b7
Revises: a7d3c9e2f145
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2a6c8d4e5b7"
down_revision: str | None = "a7d3c9e2f145"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = ("insert", "update", "delete")


def _sqlite_triggers(action: str) -> None:
    """SQLite rebuilds the table to change its primary key, which drops its triggers: those of
    revision 8b2e4d0f3c21 (every trading-state write renews the ``trading`` version) are
    dropped before and created again after."""
    for event in EVENTS:
        if action == "drop":
            op.execute(f"DROP TRIGGER IF EXISTS trading_states_{event}_state_version")
        else:
            op.execute(
                f"CREATE TRIGGER trading_states_{event}_state_version AFTER {event.upper()} "
                "ON trading_states BEGIN INSERT OR REPLACE INTO state_versions (scope, id, token) "
                "VALUES ('trading', '', random()); END"
            )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite_triggers("drop")
    with op.batch_alter_table("trading_states", recreate="auto") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=8), server_default="manual", nullable=False)
        )
        batch.drop_constraint("pk_trading_states", type_="primary")
        batch.create_primary_key("pk_trading_states", ["scope", "scope_id", "source"])
    if sqlite:
        _sqlite_triggers("create")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute("DELETE FROM trading_states WHERE source <> 'manual'")
    if sqlite:
        _sqlite_triggers("drop")
    with op.batch_alter_table("trading_states", recreate="auto") as batch:
        batch.drop_constraint("pk_trading_states", type_="primary")
        batch.create_primary_key("pk_trading_states", ["scope", "scope_id"])
        batch.drop_column("source")
    if sqlite:
        _sqlite_triggers("create")
