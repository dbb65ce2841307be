"""What the app builds at start-up and every request may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.batches import GroupCall
from app.core.cache import Cache, KeptReads
from app.core.config import Settings
from app.core.db import HotStore
from app.core.gates import Gates
from app.core.metrics import Metrics
from app.core.reference import ReferenceCache
from app.core.versions import Resident


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    cache: Cache
    metrics: Metrics
    bootstrap_key_hash: str | None
    cache_shared: bool
    """True when the cache is Redis (shared by every process), False when in-process."""
    hot: HotStore
    """The pre-trade check's connections (bare asyncpg on PostgreSQL)."""
    resident: Resident = field(default_factory=Resident)
    """Subaccounts, accounts, keys and trading states as of their versions (core/versions.py)."""
    reference: ReferenceCache = field(default_factory=ReferenceCache)
    """Instruments, assets and risk parameters, as current as PostgreSQL (app/core/reference.py)."""
    gates: Gates = field(default_factory=Gates)
    """Reserving checks of one subaccount, one at a time in this process (app/core/gates.py)."""
    kept: KeptReads = field(default_factory=KeptReads)
    """Marks and books as the cache held them at its write sequence (marketdata.read_for_check)."""
    book: Any = None
    """The whole book's engine rows as of their versions, made on first use (app/risk/resident.py)."""
    check_records: GroupCall[Any, int | None] = field(init=False)
    """The records of checks that reserve nothing, written together (set at start-up:
    pretrade.service.write_records)."""
    versions_reads: GroupCall[Any, Any] = field(init=False)
    """The versions read by checks that reserve nothing, read together (set at start-up:
    pretrade.service.read_versions)."""
