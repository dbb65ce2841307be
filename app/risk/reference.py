"""The reference data a check reads — every instrument, every asset, the risk parameters —
from the process cache that stays as current as PostgreSQL (app/core/reference.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar, cast

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.runtime import Runtime
from app.engine import RiskParameters
from app.instruments import repository as instruments_repository
from app.instruments.models import Asset, Instrument
from app.risk import repository

Row = TypeVar("Row", Asset, Instrument)


@dataclass(frozen=True)
class Reference:
    instruments: Mapping[str, Instrument]
    assets: Mapping[str, Asset]
    parameters: RiskParameters

    @cached_property
    def settlement(self) -> str:
        return next((a.symbol for a in self.assets.values() if a.is_settlement), "")


class _Columns:
    """A row's column values as plain attributes."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.__dict__.update(values)


def _detached(row: Row) -> Row:
    """A copy belonging to no session, shared by requests, read-only by convention: a plain
    object with the row's columns as attributes. Not an ORM instance, because every read of an
    instrumented attribute costs ~0.5 µs and a check reads hundreds (contract sizes, tiers,
    staleness of every instrument it values)."""
    columns = inspect(type(row)).column_attrs
    return cast(Row, _Columns({column.key: getattr(row, column.key) for column in columns}))


async def _load(session: AsyncSession) -> Reference:
    stored = await repository.get_parameters(session)
    return Reference(
        instruments={
            row.symbol: _detached(row)
            for row in await instruments_repository.list_instruments(session)
        },
        assets={
            row.symbol: _detached(row) for row in await instruments_repository.list_assets(session)
        },
        parameters=RiskParameters()
        if stored is None
        else RiskParameters.from_dict(stored.parameters),
    )


async def reference(session: AsyncSession, runtime: Runtime) -> Reference:
    return await runtime.reference.get(session, _load)
