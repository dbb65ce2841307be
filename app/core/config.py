"""Settings, read from the environment (prefix ``PREFLIGHT_``); nothing is built at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///" + str(Path(".preflight") / "preflight.db")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREFLIGHT_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy async URL. PostgreSQL (asyncpg) in production; SQLite (aiosqlite) embedded."""
    redis_url: str | None = None
    """Redis for marks, books and rate windows; without it an in-process cache is used."""
    admin_key: SecretStr | None = None
    """Bootstrap admin API key, accepted alongside keys created through the API."""
    db_pool_size: int = 20
    """Connections per process; size it to the concurrency (a small pool collapses under load)."""
    max_in_flight: int = Field(default=32, ge=1)
    """Checks and reads one process works on at once; more are refused at once with 503
    ``OVERLOADED`` and ``Retry-After`` (app/core/admission.py). At ~60 checks/s per process,
    32 in flight is about half a second of queue; keep it below the pool (2 × db_pool_size)."""
    log_level: str = "INFO"
    log_json: bool = True

    mark_future_skew_s: float = 2.0
    """Marks dated further than this in the future are refused (clock skew allowance)."""
    twap_window_s: float = 300.0
    default_stale_after_s: float = 5.0
    default_max_twap_deviation: float = 0.05
    webhook_url: str | None = None
    """Where margin calls are POSTed (JSON), from the outbox, with retries and backoff."""
    webhook_backoff_s: float = 1.0
    """First retry delay; it doubles per attempt, up to five minutes."""
    demo_feed: bool = False
    """Keep the demo's marks and books moving (set by ``preflight serve --demo``)."""
    background: Literal["auto", "inline", "process"] = "auto"
    """Where the background passes run — sealing the audit chain, the margin-call sweep, the
    webhook outbox, the end-of-day capture (app/background.py): ``process``, a process of
    their own that the API process starts and restarts, off the checks' event loop and CPU;
    ``inline``, tasks of the API process; ``auto``, a process on PostgreSQL, inline on the
    embedded SQLite (one writer: a second process would queue on its lock)."""


def background_in_process(settings: Settings) -> bool:
    """Whether the API process runs the background passes itself (``Settings.background``)."""
    if settings.background == "auto":
        return settings.database_url.startswith("sqlite")
    return settings.background == "inline"
