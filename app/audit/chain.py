"""The hash chain: ``hash = sha256(prev_hash ‖ entry)``.

``entry`` is the JSON object of the entry's fields — ``account_id``, ``actor_key_id``,
``created_at``, ``kind``, ``payload``, ``seq``, ``subaccount_id`` — with sorted keys, no
whitespace, UTF-8, decimals as plain strings and times as RFC 3339 UTC, and with the payload
spliced in exactly as it is stored (never parsed and re-serialised): an edit of a stored payload
that only moves whitespace or reorders keys changes the hash. A payload written by
:func:`canonical_json` makes ``entry`` the canonical JSON of the whole object, so chains hashed
before payloads were spliced still verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from app.core.types import format_decimal, format_timestamp

GENESIS_HASH = "0" * 64


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"cannot put {type(value).__name__} in the audit log")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 (no ``\\u`` escapes but control characters), floats in
    their shortest form, decimals as plain strings, times as RFC 3339 UTC."""
    return orjson.dumps(
        value, default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    ).decode()


def with_payload(fields: Mapping[str, Any], payload: str) -> str:
    """The canonical JSON object of ``fields`` plus a ``"payload"`` member whose value is the
    JSON text ``payload``, byte for byte."""
    members = {**{key: canonical_json(value) for key, value in fields.items()}, "payload": payload}
    return "{" + ",".join(f"{canonical_json(key)}:{members[key]}" for key in sorted(members)) + "}"


def entry_hash(
    *,
    prev_hash: str,
    seq: int,
    kind: str,
    actor_key_id: str | None,
    account_id: str | None,
    subaccount_id: str | None,
    payload: str,
    created_at: datetime,
) -> str:
    entry = with_payload(
        {
            "seq": seq,
            "kind": kind,
            "actor_key_id": actor_key_id,
            "account_id": account_id,
            "subaccount_id": subaccount_id,
            "created_at": format_timestamp(created_at),
        },
        payload,
    )
    return hashlib.sha256((prev_hash + entry).encode()).hexdigest()
