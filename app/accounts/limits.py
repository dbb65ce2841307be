"""Reading the limits JSON that ``app/accounts/service.py`` stores on an account or subaccount.

Every limit is stored as ``{"value": "…", "warn_at": "…"}``; the per-symbol ones
(``max_position_notional``, ``max_underlying_notional``) may also carry ``by_symbol``, and
``value`` only when given. Here, beside the writer of the format, so that both the pre-trade
rules and the margin-call sweep read it without one importing the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def limit_value(limits: Mapping[str, Any], name: str) -> Decimal | None:
    """The stored ``{"value": "…"}`` of a limit, or None when there is no cap. A per-symbol
    limit (``max_position_notional``, ``max_underlying_notional``) may have no ``value`` —
    only ``by_symbol`` caps: read those with :func:`symbol_limit`."""
    entry = limits.get(name)
    value = None if entry is None else entry.get("value")
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class SymbolCap:
    value: Decimal
    warn_at: Decimal


def symbol_cap(limits: Mapping[str, Any], name: str, symbol: str) -> SymbolCap | None:
    """The cap of ``symbol`` under a per-symbol limit: its own ``by_symbol`` entry, else the
    limit's ``value`` (with the limit's ``warn_at``), else None (uncapped)."""
    entry = limits.get(name)
    if entry is None:
        return None
    own = (entry.get("by_symbol") or {}).get(symbol)
    if own is not None:
        return SymbolCap(Decimal(str(own["value"])), Decimal(str(own["warn_at"])))
    if entry.get("value") is None:
        return None
    return SymbolCap(Decimal(str(entry["value"])), Decimal(str(entry["warn_at"])))


def symbol_limit(limits: Mapping[str, Any], name: str, symbol: str) -> Decimal | None:
    """The cap's value of ``symbol`` under a per-symbol limit, or None when uncapped."""
    cap = symbol_cap(limits, name, symbol)
    return None if cap is None else cap.value
