"""mark_twaps and marks_moved. mark_twaps: each symbol's TWAP state (the point it was last extended to, the mark then, the
average over the span before it), kept with the marks in PostgreSQL so that a Redis that
restarted empty still judges ``deviating`` from the first post; the points history in Redis
is gone (the state is extended in O(1) per post). marks_moved: the symbols marked since the
last margin-call sweep, written with the marks (the sweep runs off the mark post's request).

Revision ID: a7d3c9e2f145
Revises: 9c3f5e1a4d32
Create Date: 2026-12-06 03:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "a7d3c9e2f145"
down_revision: str | None = "9c3f5e1a4d32"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mark_twaps",
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("at_ms", sa.Float(precision=53), nullable=False),
        sa.Column("last", sa.Float(precision=53), nullable=False),
        sa.Column("average", sa.Float(precision=53), nullable=False),
        sa.Column("span_ms", sa.Float(precision=53), nullable=False),
    )

    op.create_table(
        "marks_moved",
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("moved_at", app.core.db.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("marks_moved")
    op.drop_table("mark_twaps")
