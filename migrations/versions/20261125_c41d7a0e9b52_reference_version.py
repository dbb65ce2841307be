"""reference version: a token every write to reference data changes (process caches key on it)

Revision ID: c41d7a0e9b52
Revises: e687f0fce8ed
Create Date: 2026-11-25 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c41d7a0e9b52"
down_revision: str | None = "e687f0fce8ed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables whose rows every check reads and that change rarely (app/core/reference.py).
REFERENCE_TABLES = ("instruments", "assets", "risk_parameters")


def upgrade() -> None:
    op.create_table(
        "reference_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_version")),
    )
    op.execute("INSERT INTO reference_version (id, token) VALUES (1, 0)")
    # A random token, not a counter: a transaction that changes reference data and then rolls
    # back leaves a token no committed state will ever have, so nothing cached under it is
    # ever taken for current.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION new_reference_version() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE reference_version
                   SET token = floor(random() * 9223372036854775806)::bigint WHERE id = 1;
                RETURN NULL;
            END $$
            """
        )
        for table in REFERENCE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_reference_version "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION new_reference_version()"
            )
    else:
        for table in REFERENCE_TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_{event.lower()}_reference_version "
                    f"AFTER {event} ON {table} BEGIN "
                    "UPDATE reference_version SET token = random() WHERE id = 1; END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in REFERENCE_TABLES:
            op.execute(f"DROP TRIGGER {table}_reference_version ON {table}")
        op.execute("DROP FUNCTION new_reference_version()")
    else:
        for table in REFERENCE_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}_reference_version")
    op.drop_table("reference_version")
