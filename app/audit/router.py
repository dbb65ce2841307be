from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.audit import service
from app.audit.schemas import AuditEntryOut, AuditPage, VerificationOut
from app.auth.dependencies import AuditReader
from app.core.deps import RuntimeDep, SessionDep
from app.core.http import problem_responses
from app.core.types import ID_PATTERN, Timestamp

router = APIRouter(prefix="/v1", tags=["audit"], responses=problem_responses(401, 403, 503))

Since = Annotated[
    Timestamp | None, Query(description="Entries created at or after this time (RFC 3339)")
]
Until = Annotated[
    Timestamp | None, Query(description="Entries created before this time (RFC 3339)")
]


@router.get("/audit", response_model=AuditPage, responses=problem_responses(422))
async def list_audit(
    principal: AuditReader,
    session: SessionDep,
    runtime: RuntimeDep,
    since: Since = None,
    until: Until = None,
    subaccount_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    # No NUL: PostgreSQL text cannot hold one (the query answered 500).
    kind: Annotated[str | None, Query(max_length=32, pattern=r"^[^\x00]*$")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    query = service.AuditQuery(principal.accounts, subaccount_id, kind, since, until)
    await service.seal_for_reading(session, runtime.session_factory)
    rows, next_cursor = await service.list_entries(session, query, cursor, limit)
    return AuditPage(
        entries=[AuditEntryOut.model_validate(service.entry_document(row)) for row in rows],
        next_cursor=next_cursor,
    )


@router.get("/audit/verify", response_model=VerificationOut)
async def verify_audit(
    principal: AuditReader, session: SessionDep, runtime: RuntimeDep
) -> VerificationOut:
    await service.seal_for_reading(session, runtime.session_factory)
    report = await service.verify_chain(session)
    head_seq, head_hash = report.last_good or (None, None)
    return VerificationOut(
        ok=report.verification.ok,
        entries=report.verification.entries,
        first_bad_seq=report.verification.first_bad_seq,
        head_seq=head_seq,
        head_hash=head_hash,
    )


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One entry per line, in sequence order, up to the head of the chain "
            "when the export began: canonical JSON with the payload's stored text spliced in as "
            "it is, so that the line without its `hash` and `prev_hash` members is the entry "
            "that was hashed",
            "content": {
                "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/AuditEntryOut"}}
            },
        },
        **problem_responses(422),
    },
)
async def export_audit(
    principal: AuditReader, runtime: RuntimeDep, since: Since = None, until: Until = None
) -> StreamingResponse:
    query = service.AuditQuery(principal.accounts, since=since, until=until)
    # The request's session is closed before the body streams: the lines open their own (and
    # seal what was committed before reading).
    lines = service.export_lines(runtime.session_factory, query)
    return StreamingResponse(lines, media_type="application/x-ndjson")
