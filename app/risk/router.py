from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from app.auth.dependencies import Admin, Reader
from app.core.deps import RuntimeDep, SessionDep
from app.core.types import ID_PATTERN
from app.risk import service
from app.risk.schemas import AccountMarginOut, RiskParametersBody, SubaccountMarginOut

router = APIRouter(prefix="/v1", tags=["risk"])
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get("/subaccounts/{subaccount_id}/margin", response_model=SubaccountMarginOut)
async def subaccount_margin(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, subaccount_id: PathId
) -> SubaccountMarginOut:
    return await service.subaccount_margin(session, runtime, principal.accounts, subaccount_id)


@router.get("/accounts/{account_id}/margin", response_model=AccountMarginOut)
async def account_margin(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, account_id: PathId
) -> AccountMarginOut:
    return await service.account_margin(session, runtime, principal.accounts, account_id)


@router.get("/risk/parameters", response_model=RiskParametersBody)
async def get_parameters(principal: Reader, session: SessionDep) -> dict[str, Any]:
    return (await service.parameters(session)).to_dict()


@router.put("/risk/parameters", response_model=RiskParametersBody)
async def put_parameters(
    body: RiskParametersBody, principal: Admin, session: SessionDep
) -> dict[str, Any]:
    return (await service.put_parameters(session, principal.actor, body.root)).to_dict()
