from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app.auth.dependencies import BEARER_SECURITY, CheckCaller, Reader, VenueWriter, check_caller
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import RequestResponseRoute, body_openapi, json_body, problem_responses
from app.core.runtime import Runtime
from app.core.types import ID_PATTERN, utcnow
from app.pretrade import reservations, service
from app.pretrade.schemas import (
    CheckIn,
    CheckOut,
    MaxScaleIn,
    MaxScaleOut,
    MaxSizeIn,
    MaxSizeOut,
    ReservationList,
    ReservationOut,
)

router = APIRouter(prefix="/v1", tags=["pre-trade"], responses=problem_responses(401, 403, 503))
# The hot path's own router: its endpoint reads the key and the body itself (no dependency
# solve per request) and returns the answer's bytes as they were stored and audited.
check_router = APIRouter(
    prefix="/v1",
    tags=["pre-trade"],
    responses=problem_responses(401, 403, 503),
    route_class=RequestResponseRoute,
)
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@check_router.post(
    "/pretrade/check",
    response_model=CheckOut,
    responses=problem_responses(400, 404, 409, 422),
    openapi_extra={**body_openapi(CheckIn), **BEARER_SECURITY},
)
async def check(request: Request) -> Response:
    """Judge a basket of 1–50 legs as one; 200 whether accepted or rejected."""
    # The key and the body are refused exactly as the dependencies would refuse them.
    runtime: Runtime = request.app.state.runtime
    caller = await check_caller(request, runtime)
    body = await json_body(request, CheckIn)
    # The answer is serialised once: these bytes are also what is stored and audited.
    return Response(await service.check(runtime, caller, body), media_type="application/json")


@router.post(
    "/pretrade/max-size", response_model=MaxSizeOut, responses=problem_responses(400, 404, 409, 422)
)
async def max_size(body: MaxSizeIn, caller: CheckCaller, runtime: RuntimeDep) -> MaxSizeOut:
    return await service.max_size(runtime, caller, body)


@router.post(
    "/pretrade/max-scale",
    response_model=MaxScaleOut,
    responses=problem_responses(400, 404, 409, 422),
)
async def max_scale(body: MaxScaleIn, caller: CheckCaller, runtime: RuntimeDep) -> MaxScaleOut:
    """The largest factor of a basket (each leg rounded down to its lot) the check accepts now;
    a hedge keeps its ratio. Reserves, records and audits nothing."""
    return await service.max_scale(runtime, caller, body)


@router.get(
    "/subaccounts/{subaccount_id}/reservations",
    response_model=ReservationList,
    responses=problem_responses(404, 422),
)
async def list_reservations(
    principal: Reader,
    session: SessionDep,
    subaccount_id: PathId,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ReservationList:
    """Newest first, ``limit`` per page; ``next_cursor`` pages on."""
    subaccount, rows, next_cursor = await service.list_reservations(
        session, principal, subaccount_id, cursor, limit
    )
    now = utcnow()
    return ReservationList(
        subaccount_id=subaccount.subaccount_id,
        reservations=[reservations.reservation_out(r, now) for r in rows],
        next_cursor=next_cursor,
    )


@router.delete(
    "/reservations/{reservation_id}",
    response_model=ReservationOut,
    responses=problem_responses(404, 409, 422),
)
async def release_reservation(
    principal: VenueWriter, session: SessionDep, reservation_id: Annotated[str, Path(max_length=32)]
) -> ReservationOut:
    reservation = await reservations.release(session, principal, reservation_id)
    return reservations.reservation_out(reservation, utcnow())
