"""client ids per subaccount: ``fill_id`` and ``transfer_id`` become unique within their
subaccount only — the primary keys become ``(subaccount_id, fill_id)`` and ``(subaccount_id,
transfer_id)``. A global key answered 409 to a tenant whose id another tenant had used (and so
revealed it). Every row is kept. The downgrade restores the global keys; it refuses (changing
nothing) while some id is used by two subaccounts, since one of them would have to go.

Revision ID: a45fa2b53249
Revises: f2a6c8d4e5b7
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a45fa2b53249"
down_revision: str | None = "f2a6c8d4e5b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table → its client-chosen id column
CLIENT_IDS = {"fills": "fill_id", "transfers": "transfer_id"}


EVENTS = ("insert", "update", "delete")


def _sqlite_fill_triggers(action: str) -> None:
    """SQLite rebuilds a table to change its primary key, which drops its triggers: those of
    revision 8b2e4d0f3c21 on ``fills`` (every fill renews its subaccount's version) are
    dropped before and created again after."""
    for event in EVENTS:
        if action == "drop":
            op.execute(f"DROP TRIGGER IF EXISTS fills_{event}_state_version")
        else:
            row = "OLD" if event == "delete" else "NEW"
            op.execute(
                f"CREATE TRIGGER fills_{event}_state_version AFTER {event.upper()} ON fills "
                "BEGIN INSERT OR REPLACE INTO state_versions (scope, id, token) VALUES "
                f"('subaccount', {row}.subaccount_id, random()); END"
            )


def _set_primary_key(table: str, columns: list[str]) -> None:
    # Batch mode: PostgreSQL alters in place; SQLite, which cannot change a primary key,
    # gets the table rebuilt with its rows and indexes copied over (not its triggers).
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite and table == "fills":
        _sqlite_fill_triggers("drop")
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(f"pk_{table}", type_="primary")
        batch_op.create_primary_key(f"pk_{table}", columns)
    if sqlite and table == "fills":
        _sqlite_fill_triggers("create")


def upgrade() -> None:
    for table, column in CLIENT_IDS.items():
        _set_primary_key(table, ["subaccount_id", column])


def downgrade() -> None:
    connection = op.get_bind()
    for table, column in CLIENT_IDS.items():
        shared = connection.execute(
            sa.text(f"SELECT {column} FROM {table} GROUP BY {column} HAVING count(*) > 1 LIMIT 5")
        ).scalars()
        if ids := list(shared):
            raise RuntimeError(
                f"cannot downgrade: {table}.{column} {ids} used by more than one subaccount"
            )
    for table, column in CLIENT_IDS.items():
        _set_primary_key(table, [column])
