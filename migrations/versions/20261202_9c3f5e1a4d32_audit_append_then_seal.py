"""audit: append, then seal. Writes insert entries unsealed (no lock, no head read); a sealer
assigns seq, prev_hash and hash after they commit. ``id`` (the insertion order) becomes the
primary key; seq, prev_hash and hash become nullable (null until sealed). Existing entries keep
their seq and hashes, with id = seq.

Revision ID: 9c3f5e1a4d32
Revises: 8b2e4d0f3c21
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "9c3f5e1a4d32"
down_revision: str | None = "8b2e4d0f3c21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_audit_log_created_at": ["created_at"],
    "ix_audit_log_kind_seq": ["kind", "seq"],
    "ix_audit_log_subaccount_seq": ["subaccount_id", "seq"],
}
COLUMNS = "kind, actor_key_id, account_id, subaccount_id, payload, created_at, prev_hash, hash"


def _create_audit_log(*, sealed_on_insert: bool) -> None:
    """The table as it is after this revision (or, with ``sealed_on_insert``, before it)."""
    op.create_table(
        "audit_log",
        *(
            []
            if sealed_on_insert
            else [sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)]
        ),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=not sealed_on_insert),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_key_id", sa.String(length=32), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("subaccount_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=not sealed_on_insert),
        sa.Column("hash", sa.String(length=64), nullable=not sealed_on_insert),
        sa.PrimaryKeyConstraint("seq" if sealed_on_insert else "id", name="pk_audit_log"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
        *([] if sealed_on_insert else [sa.UniqueConstraint("seq", name="uq_audit_log_seq")]),
    )


def _rebuild_sqlite(*, sealed_on_insert: bool) -> None:
    """SQLite cannot change a primary key in place: a new table, the rows copied over (the
    entries sealed so far keep their seq and hashes, with id = seq)."""
    op.rename_table("audit_log", "audit_log_before")
    for name in INDEXES:
        op.drop_index(name, table_name="audit_log_before")
    _create_audit_log(sealed_on_insert=sealed_on_insert)
    into, select = ("", "") if sealed_on_insert else ("id, ", "seq, ")
    op.execute(
        f"INSERT INTO audit_log ({into}seq, {COLUMNS}) "
        f"SELECT {select}seq, {COLUMNS} FROM audit_log_before"
    )
    op.drop_table("audit_log_before")
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_log", columns)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _rebuild_sqlite(sealed_on_insert=False)
        return
    op.add_column("audit_log", sa.Column("id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_log SET id = seq")
    # What BIGSERIAL would make, numbering on from the last existing entry.
    op.execute("CREATE SEQUENCE audit_log_id_seq OWNED BY audit_log.id")
    op.execute(
        "SELECT setval('audit_log_id_seq', COALESCE((SELECT max(id) FROM audit_log), 0) + 1, false)"
    )
    op.execute("ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('audit_log_id_seq')")
    op.alter_column("audit_log", "id", nullable=False)
    op.drop_constraint("pk_audit_log", "audit_log", type_="primary")
    op.create_primary_key("pk_audit_log", "audit_log", ["id"])
    for column in ("seq", "prev_hash", "hash"):
        op.alter_column("audit_log", column, nullable=True)
    op.create_unique_constraint("uq_audit_log_seq", "audit_log", ["seq"])


def downgrade() -> None:
    unsealed = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_log WHERE seq IS NULL"))
    if unsealed.scalar_one():
        raise RuntimeError(
            "audit_log has unsealed entries: let a running server seal them (any audit read "
            "does) before downgrading"
        )
    if op.get_bind().dialect.name != "postgresql":
        _rebuild_sqlite(sealed_on_insert=True)
        return
    op.drop_constraint("uq_audit_log_seq", "audit_log", type_="unique")
    for column in ("seq", "prev_hash", "hash"):
        op.alter_column("audit_log", column, nullable=False)
    op.drop_constraint("pk_audit_log", "audit_log", type_="primary")
    op.create_primary_key("pk_audit_log", "audit_log", ["seq"])
    op.drop_column("audit_log", "id")  # drops the sequence it owns
