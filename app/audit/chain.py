"""The hash chain: ``hash = sha256(prev_hash ‖ canonical JSON of the entry)``.

The canonical JSON of an entry has sorted keys, no whitespace, UTF-8, decimals as plain strings
and times as RFC 3339 UTC — anyone can recompute it from an exported line.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

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
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_default,
        allow_nan=False,
    )


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
    entry = canonical_json(
        {
            "seq": seq,
            "kind": kind,
            "actor_key_id": actor_key_id,
            "account_id": account_id,
            "subaccount_id": subaccount_id,
            "payload": json.loads(payload),
            "created_at": format_timestamp(created_at),
        }
    )
    return hashlib.sha256((prev_hash + entry).encode()).hexdigest()
