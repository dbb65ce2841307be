"""state versions: a token per subaccount, account, API key and the trading states, changed by
every write in the writing transaction (processes keep that state resident and key it on them)

Revision ID: 8b2e4d0f3c21
Revises: d5e8f1a2b3c4
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b2e4d0f3c21"
down_revision: str | None = "d5e8f1a2b3c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table → (scope of the version it changes, the column naming whose version)
SUBACCOUNT_TABLES = ("positions", "balances", "leverage", "reservations", "fills")
TRIGGERS: dict[str, list[tuple[str, str]]] = {
    **{table: [("subaccount", "subaccount_id")] for table in SUBACCOUNT_TABLES},
    # A new subaccount changes its account's set of siblings (account-wide caps count them).
    "subaccounts": [("subaccount", "subaccount_id"), ("account", "account_id")],
    "accounts": [("account", "account_id")],
    "api_keys": [("key", "key_id")],
    "trading_states": [("trading", "")],
}
# Random, not counted: a transaction that writes and then rolls back leaves a token that no
# committed state ever has, so nothing a process loaded under it is ever taken for current.
PG_TOKEN = "floor(random() * 9223372036854775806)::bigint"


def _ident(row: str, column: str) -> str:
    return f"{row}.{column}" if column else "''"


def _pg_function(table: str, targets: list[tuple[str, str]]) -> str:
    def upsert(row: str) -> str:
        return " ".join(
            "INSERT INTO state_versions (scope, id, token) VALUES "
            f"('{scope}', {_ident(row, column)}, {PG_TOKEN}) "
            "ON CONFLICT (scope, id) DO UPDATE SET token = EXCLUDED.token;"
            for scope, column in targets
        )

    return (
        f"CREATE FUNCTION {table}_state_version() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\nIF TG_OP = 'DELETE' THEN {upsert('OLD')} ELSE {upsert('NEW')} END IF;\n"
        "RETURN NULL;\nEND $$"
    )


def upgrade() -> None:
    op.create_table(
        "state_versions",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "id", name=op.f("pk_state_versions")),
    )
    op.execute(
        "INSERT INTO state_versions (scope, id, token) "
        "SELECT 'subaccount', subaccount_id, 1 FROM subaccounts "
        "UNION ALL SELECT 'account', account_id, 1 FROM accounts "
        "UNION ALL SELECT 'key', key_id, 1 FROM api_keys "
        "UNION ALL SELECT 'trading', '', 1"
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, targets in TRIGGERS.items():
        if postgres:
            op.execute(_pg_function(table, targets))
            op.execute(
                f"CREATE TRIGGER {table}_state_version AFTER INSERT OR UPDATE OR DELETE "
                f"ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_state_version()"
            )
            continue
        for event in ("INSERT", "UPDATE", "DELETE"):
            row = "OLD" if event == "DELETE" else "NEW"
            writes = " ".join(
                "INSERT OR REPLACE INTO state_versions (scope, id, token) VALUES "
                f"('{scope}', {_ident(row, column)}, random());"
                for scope, column in targets
            )
            op.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_state_version AFTER {event} ON {table} "
                f"BEGIN {writes} END"
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in TRIGGERS:
        if postgres:
            op.execute(f"DROP TRIGGER {table}_state_version ON {table}")
            op.execute(f"DROP FUNCTION {table}_state_version()")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}_state_version")
    op.drop_table("state_versions")
