from __future__ import annotations

from pydantic import BaseModel, Field

from app.auth.principal import Role
from app.core.types import Identifier, StrictIn, Timestamp


class ApiKeyIn(StrictIn):
    role: Role
    accounts: list[Identifier] | None = Field(
        None, max_length=1000, description="Account scope; absent means every account"
    )
    # PostgreSQL text cannot hold NUL (a 500 at the INSERT): refused up front, named.
    label: str | None = Field(None, max_length=200, pattern=r"^[^\x00]*$")


class ApiKeyOut(BaseModel):
    key_id: str
    role: Role
    accounts: list[str] | None
    label: str | None
    created_at: Timestamp
    revoked_at: Timestamp | None


class CreatedApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown in this response only")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyOut]
