from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.core.types import Timestamp


class AuditEntryOut(BaseModel):
    """One link of the chain: ``hash = sha256(prev_hash ‖ entry)``, where ``entry`` is the JSON
    object of {seq, kind, actor_key_id, account_id, subaccount_id, payload, created_at} with
    sorted keys, no whitespace, UTF-8, and the payload's stored text spliced in byte for byte.
    An export line carries that text as it is stored (the line without ``prev_hash`` and
    ``hash`` is ``entry``); a listed entry carries it parsed."""

    seq: int
    kind: str
    actor_key_id: str | None
    account_id: str | None
    subaccount_id: str | None
    payload: dict[str, Any] | str = Field(
        description="The JSON object recorded; the stored text only if a row was edited into "
        "something that is not one (verify names such a row)"
    )
    created_at: Timestamp
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class VerificationOut(BaseModel):
    ok: bool
    entries: int = Field(description="Entries that verified, from seq 1")
    first_bad_seq: int | None = Field(
        description="The first entry that does not verify: edited, or the first after a gap"
    )
    head_seq: int | None = Field(
        description="The last entry that verified (the chain's head when ok). Walking cannot see "
        "rows removed from the end: note the head down elsewhere and compare later."
    )
    head_hash: str | None
