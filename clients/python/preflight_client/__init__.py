"""A typed client for Preflight, the pre-trade margin check API.

    from preflight_client import Client, models

    with Client("http://127.0.0.1:8000", api_key) as preflight:
        answer = preflight.check(models.CheckIn(subaccount_id="fund-a.basis", orders=[...]))
        for reason in answer.reasons:
            print(reason.code, reason.value, reason.limit)

Every request and answer is a model of ``preflight_client.models``; an error answer raises a
``PreflightError`` (``preflight_client.errors``) with its ``code`` and field ``errors``.
"""

from preflight_client import models
from preflight_client._base import new_id
from preflight_client._client import AsyncClient, Client, RetryPolicy
from preflight_client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientMargin,
    NotFound,
    Overloaded,
    PreflightError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "InsufficientMargin",
    "NotFound",
    "Overloaded",
    "PreflightError",
    "RetryPolicy",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "models",
    "new_id",
]
