"""The account routes whose writes risk checks or follows with margin calls (tagged
``accounts``, beside app/accounts/router.py): each calls one flow of app/risk/account_flows.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.accounts import service as accounts_service
from app.accounts import venue
from app.accounts.schemas import (
    REPLAYED,
    FillsIn,
    FillsOut,
    PositionsOut,
    SnapshotIn,
    SubaccountOut,
    SubaccountPatch,
    TradingStateList,
    TransferIn,
    TransferOut,
)
from app.auth.dependencies import Admin, Reader, VenueWriter
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import problem_responses
from app.core.types import ID_PATTERN
from app.risk import account_flows

router = APIRouter(prefix="/v1", tags=["accounts"], responses=problem_responses(401, 403, 503))
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.patch(
    "/subaccounts/{subaccount_id}",
    response_model=SubaccountOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def update_subaccount(
    body: SubaccountPatch,
    principal: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
    subaccount_id: PathId,
) -> SubaccountOut:
    subaccount = await account_flows.update_subaccount(
        session, runtime, principal, subaccount_id, body
    )
    return await accounts_service.subaccount_out(session, subaccount)


@router.get("/trading-state", response_model=TradingStateList)
async def list_trading_states(
    principal: Reader, session: SessionDep, runtime: RuntimeDep
) -> TradingStateList:
    states = await account_flows.trading_states(session, runtime, principal)
    return TradingStateList(trading_states=states)


@router.post(
    "/subaccounts/{subaccount_id}/transfers",
    response_model=TransferOut,
    status_code=201,
    responses={
        200: {"model": TransferOut, "description": REPLAYED},
        **problem_responses(400, 404, 409, 422),
    },
)
async def record_transfer(
    body: TransferIn,
    response: Response,
    principal: VenueWriter,
    session: SessionDep,
    runtime: RuntimeDep,
    subaccount_id: PathId,
) -> TransferOut:
    transfer, created = await account_flows.record_transfer(
        session, runtime, principal, subaccount_id, body
    )
    response.status_code = 201 if created else 200
    return venue.transfer_out(transfer)


@router.post("/fills", response_model=FillsOut, responses=problem_responses(400, 404, 409, 422))
async def record_fills(
    body: FillsIn, principal: VenueWriter, session: SessionDep, runtime: RuntimeDep
) -> FillsOut:
    fills = await account_flows.record_fills(session, runtime, principal, body.fills)
    return FillsOut(fills=[venue.fill_out(f) for f in fills])


@router.put(
    "/subaccounts/{subaccount_id}/snapshot",
    response_model=PositionsOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def load_snapshot(
    body: SnapshotIn,
    principal: VenueWriter,
    session: SessionDep,
    runtime: RuntimeDep,
    subaccount_id: PathId,
) -> PositionsOut:
    subaccount = await account_flows.load_snapshot(session, runtime, principal, subaccount_id, body)
    return await venue.positions_out(session, subaccount)
