"""Preflight server processes for the tests that need real ones (two processes on one database,
kill -9, outages): ``uvicorn`` on a free loopback port, its output kept for failure messages."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
READY_DEADLINE_S = 90.0  # a slow machine: wait longer for readiness, never weaken an assert
ADMIN_KEY = "pf_test_admin_key_0123456789abcdef"

# Runs the server with PR_SET_PDEATHSIG = SIGTERM (kept across execv): if the test process
# dies without running its cleanup (SIGKILL, a crashed interpreter), the server dies with it.
_LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent already gone")
os.execv(sys.executable, [sys.executable, "-m", "uvicorn", *sys.argv[2:]])
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a server on these stores, with the tests' admin key."""
    env = {
        **os.environ,
        "PREFLIGHT_DATABASE_URL": database_url,
        "PREFLIGHT_ADMIN_KEY": ADMIN_KEY,
        "PREFLIGHT_LOG_LEVEL": "WARNING",
        **extra,
    }
    if redis_url is not None:
        env["PREFLIGHT_REDIS_URL"] = redis_url
    return env


class ServerProcess:
    """One ``uvicorn app.main:create_app`` process. ``kill()`` is kill -9; ``start()`` again
    brings a new process up on the same port.

    ``app_target`` / ``factory`` / ``ready_path`` serve another ASGI app on the same command line
    (the benchmark's bare ``/ping`` app)."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        app_target: str = "app.main:create_app",
        factory: bool = True,
        ready_path: str = "/healthz",
    ) -> None:
        self.env = env
        self.workers = workers
        self.app_target = app_target
        self.factory = factory
        self.ready_path = ready_path
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()),
            self.app_target, *(["--factory"] if self.factory else []),
            "--host", HOST, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log", "--workers", str(self.workers),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def wait_ready(self, deadline: float) -> bool:
        """True once ``ready_path`` (/healthz) answers 200; False if the process exited first
        (e.g. its port was taken between choosing it and binding it)."""
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}{self.ready_path}").status_code == 200:
                        return True
                time.sleep(0.05)
        raise AssertionError(f"server on {self.url} not ready in time:\n{self.output()}")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()


def start_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    app_target: str = "app.main:create_app",
    factory: bool = True,
    ready_path: str = "/healthz",
) -> ServerProcess:
    """A ready server (a fresh port is tried again if another process took the first)."""
    deadline = time.monotonic() + READY_DEADLINE_S
    for attempt in range(1, 4):
        server = ServerProcess(
            env,
            workers=workers,
            app_target=app_target,
            factory=factory,
            ready_path=ready_path,
        )
        server.start()
        if server.wait_ready(deadline):
            return server
        output = server.output()
        server.close()
        if attempt == 3:
            raise AssertionError(f"server exited:\n{output}")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def serving(
    env: dict[str, str],
    *,
    workers: int = 1,
    app_target: str = "app.main:create_app",
    factory: bool = True,
    ready_path: str = "/healthz",
) -> Iterator[ServerProcess]:
    """A ready server (``start_server``), closed on the way out."""
    server = start_server(
        env, workers=workers, app_target=app_target, factory=factory, ready_path=ready_path
    )
    try:
        yield server
    finally:
        server.close()
