"""An end-of-day capture renews its subaccount's version: the day's loss counts the unrealised
PnL change since the capture that opened the day (rules.check_loss_limit), so a process that
holds a subaccount's state loaded before the capture landed loads it again.

Revision ID: b3e1c7d95a20
Revises: a45fa2b53249
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "b3e1c7d95a20"
down_revision: str | None = "a45fa2b53249"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As revision 8b2e4d0f3c21: a random token, never a count (see there).
PG_TOKEN = "floor(random() * 9223372036854775806)::bigint"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION margin_reports_state_version() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\nINSERT INTO state_versions (scope, id, token) VALUES "
            f"('subaccount', NEW.subaccount_id, {PG_TOKEN}) "
            "ON CONFLICT (scope, id) DO UPDATE SET token = EXCLUDED.token;\n"
            "RETURN NULL;\nEND $$"
        )
        op.execute(
            "CREATE TRIGGER margin_reports_state_version AFTER INSERT OR UPDATE "
            "ON margin_reports FOR EACH ROW EXECUTE FUNCTION margin_reports_state_version()"
        )
        return
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER margin_reports_{event.lower()}_state_version AFTER {event} "
            "ON margin_reports BEGIN INSERT OR REPLACE INTO state_versions (scope, id, token) "
            "VALUES ('subaccount', NEW.subaccount_id, random()); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER margin_reports_state_version ON margin_reports")
        op.execute("DROP FUNCTION margin_reports_state_version()")
        return
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER margin_reports_{event}_state_version")
