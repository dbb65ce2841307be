"""What the generated models and operations stand on: the two kinds of model, automatic
idempotency ids, and an operation's description (its path, how its answer decodes, whether it
may be retried)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, model_validator

T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)


def new_id() -> str:
    """A fresh idempotency id (32 hex digits: within the API's identifier pattern)."""
    return uuid.uuid4().hex


class RequestModel(BaseModel):
    """A body the API accepts. Unknown fields are refused here, as the server would refuse
    them. Only the fields the caller set are sent (a PATCH changes only those), plus the ids
    filled in for it: ``_auto_ids`` names the idempotency ids a model gets, fixed when it is
    built, so every retry of it, and every call with the same model, is a replay."""

    model_config = ConfigDict(extra="forbid")
    _auto_ids: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _fill_in_ids(cls, data: Any) -> Any:
        # Set here, not by a default, so that the ids count as set and are sent.
        if cls._auto_ids and isinstance(data, dict):
            missing = [name for name in cls._auto_ids if name not in data]
            if missing:
                return {**data, **{name: new_id() for name in missing}}
        return data


class ResponseModel(BaseModel):
    """An answer of the API. Fields a newer server adds are kept (in ``model_extra``), not
    refused."""

    model_config = ConfigDict(extra="allow")


Retry = Literal["read", "replay", "never"]
"""When an operation may be sent again: ``read`` — it changes nothing; ``replay`` — a write
whose body carries its idempotency ids (a replay answers the first result); ``never``."""


@dataclass(frozen=True)
class Operation(Generic[T_co]):
    name: str
    method: str
    path: str
    decode: Callable[[httpx.Response], T_co]
    retry: Retry
    answers: frozenset[int]
    """The statuses answered with the operation's own body (not problem details)."""
    body: type[BaseModel] | None = None


def json_of(model: type[M]) -> Callable[[httpx.Response], M]:
    def decode(response: httpx.Response) -> M:
        return model.model_validate_json(response.content)

    return decode


def ndjson_of(model: type[M]) -> Callable[[httpx.Response], list[M]]:
    def decode(response: httpx.Response) -> list[M]:
        return [model.model_validate_json(line) for line in response.content.splitlines() if line]

    return decode


def text(response: httpx.Response) -> str:
    return response.text
