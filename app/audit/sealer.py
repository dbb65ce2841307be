"""Sealing: linking committed entries into the hash chain.

Writes insert their entries unsealed, without a lock or a read, so no request waits for another
to commit. A sealer then takes the chain's lock, reads the head and links every committed
unsealed entry in insertion (``id``) order. An entry whose transaction commits after a pass has
begun, even one with a lower id, is sealed by the next pass: the chain's order is the order of
sealing. Every process runs :func:`seal_forever`; readers call :func:`seal` before they read, so
they see every entry committed before their request. A process killed after its commit leaves
unsealed rows, never lost ones: the next pass of any process seals them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.audit import repository
from app.audit.chain import GENESIS_HASH, entry_hash
from app.core.db import COUNTED
from app.core.outages import Outage

if TYPE_CHECKING:  # the runtime is built from modules that record entries
    from app.core.runtime import Runtime

log = logging.getLogger("preflight.audit")

BATCH = 1000
"""Entries linked per statement."""


async def seal(db: repository.Db, *, wait: bool = True, batch: int = BATCH) -> int:
    """Link every committed unsealed entry into the chain, in the caller's transaction, and
    answer how many. Commit promptly: the chain's lock is held until the transaction ends.
    With ``wait=False`` a pass that another process is running is not waited for: nothing is
    sealed here (0) and that pass or a later one seals what is left."""
    if not await repository.has_unsealed(db):
        return 0
    if not await repository.lock_chain(db, wait=wait):
        return 0
    head = await repository.chain_head(db)
    # A head whose hash was blanked in SQL: verify names that row; sealing goes on.
    seq, prev_hash = (0, GENESIS_HASH) if head is None else (head[0], head[1] or "")
    sealed = 0
    while True:
        rows = await repository.unsealed(db, batch)
        links: list[repository.Link] = []
        for row in rows:
            seq += 1
            digest = entry_hash(
                prev_hash=prev_hash,
                seq=seq,
                kind=row.kind,
                actor_key_id=row.actor_key_id,
                account_id=row.account_id,
                subaccount_id=row.subaccount_id,
                payload=row.payload,
                created_at=row.created_at,
            )
            links.append(repository.Link(row.id, seq, prev_hash, digest))
            prev_hash = digest
        if links:
            await repository.link(db, links)
        sealed += len(links)
        # A short batch: caught up with everything committed when it was read. (Looping until
        # an empty one could keep one transaction open for as long as writes keep coming.)
        if len(rows) < batch:
            return sealed


# --- the background sealer ------------------------------------------------------------------

_APPENDED = "preflight.audit.appended"
_wakers: set[asyncio.Event] = set()
"""One per sealer running in this process (one per app)."""


def appended(session: AsyncSession) -> None:
    """Mark a session as having appended entries: when it commits, this process's sealers run
    at once rather than at their next tick."""
    session.info[_APPENDED] = True


def wake_sealers() -> None:
    """Run this process's sealers now: call after committing entries written without a session
    (:func:`appended` covers sessions)."""
    for wake in _wakers:
        wake.set()


def _after_commit(session: Session) -> None:
    if session.info.pop(_APPENDED, False):
        wake_sealers()


PASS_TIMEOUT_S = 30.0
"""How long a pass may wait for its connection (a pass's statements are bounded by the pool's
command timeout)."""

COALESCE_S = 0.05
"""After a wake-up, wait this long for more commits: at hundreds of checks a second one pass
(five statements) links a batch, instead of a pass per check or two. Readers seal before they
read, so the lag is never visible to them."""


async def seal_forever(runtime: Runtime, every_s: float = 0.25, retry_s: float = 1.0) -> None:
    """Seal right after each commit of this process that appended, and every ``every_s`` for the
    entries other processes (or raw inserts) left. A pass another process is running is
    skipped, not queued for. Failures (a database outage) are logged once per outage and
    retried every ``retry_s``."""
    wake = asyncio.Event()
    _wakers.add(wake)
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
    outage = Outage(log, "sealing the audit chain")
    COUNTED.set(False)  # this task's statements are not the checks'
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), every_s)
                await asyncio.sleep(COALESCE_S)
            wake.clear()
            try:
                if runtime.hot.pooled:  # a bare connection: no ORM cost, many passes a second
                    deadline = asyncio.get_running_loop().time() + PASS_TIMEOUT_S
                    async with runtime.hot.connect(transaction=True, deadline=deadline) as db:
                        await seal(cast(repository.Db, db), wait=False)
                else:
                    async with runtime.session_factory() as session, session.begin():
                        await seal(session, wait=False)
            except Exception:
                outage.failed()
                await asyncio.sleep(retry_s)
                continue
            outage.passed()
    finally:
        _wakers.discard(wake)
        if not _wakers:
            event.remove(Session, "after_commit", _after_commit)
