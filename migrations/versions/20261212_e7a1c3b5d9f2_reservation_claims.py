"""A new reservation no longer changes its subaccount's version by trigger on PostgreSQL: the
statement that inserts it (``app/pretrade/repository.py``, ``insert_checks``) gives the
subaccount a new token itself and answers it, and may make the insert conditional on the token
the check was judged at (a reserving check without a row lock: it writes only if nothing moved
since). Releasing, consuming or expiring one (an UPDATE) and deleting one still change it by
trigger. SQLite keeps its triggers (one process: nothing is kept across its writes).

Revision ID: e7a1c3b5d9f2
Revises: d5f2a8c1e3b9
Create Date: 2026-12-12 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "e7a1c3b5d9f2"
down_revision: str | None = "d5f2a8c1e3b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _trigger(events: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER reservations_state_version ON reservations")
    op.execute(
        f"CREATE TRIGGER reservations_state_version AFTER {events} ON reservations "
        "FOR EACH ROW EXECUTE FUNCTION reservations_state_version()"
    )


def upgrade() -> None:
    _trigger("UPDATE OR DELETE")


def downgrade() -> None:
    _trigger("INSERT OR UPDATE OR DELETE")
