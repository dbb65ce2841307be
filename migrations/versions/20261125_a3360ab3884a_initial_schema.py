"""initial schema

Revision ID: a3360ab3884a
Revises:
Create Date: 2026-11-25 00:41:52.590708
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.core.db

revision: str = "a3360ab3884a"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "limits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "accounts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "assets",
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("collateral_weight", app.core.db.Exact(), nullable=False),
        sa.Column("underlying", sa.String(length=64), nullable=True),
        sa.Column("is_settlement", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_assets")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_key_id", sa.String(length=32), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("subaccount_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_audit_log_kind_seq", ["kind", "seq"], unique=False)
        batch_op.create_index("ix_audit_log_subaccount_seq", ["subaccount_id", "seq"], unique=False)

    op.create_table(
        "books",
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column(
            "bids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "asks",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("ts", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_books")),
    )
    op.create_table(
        "instruments",
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("underlying", sa.String(length=64), nullable=False),
        sa.Column("contract_size", app.core.db.Exact(), nullable=False),
        sa.Column("tick_size", app.core.db.Exact(), nullable=False),
        sa.Column("lot_size", app.core.db.Exact(), nullable=False),
        sa.Column(
            "margin_tiers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("taker_fee_rate", app.core.db.Exact(), nullable=False),
        sa.Column("maker_fee_rate", app.core.db.Exact(), nullable=False),
        sa.Column("price_band", app.core.db.Exact(), nullable=True),
        sa.Column("max_order_notional", app.core.db.Exact(), nullable=True),
        sa.Column("expiry", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("funding_interval_s", sa.Integer(), nullable=True),
        sa.Column("stale_after_s", app.core.db.Exact(), nullable=True),
        sa.Column("max_twap_deviation", app.core.db.Exact(), nullable=True),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_instruments")),
    )
    op.create_table(
        "marks",
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("price", app.core.db.Exact(), nullable=False),
        sa.Column("ts", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("funding_rate", app.core.db.Exact(), nullable=True),
        sa.PrimaryKeyConstraint("symbol", "source", name=op.f("pk_marks")),
    )
    op.create_table(
        "trading_states",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id", name=op.f("pk_trading_states")),
    )
    op.create_table(
        "subaccounts",
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("margin_mode", sa.String(length=16), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=True),
        sa.Column(
            "limits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name=op.f("fk_subaccounts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("subaccount_id", name=op.f("pk_subaccounts")),
    )
    with op.batch_alter_table("subaccounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subaccounts_account_id"), ["account_id"], unique=False)

    op.create_table(
        "balances",
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("amount", app.core.db.Exact(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset"], ["assets.symbol"], name=op.f("fk_balances_asset_assets")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_balances_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("subaccount_id", "asset", name=op.f("pk_balances")),
    )
    op.create_table(
        "fills",
        sa.Column("fill_id", sa.String(length=64), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("size", app.core.db.Exact(), nullable=False),
        sa.Column("price", app.core.db.Exact(), nullable=False),
        sa.Column("fee", app.core.db.Exact(), nullable=False),
        sa.Column("fee_asset", sa.String(length=64), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column("ts", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("realized_pnl", app.core.db.Exact(), nullable=False),
        sa.Column("position_size_after", app.core.db.Exact(), nullable=False),
        sa.Column("entry_price_after", app.core.db.Exact(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fee_asset"], ["assets.symbol"], name=op.f("fk_fills_fee_asset_assets")
        ),
        sa.ForeignKeyConstraint(
            ["instrument"], ["instruments.symbol"], name=op.f("fk_fills_instrument_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_fills_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("fill_id", name=op.f("pk_fills")),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index("ix_fills_subaccount_ts", ["subaccount_id", "ts"], unique=False)

    op.create_table(
        "leverage",
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("leverage", app.core.db.Exact(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument"], ["instruments.symbol"], name=op.f("fk_leverage_instrument_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_leverage_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("subaccount_id", "instrument", name=op.f("pk_leverage")),
    )
    op.create_table(
        "positions",
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("size", app.core.db.Exact(), nullable=False),
        sa.Column("entry_price", app.core.db.Exact(), nullable=False),
        sa.Column("isolated_margin", app.core.db.Exact(), nullable=False),
        sa.Column("realized_pnl", app.core.db.Exact(), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument"], ["instruments.symbol"], name=op.f("fk_positions_instrument_instruments")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_positions_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("subaccount_id", "instrument", name=op.f("pk_positions")),
    )
    op.create_table(
        "transfers",
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("subaccount_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=64), nullable=False),
        sa.Column("amount", app.core.db.Exact(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("to_subaccount_id", sa.String(length=64), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset"], ["assets.symbol"], name=op.f("fk_transfers_asset_assets")
        ),
        sa.ForeignKeyConstraint(
            ["subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_transfers_subaccount_id_subaccounts"),
        ),
        sa.ForeignKeyConstraint(
            ["to_subaccount_id"],
            ["subaccounts.subaccount_id"],
            name=op.f("fk_transfers_to_subaccount_id_subaccounts"),
        ),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_transfers")),
    )


def downgrade() -> None:

    op.drop_table("transfers")
    op.drop_table("positions")
    op.drop_table("leverage")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index("ix_fills_subaccount_ts")

    op.drop_table("fills")
    op.drop_table("balances")
    with op.batch_alter_table("subaccounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subaccounts_account_id"))

    op.drop_table("subaccounts")
    op.drop_table("trading_states")
    op.drop_table("marks")
    op.drop_table("instruments")
    op.drop_table("books")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_subaccount_seq")
        batch_op.drop_index("ix_audit_log_kind_seq")
        batch_op.drop_index("ix_audit_log_created_at")

    op.drop_table("audit_log")
    op.drop_table("assets")
    op.drop_table("api_keys")
    op.drop_table("accounts")
