"""How a process is wired: the runtime it serves from (the API's workers and the background
process alike), opened and closed in one place."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event

from app.core.batches import GroupCall
from app.core.cache import create_cache
from app.core.config import Settings
from app.core.db import create_engine, create_hot_store, create_session_factory
from app.core.metrics import Metrics
from app.core.runtime import Runtime
from app.pretrade import service as pretrade_service


@asynccontextmanager
async def open_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    """What a process serves from: the database engine and the check's connections, the cache,
    the resident state and the check's group calls; closed on the way out."""
    engine = create_engine(settings.database_url, settings.db_pool_size)
    session_factory = create_session_factory(engine)
    # A request in flight holds at most one connection: as many as admission lets in, so
    # no check waits for a connection (a smaller pool collapsed under load), and no more
    # than the ORM's pool may open (PostgreSQL's connection slots are shared).
    hot = await create_hot_store(
        settings.database_url,
        min(settings.max_in_flight, 2 * settings.db_pool_size),
        session_factory,
        metrics.db_statements.inc,
    )
    event.listen(engine.sync_engine.pool, "checkout", lambda *_: metrics.db_sessions.inc())
    cache = create_cache(settings.redis_url, metrics.cache_round_trips.inc)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        cache=cache,
        metrics=metrics,
        bootstrap_key_hash=hashlib.sha256(admin_key.encode()).hexdigest() if admin_key else None,
        cache_shared=settings.redis_url is not None,
        hot=hot,
    )
    runtime.check_records = GroupCall(functools.partial(pretrade_service.write_records, runtime))
    runtime.versions_reads = GroupCall(functools.partial(pretrade_service.read_versions, runtime))
    try:
        yield runtime
    finally:
        await cache.close()
        await hot.close()
        await engine.dispose()
