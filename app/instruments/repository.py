from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, column, exists, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Exact
from app.instruments.models import Asset, Instrument

# The accounts package's ``positions`` table, by name: accounts sits above instruments, so its
# model cannot be imported here. ``size`` keeps the ORM column's type so that a comparison binds
# the same way (canonical text on SQLite).
_positions = table("positions", column("instrument", String), column("size", Exact))


async def get_asset(session: AsyncSession, symbol: str) -> Asset | None:
    return await session.get(Asset, symbol)


async def list_assets(session: AsyncSession) -> Sequence[Asset]:
    return (await session.scalars(select(Asset).order_by(Asset.symbol))).all()


async def settlement_asset(session: AsyncSession) -> Asset | None:
    return await session.scalar(select(Asset).where(Asset.is_settlement.is_(True)))


async def get_instrument(session: AsyncSession, symbol: str) -> Instrument | None:
    return await session.get(Instrument, symbol)


async def get_instruments(session: AsyncSession, symbols: Sequence[str]) -> dict[str, Instrument]:
    if not symbols:
        return {}
    rows = await session.scalars(select(Instrument).where(Instrument.symbol.in_(set(symbols))))
    return {row.symbol: row for row in rows}


async def list_instruments(session: AsyncSession) -> Sequence[Instrument]:
    return (await session.scalars(select(Instrument).order_by(Instrument.symbol))).all()


async def has_open_positions(session: AsyncSession, symbol: str) -> bool:
    """Whether any subaccount holds a non-zero position in ``symbol``."""
    query = select(exists().where(_positions.c.instrument == symbol, _positions.c.size != 0))
    return bool(await session.scalar(query))


def add(session: AsyncSession, row: Asset | Instrument) -> None:
    session.add(row)
