"""What the app builds at start-up and every request may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.cache import Cache
from app.core.config import Settings
from app.core.metrics import Metrics
from app.core.reference import ReferenceCache


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
    reference: ReferenceCache = field(default_factory=ReferenceCache)
    """Instruments, assets and risk parameters, as current as PostgreSQL (app/core/reference.py)."""
