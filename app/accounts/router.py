from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.accounts import reconcile, service, venue
from app.accounts.reconcile import ReconcileOut
from app.accounts.schemas import (
    REPLAYED,
    AccountIn,
    AccountLimitsIn,
    AccountList,
    AccountOut,
    BalancesOut,
    LeverageIn,
    PositionsOut,
    SnapshotIn,
    SubaccountIn,
    SubaccountLimitsIn,
    SubaccountList,
    SubaccountOut,
    TradingStateIn,
    TradingStateOut,
)
from app.auth.dependencies import Admin, LeverageWriter, Reader, RiskWriter, VenueWriter
from app.core.deps import SessionDep
from app.core.http import problem_responses
from app.core.types import ID_PATTERN

router = APIRouter(prefix="/v1", tags=["accounts"], responses=problem_responses(401, 403, 503))
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


# --- accounts ---------------------------------------------------------------------------------


@router.post(
    "/accounts",
    response_model=AccountOut,
    status_code=201,
    responses={
        200: {"model": AccountOut, "description": REPLAYED},
        **problem_responses(400, 409, 422),
    },
)
async def create_account(
    body: AccountIn, response: Response, principal: Admin, session: SessionDep
) -> AccountOut:
    account, created = await service.create_account(session, principal, body)
    response.status_code = 201 if created else 200
    return await service.account_out(session, account)


@router.get("/accounts", response_model=AccountList)
async def list_accounts(principal: Reader, session: SessionDep) -> AccountList:
    accounts = await service.list_accounts(session, principal)
    return AccountList(accounts=[await service.account_out(session, a) for a in accounts])


@router.get(
    "/accounts/{account_id}", response_model=AccountOut, responses=problem_responses(404, 422)
)
async def get_account(principal: Reader, session: SessionDep, account_id: PathId) -> AccountOut:
    account = await service.get_account(session, principal, account_id)
    return await service.account_out(session, account)


@router.put(
    "/accounts/{account_id}/limits",
    response_model=AccountOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def put_account_limits(
    body: AccountLimitsIn, principal: RiskWriter, session: SessionDep, account_id: PathId
) -> AccountOut:
    account = await service.get_account(session, principal, account_id)
    await service.put_account_limits(session, principal, account, body)
    return await service.account_out(session, account)


# --- subaccounts ------------------------------------------------------------------------------


@router.post(
    "/subaccounts",
    response_model=SubaccountOut,
    status_code=201,
    responses={
        200: {"model": SubaccountOut, "description": REPLAYED},
        **problem_responses(400, 404, 409, 422),
    },
)
async def create_subaccount(
    body: SubaccountIn, response: Response, principal: Admin, session: SessionDep
) -> SubaccountOut:
    subaccount, created = await service.create_subaccount(session, principal, body)
    response.status_code = 201 if created else 200
    return await service.subaccount_out(session, subaccount)


@router.get("/subaccounts", response_model=SubaccountList, responses=problem_responses(422))
async def list_subaccounts(
    principal: Reader,
    session: SessionDep,
    account_id: str | None = Query(None, pattern=ID_PATTERN),
) -> SubaccountList:
    rows = await service.list_subaccounts(session, principal, account_id)
    return SubaccountList(subaccounts=[await service.subaccount_out(session, s) for s in rows])


@router.get(
    "/subaccounts/{subaccount_id}",
    response_model=SubaccountOut,
    responses=problem_responses(404, 422),
)
async def get_subaccount(
    principal: Reader, session: SessionDep, subaccount_id: PathId
) -> SubaccountOut:
    subaccount = await service.get_subaccount(session, principal, subaccount_id)
    return await service.subaccount_out(session, subaccount)


@router.put(
    "/subaccounts/{subaccount_id}/limits",
    response_model=SubaccountOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def put_subaccount_limits(
    body: SubaccountLimitsIn, principal: RiskWriter, session: SessionDep, subaccount_id: PathId
) -> SubaccountOut:
    subaccount = await service.get_subaccount(session, principal, subaccount_id)
    await service.put_subaccount_limits(session, principal, subaccount, body)
    return await service.subaccount_out(session, subaccount)


@router.put(
    "/subaccounts/{subaccount_id}/leverage",
    response_model=SubaccountOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def set_leverage(
    body: LeverageIn, principal: LeverageWriter, session: SessionDep, subaccount_id: PathId
) -> SubaccountOut:
    subaccount = await service.get_subaccount(session, principal, subaccount_id, lock=True)
    await service.set_leverage(session, principal, subaccount, body)
    return await service.subaccount_out(session, subaccount)


# --- trading states ---------------------------------------------------------------------------


@router.put(
    "/trading-state", response_model=TradingStateOut, responses=problem_responses(400, 409, 422)
)
async def set_trading_state(
    body: TradingStateIn, principal: RiskWriter, session: SessionDep
) -> TradingStateOut:
    return await service.set_trading_state(session, principal, body)


# --- state from the venue ---------------------------------------------------------------------


@router.get(
    "/subaccounts/{subaccount_id}/positions",
    response_model=PositionsOut,
    responses=problem_responses(404, 422),
)
async def get_positions(
    principal: Reader, session: SessionDep, subaccount_id: PathId
) -> PositionsOut:
    subaccount = await service.get_subaccount(session, principal, subaccount_id)
    return await venue.positions_out(session, subaccount)


@router.get(
    "/subaccounts/{subaccount_id}/balances",
    response_model=BalancesOut,
    responses=problem_responses(404, 422),
)
async def get_balances(
    principal: Reader, session: SessionDep, subaccount_id: PathId
) -> BalancesOut:
    subaccount = await service.get_subaccount(session, principal, subaccount_id)
    return await venue.balances_out(session, subaccount)


@router.post(
    "/subaccounts/{subaccount_id}/reconcile",
    response_model=ReconcileOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def reconcile_snapshot(
    body: SnapshotIn, principal: VenueWriter, session: SessionDep, subaccount_id: PathId
) -> ReconcileOut:
    """The differences between our state and the venue's snapshot; changes nothing."""
    subaccount = await service.get_subaccount(session, principal, subaccount_id)
    return await reconcile.reconcile(session, subaccount, body)
