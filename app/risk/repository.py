from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.risk.models import StoredRiskParameters

_ROW_ID = 1


async def get_parameters(session: AsyncSession) -> StoredRiskParameters | None:
    return await session.get(StoredRiskParameters, _ROW_ID)


def add_parameters(session: AsyncSession) -> StoredRiskParameters:
    row = StoredRiskParameters(id=_ROW_ID)
    session.add(row)
    return row
