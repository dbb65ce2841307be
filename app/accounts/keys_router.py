"""The /v1/api-keys routes (tagged ``auth``): key management, app/accounts/keys.py."""

from __future__ import annotations

from fastapi import APIRouter, Path

from app.accounts import keys
from app.auth.dependencies import Admin
from app.auth.schemas import ApiKeyIn, ApiKeyList, ApiKeyOut, CreatedApiKeyOut
from app.core.deps import SessionDep
from app.core.http import problem_responses

router = APIRouter(prefix="/v1", tags=["auth"], responses=problem_responses(401, 403, 503))


@router.post(
    "/api-keys",
    response_model=CreatedApiKeyOut,
    status_code=201,
    responses=problem_responses(400, 422),
)
async def create_key(body: ApiKeyIn, principal: Admin, session: SessionDep) -> CreatedApiKeyOut:
    created = await keys.create(
        session, principal.actor, body.role, body.accounts, body.label, principal.accounts
    )
    out = ApiKeyOut.model_validate(created.record, from_attributes=True)
    return CreatedApiKeyOut(**out.model_dump(), key=created.key)


@router.get("/api-keys", response_model=ApiKeyList)
async def list_keys(principal: Admin, session: SessionDep) -> ApiKeyList:
    rows = await keys.list_keys(session, principal.accounts)
    return ApiKeyList(api_keys=[ApiKeyOut.model_validate(r, from_attributes=True) for r in rows])


@router.delete(
    "/api-keys/{key_id}", response_model=ApiKeyOut, responses=problem_responses(404, 422)
)
async def revoke_key(
    principal: Admin, session: SessionDep, key_id: str = Path(max_length=32)
) -> ApiKeyOut:
    record = await keys.revoke(session, principal.actor, key_id, principal.accounts)
    return ApiKeyOut.model_validate(record, from_attributes=True)
