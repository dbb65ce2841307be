"""Error answers of the API (RFC 9457 problem details), raised as exceptions.

PreflightError                 any error answer: status, code, title, detail, errors, request_id
├── BadRequest                 400 (e.g. a body that is not UTF-8)
├── Unauthorized               401 missing or invalid API key
├── Forbidden                  403 the key's role may not do this
├── NotFound                   404 not found, or outside the key's accounts
├── Conflict                   409 an idempotency id reused with other content, a rule of the resource
│   └── InsufficientMargin     409 INSUFFICIENT_MARGIN
├── ValidationFailed           422 VALIDATION_ERROR: ``errors`` names each bad field
└── Unavailable                503 nothing was written; ``retry_after`` seconds
    └── Overloaded             503 OVERLOADED: the process refused work it could not serve in time

Other statuses (405, 413, 415, 500, or a proxy's non-problem answer) raise ``PreflightError``
itself; a failure to reach the server raises httpx's ``TransportError``.
"""

from __future__ import annotations

import contextlib
import email.utils
import time

import httpx
from pydantic import ValidationError

from preflight_client.models import FieldError, Problem

__all__ = [
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "InsufficientMargin",
    "NotFound",
    "Overloaded",
    "PreflightError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]


class PreflightError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        errors: list[FieldError] | None = None,
        request_id: str | None = None,
        problem: Problem | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors = errors or []
        self.request_id = request_id
        self.problem = problem
        """The whole body, with any field this client does not know (``model_extra``)."""


class BadRequest(PreflightError):
    pass


class Unauthorized(PreflightError):
    pass


class Forbidden(PreflightError):
    pass


class NotFound(PreflightError):
    pass


class Conflict(PreflightError):
    pass


class InsufficientMargin(Conflict):
    pass


class ValidationFailed(PreflightError):
    def messages(self) -> dict[str, str]:
        """Each bad field (``orders[0].size``) and what is wrong with it."""
        return {error.field: error.message for error in self.errors}


class Unavailable(PreflightError):
    retry_after: float | None = None
    """Seconds the server asked to wait before a retry (``Retry-After``), if it said."""


class Overloaded(Unavailable):
    pass


_BY_CODE: dict[str, type[PreflightError]] = {
    "INSUFFICIENT_MARGIN": InsufficientMargin,
    "VALIDATION_ERROR": ValidationFailed,
    "OVERLOADED": Overloaded,
}
_BY_STATUS: dict[int, type[PreflightError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    503: Unavailable,
}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delay-seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(response: httpx.Response) -> PreflightError:
    """The exception an error answer stands for."""
    problem = None
    if response.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
        # Not problem details (a proxy's answer?): told by its status alone.
        with contextlib.suppress(ValidationError):
            problem = Problem.model_validate_json(response.content)
    request_id = response.headers.get("x-request-id")
    status = response.status_code
    if problem is None:
        code = f"HTTP_{status}"
        cls = _BY_STATUS.get(status, PreflightError)
        error = cls(status, code, response.text[:300] or response.reason_phrase)
    else:
        cls = _BY_CODE.get(problem.code) or _BY_STATUS.get(status, PreflightError)
        error = cls(
            status,
            problem.code,
            problem.detail,
            title=problem.title,
            errors=problem.errors,
            request_id=request_id,
            problem=problem,
        )
    error.request_id = request_id
    if isinstance(error, Unavailable):
        error.retry_after = retry_after(response)
    return error
