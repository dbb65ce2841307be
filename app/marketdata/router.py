from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.auth.dependencies import BEARER_SECURITY, MarketWriter, Reader, feed_caller
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import RequestResponseRoute, body_openapi, json_body, problem_responses
from app.core.runtime import Runtime
from app.core.types import ID_PATTERN
from app.marketdata import service
from app.marketdata.schemas import BookIn, BookOut, MarkList, MarkOut, MarksAccepted, MarksIn

router = APIRouter(prefix="/v1", tags=["market data"], responses=problem_responses(401, 403, 503))
# The feed's hot path: its endpoint reads the key and the body itself (no dependency solve, no
# session per post), as the pre-trade check's does.
feed_router = APIRouter(
    prefix="/v1",
    tags=["market data"],
    responses=problem_responses(401, 403, 503),
    route_class=RequestResponseRoute,
)
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@feed_router.post(
    "/marks",
    response_model=MarksAccepted,
    responses=problem_responses(400, 404, 409, 422),
    openapi_extra={**body_openapi(MarksIn), **BEARER_SECURITY},
)
async def post_marks(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    caller = await feed_caller(request, runtime)
    body = await json_body(request, MarksIn)
    accepted = await service.post_marks(runtime, caller, body.marks)
    return Response(accepted.model_dump_json(), media_type="application/json")


@router.get("/marks", response_model=MarkList)
async def list_marks(principal: Reader, session: SessionDep, runtime: RuntimeDep) -> MarkList:
    return MarkList(marks=[service.mark_out(m) for m in await service.all_marks(session, runtime)])


@router.get("/marks/{symbol}", response_model=MarkOut, responses=problem_responses(404, 422))
async def get_mark(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, symbol: PathId
) -> MarkOut:
    return service.mark_out(await service.get_mark(session, runtime, symbol))


@router.put(
    "/books/{symbol}", response_model=BookOut, responses=problem_responses(400, 404, 409, 422)
)
async def put_book(
    body: BookIn, principal: MarketWriter, runtime: RuntimeDep, symbol: PathId
) -> BookOut:
    return await service.put_book(runtime, principal.actor, symbol, body)


@router.get("/books/{symbol}", response_model=BookOut, responses=problem_responses(404, 422))
async def get_book(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, symbol: PathId
) -> BookOut:
    return await service.book_out(session, runtime, symbol)
