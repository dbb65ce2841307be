"""Migrations build the schema from empty on both databases, and match the models."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import Base
from app.core.migrations import upgrade
from app.models import load_all_models
from tests import services

TABLES = {
    "accounts",
    "api_keys",
    "assets",
    "audit_log",
    "balances",
    "books",
    "fills",
    "instruments",
    "leverage",
    "margin_calls",
    "margin_reports",
    "marks",
    "positions",
    "risk_parameters",
    "subaccounts",
    "trading_states",
    "transfers",
    "webhook_outbox",
    "checks",
    "check_orders",
    "reservations",
}


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _check(url: str) -> None:
    load_all_models()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables >= TABLES
            assert await connection.run_sync(_drift) == []
    finally:
        await engine.dispose()


async def test_postgresql_from_empty() -> None:
    server = services.postgres_server_url()
    name = f"preflight_migrate_{os.getpid()}"
    url = services.create_database(server, name)
    try:
        await asyncio.to_thread(upgrade, url)
        await _check(url)
    finally:
        services.drop_database(server, name)


async def test_sqlite_from_empty(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    await asyncio.to_thread(upgrade, url)
    await _check(url)
