from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.auth.dependencies import Reader, SharedAdmin
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import problem_responses
from app.core.types import ID_PATTERN
from app.instruments import service
from app.instruments.schemas import (
    AssetIn,
    AssetList,
    AssetOut,
    InstrumentIn,
    InstrumentList,
    InstrumentOut,
)

router = APIRouter(
    prefix="/v1", tags=["reference data"], responses=problem_responses(401, 403, 503)
)
CREATED = "Created (200 when it existed and was updated)"
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.put(
    "/assets/{symbol}",
    response_model=AssetOut,
    responses={
        201: {"model": AssetOut, "description": CREATED},
        **problem_responses(400, 409, 422),
    },
)
async def put_asset(
    body: AssetIn, response: Response, principal: SharedAdmin, session: SessionDep, symbol: PathId
) -> AssetOut:
    asset, created = await service.put_asset(session, principal.actor, symbol, body)
    response.status_code = 201 if created else 200
    return service.asset_out(asset)


@router.get("/assets", response_model=AssetList)
async def list_assets(principal: Reader, session: SessionDep) -> AssetList:
    return AssetList(assets=[service.asset_out(a) for a in await service.list_assets(session)])


@router.get("/assets/{symbol}", response_model=AssetOut, responses=problem_responses(404, 422))
async def get_asset(principal: Reader, session: SessionDep, symbol: PathId) -> AssetOut:
    return service.asset_out(await service.get_asset(session, symbol))


@router.put(
    "/instruments/{symbol}",
    response_model=InstrumentOut,
    responses={
        201: {"model": InstrumentOut, "description": CREATED},
        **problem_responses(400, 409, 422),
    },
)
async def put_instrument(
    body: InstrumentIn,
    response: Response,
    principal: SharedAdmin,
    session: SessionDep,
    runtime: RuntimeDep,
    symbol: PathId,
) -> InstrumentOut:
    instrument, created = await service.put_instrument(session, principal.actor, symbol, body)
    response.status_code = 201 if created else 200
    return service.instrument_out(instrument, runtime.settings)


@router.get("/instruments", response_model=InstrumentList)
async def list_instruments(
    principal: Reader, session: SessionDep, runtime: RuntimeDep
) -> InstrumentList:
    rows = await service.list_instruments(session)
    return InstrumentList(instruments=[service.instrument_out(i, runtime.settings) for i in rows])


@router.get(
    "/instruments/{symbol}", response_model=InstrumentOut, responses=problem_responses(404, 422)
)
async def get_instrument(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, symbol: PathId
) -> InstrumentOut:
    return service.instrument_out(await service.get_instrument(session, symbol), runtime.settings)
