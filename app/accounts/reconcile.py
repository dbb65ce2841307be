"""Reconciliation: how the service's state differs from a venue snapshot, changing nothing.

Each difference is ``venue − ours`` — what loading the snapshot (PUT …/snapshot) would change.
A balance or position missing on one side counts as 0, and a zero-size position as absent. For a
position held on one side only, its size (and an isolated margin, if any) is listed; an entry price
of a position that does not exist means nothing, so it is not.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.models import Position, Subaccount
from app.accounts.schemas import SnapshotIn, SnapshotPositionIn
from app.accounts.venue import check_snapshot
from app.core.types import Money

PositionField = Literal["size", "entry_price", "isolated_margin"]
_ZERO = Decimal(0)


class BalanceDifference(BaseModel):
    asset: str
    ours: Money
    venue: Money
    difference: Money


class PositionDifference(BaseModel):
    instrument: str
    field: PositionField
    ours: Money
    venue: Money
    difference: Money


class ReconcileOut(BaseModel):
    subaccount_id: str
    balances: list[BalanceDifference]
    positions: list[PositionDifference]
    matches: bool


def _position_fields(
    ours: Position | None, venue: SnapshotPositionIn | None
) -> list[tuple[PositionField, Decimal, Decimal]]:
    ours_fields: dict[PositionField, Decimal] = (
        {}
        if ours is None
        else {
            "size": ours.size,
            "entry_price": ours.entry_price,
            "isolated_margin": ours.isolated_margin,
        }
    )
    venue_fields: dict[PositionField, Decimal] = (
        {}
        if venue is None
        else {
            "size": venue.size,
            "entry_price": venue.entry_price,
            "isolated_margin": venue.isolated_margin or _ZERO,
        }
    )
    names: tuple[PositionField, ...] = ("size", "entry_price", "isolated_margin")
    if ours is None or venue is None:
        names = ("size", "isolated_margin")
    return [(name, ours_fields.get(name, _ZERO), venue_fields.get(name, _ZERO)) for name in names]


async def reconcile(
    session: AsyncSession, subaccount: Subaccount, body: SnapshotIn
) -> ReconcileOut:
    await check_snapshot(session, body, subaccount)
    sid = subaccount.subaccount_id
    ours_balances = {
        asset: row.amount for asset, row in (await repository.balances_of(session, sid)).items()
    }
    balances = []
    for asset in sorted(ours_balances.keys() | body.balances.keys()):
        ours, venue = ours_balances.get(asset, _ZERO), body.balances.get(asset, _ZERO)
        if ours != venue:
            balances.append(
                BalanceDifference(asset=asset, ours=ours, venue=venue, difference=venue - ours)
            )

    held = {
        symbol: row
        for symbol, row in (await repository.positions_of(session, sid)).items()
        if row.size != 0
    }
    reported = {item.instrument: item for item in body.positions if item.size != 0}
    positions = []
    for instrument in sorted(held.keys() | reported.keys()):
        for field, ours, venue in _position_fields(held.get(instrument), reported.get(instrument)):
            if ours != venue:
                positions.append(
                    PositionDifference(
                        instrument=instrument,
                        field=field,
                        ours=ours,
                        venue=venue,
                        difference=venue - ours,
                    )
                )
    return ReconcileOut(
        subaccount_id=sid,
        balances=balances,
        positions=positions,
        matches=not balances and not positions,
    )
