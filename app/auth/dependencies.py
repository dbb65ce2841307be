from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from app.auth import principal as principal_roles
from app.auth import service
from app.auth.principal import Principal, Role
from app.core.deps import RuntimeDep, SessionDep
from app.core.errors import Unauthorized
from app.core.runtime import Runtime

# Declares the scheme in the OpenAPI document; the 401 for a missing or malformed header is ours
# (problem details), so it does not raise.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pf_…`")


def require(
    roles: frozenset[Role], *, unscoped: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the bearer key and admits only ``roles``; with
    ``unscoped``, only keys that are not limited to some accounts (api.md, Auth: outside its
    scope a key writes nothing, and a write every account shares reaches outside any scope)."""

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        runtime: RuntimeDep,
        session: SessionDep,
    ) -> Principal:
        presented = credentials.credentials.strip() if credentials is not None else ""
        if not presented:
            raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
        principal = await service.authenticate(session, presented, runtime.bootstrap_key_hash)
        service.require_role(principal, roles, unscoped=unscoped)
        return principal

    return authorized


def require_caller(roles: frozenset[Role]) -> Callable[..., Awaitable[service.Caller]]:
    """``require`` for the pre-trade check: the key comes from the process's copy (no database
    read on a warm process, no session), and the check confirms its version in its own one
    read (``service.confirm``)."""

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        runtime: RuntimeDep,
    ) -> service.Caller:
        presented = credentials.credentials.strip() if credentials is not None else ""
        return await _caller(runtime, presented, roles)

    return authorized


async def _caller(
    runtime: Runtime, presented: str, roles: frozenset[Role], *, unscoped: bool = False
) -> service.Caller:
    if not presented:
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    caller = await service.caller(
        runtime.hot, runtime.resident, presented, runtime.bootstrap_key_hash
    )
    service.require_role(caller.principal, roles, unscoped=unscoped)
    return caller


BEARER_SECURITY: dict[str, object] = {"security": [{"HTTPBearer": []}]}
"""``openapi_extra`` of a route that reads its key with ``check_caller``, not a dependency."""


def _presented(request: Request) -> str:
    """The bearer key, parsed as ``HTTPBearer`` parses it."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials.strip() if scheme.lower() == "bearer" else ""


async def check_caller(request: Request, runtime: Runtime) -> service.Caller:
    """``CheckCaller`` without the dependency machinery (the check's hot path), the same
    refusals."""
    return await _caller(runtime, _presented(request), principal_roles.VENUE_WRITERS)


async def feed_caller(request: Request, runtime: Runtime) -> service.Caller:
    """``MarketWriter`` for the feed's hot path (mark posts): admitted from the process's copy
    of the key, which the post confirms in its own transaction (``service.confirmed``)."""
    return await _caller(
        runtime, _presented(request), principal_roles.MARKET_WRITERS, unscoped=True
    )


# One alias per endpoint family (api.md, Auth); routers declare which one they need.
Admin = Annotated[Principal, Depends(require(principal_roles.ADMINS))]
Reader = Annotated[Principal, Depends(require(principal_roles.READERS))]
RiskWriter = Annotated[Principal, Depends(require(principal_roles.RISK_WRITERS))]
VenueWriter = Annotated[Principal, Depends(require(principal_roles.VENUE_WRITERS))]
CheckCaller = Annotated[service.Caller, Depends(require_caller(principal_roles.VENUE_WRITERS))]
LeverageWriter = Annotated[Principal, Depends(require(principal_roles.LEVERAGE_WRITERS))]
AuditReader = Annotated[Principal, Depends(require(principal_roles.AUDIT_READERS))]
# Writes every account shares (reference data, risk parameters, marks and books): a key scoped
# to some accounts must not move the others'.
SharedAdmin = Annotated[Principal, Depends(require(principal_roles.ADMINS, unscoped=True))]
MarketWriter = Annotated[Principal, Depends(require(principal_roles.MARKET_WRITERS, unscoped=True))]
