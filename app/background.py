"""The background passes, in a process of their own (``preflight background``) or as tasks of
the API process (``Settings.background``): sealing the audit chain, the margin-call sweep, the
webhook outbox and the end-of-day capture.

Each pass is already single across processes (advisory locks) and works from what PostgreSQL
holds (the audit rows to seal, the symbols noted for a sweep, the outbox), so where it runs
changes its CPU's home, not its results: in a process of its own, a whole-book sweep or a
sealing batch no longer takes turns with the checks on the API's event loop. The API process
starts that process, restarts it if it exits, and stops it on the way out; the process exits
by itself when the API process that started it is gone (kill -9 included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys

from pydantic import SecretStr

from app.audit.sealer import seal_forever
from app.core.config import Settings
from app.core.logging import configure_logging
from app.core.metrics import Metrics
from app.core.runtime import Runtime
from app.core.types import exact_decimal_arithmetic
from app.risk.margin_calls import sweep_forever
from app.risk.reports import capture_forever
from app.risk.webhooks import deliver_forever
from app.wiring import open_runtime

log = logging.getLogger("preflight.background")

RESTART_AFTER_S = 1.0
"""How long the API process waits before starting a background process that exited again."""
STOP_WAIT_S = 5.0
"""How long a stopping API process gives its background process to exit before killing it."""
ORPHAN_CHECK_S = 0.5
"""How often the background process looks whether the process that started it is still there."""
POOL_SIZE = 4
"""The background process's connections: its passes take one or two at a time."""


def tasks(runtime: Runtime) -> list[asyncio.Task[None]]:
    """The passes as tasks of this process's event loop."""
    passes = [capture_forever(runtime), seal_forever(runtime), sweep_forever(runtime)]
    if runtime.settings.webhook_url:
        passes.append(deliver_forever(runtime, runtime.settings.webhook_url))
    return [asyncio.create_task(each) for each in passes]


def environment(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` as ``PREFLIGHT_*`` variables: the settings
    an app was given, whether read from the environment or passed in (``create_app``)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFLIGHT_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"PREFLIGHT_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


async def supervise(settings: Settings) -> None:
    """Run ``preflight background`` on these settings until cancelled; start it again when it
    exits."""
    while True:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "background", "--parent", str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL, env=environment(settings),
        )  # fmt: skip
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await _stop(process)
            raise
        log.warning("the background process exited (%s); starting it again", code)
        await asyncio.sleep(RESTART_AFTER_S)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_WAIT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


async def run(settings: Settings, parent: int | None) -> None:
    """The background process: every pass, until ``parent`` (the API process that started it,
    when one did) is gone — already gone while this one started up included."""
    if parent is None:
        parent = os.getppid()
    settings = settings.model_copy(update={"db_pool_size": POOL_SIZE})
    if os.getppid() != parent:
        return  # its API process died while it started
    async with open_runtime(settings, Metrics()) as runtime:
        running = tasks(runtime)
        try:
            # Nothing to wait on but the OS: a process re-parented has lost its parent.
            while os.getppid() == parent:  # noqa: ASYNC110
                await asyncio.sleep(ORPHAN_CHECK_S)
            log.info("the API process that started this one is gone: stopping")
        finally:
            for task in running:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*running, return_exceptions=True)


def main(settings: Settings, parent: int | None = None) -> None:
    exact_decimal_arithmetic()
    configure_logging(settings.log_level, settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings, parent))
