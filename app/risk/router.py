from __future__ import annotations

from datetime import date as date_type
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from app.auth.dependencies import Reader, RiskWriter, SharedAdmin
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import problem_responses
from app.core.types import ID_PATTERN
from app.risk import margin_calls, overview, reports, service, stress
from app.risk.schemas import (
    AccountMarginOut,
    BookStressIn,
    BookStressOut,
    MarginCallList,
    MarginCallOut,
    MarginReportOut,
    OverviewOut,
    RiskParametersBody,
    StressIn,
    StressOut,
    SubaccountMarginOut,
)

router = APIRouter(prefix="/v1", tags=["risk"], responses=problem_responses(401, 403, 503))
PathId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get(
    "/subaccounts/{subaccount_id}/margin",
    response_model=SubaccountMarginOut,
    responses=problem_responses(404, 422),
)
async def subaccount_margin(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, subaccount_id: PathId
) -> SubaccountMarginOut:
    return await service.subaccount_margin(session, runtime, principal.accounts, subaccount_id)


@router.get(
    "/accounts/{account_id}/margin",
    response_model=AccountMarginOut,
    responses=problem_responses(404, 422),
)
async def account_margin(
    principal: Reader, session: SessionDep, runtime: RuntimeDep, account_id: PathId
) -> AccountMarginOut:
    return await service.account_margin(session, runtime, principal.accounts, account_id)


@router.get("/risk/parameters", response_model=RiskParametersBody)
async def get_parameters(principal: Reader, session: SessionDep) -> dict[str, Any]:
    return (await service.parameters(session)).to_dict()


@router.put(
    "/risk/parameters",
    response_model=RiskParametersBody,
    responses=problem_responses(400, 409, 422),
)
async def put_parameters(
    body: RiskParametersBody, principal: SharedAdmin, session: SessionDep
) -> dict[str, Any]:
    return (await service.put_parameters(session, principal.actor, body.root)).to_dict()


@router.get("/risk/overview", response_model=OverviewOut, responses=problem_responses(422))
async def risk_overview(
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    sort: overview.SortKey = "maintenance_margin_ratio",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    account_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    margin_mode: Literal["isolated", "cross", "portfolio"] | None = None,
    min_ratio: Annotated[float | None, Query(ge=0, le=1e6)] = None,
) -> OverviewOut:
    """Every subaccount the key sees, most at risk first (``min_ratio`` filters on
    ``maintenance_margin_ratio``)."""
    return await overview.overview(
        session,
        runtime,
        principal.accounts,
        sort=sort,
        limit=limit,
        cursor=cursor,
        account_id=account_id,
        margin_mode=margin_mode,
        min_ratio=min_ratio,
    )


@router.post(
    "/subaccounts/{subaccount_id}/stress",
    response_model=StressOut,
    responses=problem_responses(400, 404, 422),
)
async def subaccount_stress(
    body: StressIn,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    subaccount_id: PathId,
) -> StressOut:
    return await stress.subaccount_stress(
        session, runtime, principal.accounts, subaccount_id, body.scenarios
    )


@router.post("/risk/stress", response_model=BookStressOut, responses=problem_responses(400, 422))
async def book_stress(
    body: BookStressIn, principal: Reader, session: SessionDep, runtime: RuntimeDep
) -> BookStressOut:
    return await stress.book_stress(session, runtime, principal.accounts, body.scenario)


@router.get("/margin-calls", response_model=MarginCallList, responses=problem_responses(422))
async def list_margin_calls(
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    subaccount_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> MarginCallList:
    """Newest first (at most 500); the calls of every mark posted before the request."""
    calls = await margin_calls.list_calls(session, runtime, principal, status, subaccount_id)
    return MarginCallList(margin_calls=[margin_calls.margin_call_out(c) for c in calls])


@router.post(
    "/margin-calls/{call_id}/ack",
    response_model=MarginCallOut,
    responses=problem_responses(404, 409, 422),
)
async def acknowledge_margin_call(
    principal: RiskWriter, session: SessionDep, call_id: Annotated[str, Path(max_length=32)]
) -> MarginCallOut:
    return margin_calls.margin_call_out(await margin_calls.acknowledge(session, principal, call_id))


@router.get(
    "/reports/margin",
    response_model=MarginReportOut,
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(404, 422)},
)
async def margin_report(
    request: Request,
    principal: Reader,
    session: SessionDep,
    runtime: RuntimeDep,
    date: date_type,
) -> Any:
    """End-of-day per-subaccount summaries: JSON, or CSV with ``Accept: text/csv``. Today's
    are computed live; a past day's were captured just after it ended (404 if none was)."""
    report = await reports.margin_report(session, runtime, principal.accounts, date)
    if "text/csv" in request.headers.get("accept", ""):
        return Response(reports.as_csv(report), media_type="text/csv")
    return report
