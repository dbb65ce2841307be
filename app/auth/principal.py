"""Who is calling, and what their role lets them do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.core.errors import NotFound
from app.core.types import Actor


class Role(StrEnum):
    ADMIN = "admin"
    RISK = "risk"
    TRADER = "trader"
    FEEDER = "feeder"
    AUDITOR = "auditor"


# Which roles may use each family of endpoints (api.md, Auth).
READERS = frozenset({Role.ADMIN, Role.RISK, Role.TRADER, Role.AUDITOR})
ADMINS = frozenset({Role.ADMIN})
RISK_WRITERS = frozenset({Role.ADMIN, Role.RISK})
VENUE_WRITERS = frozenset({Role.ADMIN, Role.TRADER})
LEVERAGE_WRITERS = frozenset({Role.ADMIN, Role.RISK, Role.TRADER})
MARKET_WRITERS = frozenset({Role.ADMIN, Role.FEEDER})
AUDIT_READERS = frozenset({Role.ADMIN, Role.AUDITOR})


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    accounts: frozenset[str] | None
    """Accounts this key may see; None means all."""

    @property
    def actor(self) -> Actor:
        return Actor(self.key_id)

    def sees(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts

    def require_account(self, account_id: str, what: str) -> None:
        """Outside the key's scope a resource does not exist (it is not revealed)."""
        if not self.sees(account_id):
            raise NotFound(f"{what} not found")
