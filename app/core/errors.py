"""Errors a request can end in, each answered as RFC 9457 problem details.

PreflightError                 (500 INTERNAL_ERROR — never raised on purpose)
├── BadRequest                 (400 BAD_REQUEST)
├── Unauthorized               (401 UNAUTHORIZED)
├── Forbidden                  (403 FORBIDDEN)
├── NotFound                   (404 NOT_FOUND)
├── Conflict                   (409 CONFLICT)
│   └── InsufficientMargin     (409 INSUFFICIENT_MARGIN)
├── InvalidInput               (422 VALIDATION_ERROR, names the field)
└── Unavailable                (503 UNAVAILABLE, with Retry-After)
"""

from __future__ import annotations

from typing import Any, ClassVar


class PreflightError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.extra = extra


class BadRequest(PreflightError):
    status = 400
    code = "BAD_REQUEST"
    title = "Bad request"


class Unauthorized(PreflightError):
    status = 401
    code = "UNAUTHORIZED"
    title = "Missing or invalid API key"


class Forbidden(PreflightError):
    status = 403
    code = "FORBIDDEN"
    title = "Not allowed for this key's role"


class NotFound(PreflightError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"


class Conflict(PreflightError):
    status = 409
    code = "CONFLICT"
    title = "Conflict"


class InsufficientMargin(Conflict):
    code = "INSUFFICIENT_MARGIN"
    title = "Insufficient margin"


class InvalidInput(PreflightError):
    """A request that parsed but names something invalid; ``field`` says which."""

    status = 422
    code = "VALIDATION_ERROR"
    title = "Invalid request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.field = field


class Unavailable(PreflightError):
    status = 503
    code = "UNAVAILABLE"
    title = "Service unavailable"
