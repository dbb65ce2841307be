from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.instruments.models import Asset, Instrument


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


def add(session: AsyncSession, row: Asset | Instrument) -> None:
    session.add(row)
