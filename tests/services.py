"""Find real PostgreSQL and Redis servers for the test run. No mocks, ever.

PostgreSQL, in order:
  1. $PREFLIGHT_TEST_DATABASE_URL, used as given (it names a database; per-run databases are
     created next to it on the same server, see `with_database` / `create_database`);
  2. 127.0.0.1:5432 as user `postgres`, if a connection succeeds;
  3. a throwaway cluster (initdb + pg_ctl) in a temp dir on a free port, trust auth, removed at
     exit. As root it runs as the `postgres` system user, since initdb refuses root.
Redis, in order: $PREFLIGHT_TEST_REDIS_URL; redis://127.0.0.1:6379/0 if PING works; a throwaway
`redis-server` on a free port, stopped at exit.

PREFLIGHT_TEST_FORCE_THROWAWAY=1 (or `postgres` / `redis`) skips steps 1-2 and always starts a
throwaway server; so does `force_throwaway=True`. Standard library, asyncpg and redis-py only.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

ENV_DATABASE_URL = "PREFLIGHT_TEST_DATABASE_URL"
ENV_REDIS_URL = "PREFLIGHT_TEST_REDIS_URL"
ENV_FORCE_THROWAWAY = "PREFLIGHT_TEST_FORCE_THROWAWAY"
LOCAL_HOST = "127.0.0.1"
PROBE_TIMEOUT = 1.5  # seconds, per connection attempt
START_DEADLINE = 60.0  # seconds for a throwaway server to become ready

_T = TypeVar("_T")
_lock = threading.RLock()
_cache: dict[tuple[Any, ...], str] = {}


# --------------------------------------------------------------------------- helpers


def _run_sync(fn: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, even if a loop already runs here."""

    async def main() -> _T:
        return await fn()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _forced(kind: str, force_throwaway: bool | None) -> bool:
    if force_throwaway is not None:
        return force_throwaway
    value = os.environ.get(ENV_FORCE_THROWAWAY, "").strip().lower()
    return value in {"1", "true", "yes", "all", kind}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCAL_HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


# --------------------------------------------------------------------------- PostgreSQL URLs


def asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL (postgresql+asyncpg://...) -> plain libpq-style DSN asyncpg accepts."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return urlunsplit(parts._replace(scheme="postgresql"))


def with_database(url: str, name: str) -> str:
    """The same server URL naming database `name` instead, with the asyncpg driver."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg", path="/" + name))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _pg_connect(url: str, connect_timeout: float = 10.0) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(url), timeout=connect_timeout)


def _pg_fetch(url: str, sql: str, timeout: float = PROBE_TIMEOUT) -> Any:
    """First value of `sql` on the server at `url`, or None when it cannot be reached."""

    async def fetch() -> Any:
        try:
            conn = await asyncio.wait_for(_pg_connect(url, timeout), timeout + 0.5)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return _run_sync(fetch)


def _pg_ping(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    return bool(_pg_fetch(url, "SELECT 1", timeout) == 1)


def create_database(server_url: str, name: str) -> str:
    """Create a fresh database `name` (dropping a leftover of that name) on the server.

    Returns its SQLAlchemy URL (postgresql+asyncpg://...)."""

    async def create() -> None:
        conn = await _pg_connect(server_url)
        try:
            await _drop(conn, name)
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        finally:
            await conn.close()

    _run_sync(create)
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting any sessions still on it."""

    async def drop() -> None:
        conn = await _pg_connect(server_url)
        try:
            await _drop(conn, name)
        finally:
            await conn.close()

    _run_sync(drop)


async def _drop(conn: asyncpg.Connection, name: str) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is None:
        return
    if conn.get_server_version().major >= 13:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        return
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
    await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)}")


# --------------------------------------------------------------------------- PostgreSQL server


def postgres_server_url(*, force_throwaway: bool | None = None, local_port: int = 5432) -> str:
    """SQLAlchemy URL of a PostgreSQL server the tests may create databases on."""
    forced = _forced("postgres", force_throwaway)
    key = ("postgres", forced, local_port)
    with _lock:
        if key in _cache:
            return _cache[key]
        url = os.environ.get(ENV_DATABASE_URL, "").strip()
        if forced or not url:
            local = f"postgresql+asyncpg://postgres@{LOCAL_HOST}:{local_port}/postgres"
            url = local if not forced and _pg_ping(local) else _start_throwaway_postgres()
        _cache[key] = url
        return url


def _find_pg_bin() -> tuple[str, str] | None:
    """(initdb, pg_ctl) from PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def version(d: str) -> float:
        try:
            return float(Path(d).parent.name)
        except ValueError:
            return 0.0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return f"{d}/initdb", f"{d}/pg_ctl"
    return None


class PostgresCluster:
    """A PostgreSQL cluster of our own: ``initdb`` in a temporary directory, served on a free
    port with trust auth. ``stop()`` and ``start()`` take it down and bring it back on the same
    port (the fault tests need exactly that); ``destroy()`` stops it and removes the directory
    (also registered at exit). As root, initdb and postgres run as the ``postgres`` system user,
    since both refuse root."""

    def __init__(self) -> None:
        found = _find_pg_bin()
        if found is None:
            raise RuntimeError(
                "no PostgreSQL: set PREFLIGHT_TEST_DATABASE_URL, or start one on 127.0.0.1:5432, "
                "or install initdb/pg_ctl (not on PATH nor under /usr/lib/postgresql/*/bin)"
            )
        self._initdb, self._pg_ctl = found
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "no PostgreSQL: running as root, and initdb refuses root, but there is no "
                    "`postgres` system user to run it as; set PREFLIGHT_TEST_DATABASE_URL or "
                    "start one on 127.0.0.1:5432"
                ) from None
        # As root, use /tmp: $TMPDIR may be somewhere the postgres user cannot reach.
        self.dir = Path(
            tempfile.mkdtemp(prefix="preflight-pg-", dir="/tmp" if self._run_as else None)
        )
        if self._run_as is not None:
            os.chown(self.dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._data, self._log = self.dir / "data", self.dir / "postgres.log"
        self._env = {**os.environ, "HOME": str(self.dir), "LC_ALL": "C", "LANG": "C"}
        for var in ("PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
            self._env.pop(var, None)
        self.port = 0
        atexit.register(self.destroy)
        try:
            self._init()
            for attempt in range(1, 4):  # a fresh port each time: another process may take one
                self.port = _free_port()
                if self.start(raise_on_failure=attempt == 3):
                    break
        except BaseException:
            self.destroy()
            raise

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@{LOCAL_HOST}:{self.port}/postgres"

    def _pg(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        run_as = self._run_as
        return subprocess.run(
            args,
            cwd=self.dir,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )

    def _who(self) -> str:
        return f" as user {self._run_as.pw_name}" if self._run_as else ""

    def _init(self) -> None:
        res = self._pg(
            self._initdb, "-D", str(self._data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync", timeout=START_DEADLINE,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(
                f"initdb{self._who()} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
            )

    def start(self, *, raise_on_failure: bool = True) -> bool:
        """Start the server on ``self.port``; True once *ours* answers there."""
        opts = (
            f"-p {self.port} -c listen_addresses={LOCAL_HOST} -k {shlex.quote(str(self.dir))} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        res = self._pg(
            self._pg_ctl, "-D", str(self._data), "-l", str(self._log), "-o", opts,
            "-w", "-t", str(int(START_DEADLINE)), "start", timeout=START_DEADLINE + 10,
        )  # fmt: skip
        # pg_ctl -w returns once the server is ready; make sure *ours* answers on that port.
        if res.returncode == 0 and _pg_fetch(self.url, "SHOW data_directory", 5) == str(self._data):
            return True
        if raise_on_failure or res.returncode == 0:
            raise RuntimeError(
                f"PostgreSQL ({self._pg_ctl}{self._who()}, port {self.port}) did not start "
                f"(pg_ctl exit {res.returncode}): {res.stdout}{res.stderr}\n"
                f"--- {self._log} (tail) ---\n{_tail(self._log)}"
            )
        return False

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``): fast disconnects every session."""
        if (self._data / "postmaster.pid").exists():
            self._pg(self._pg_ctl, "-D", str(self._data), "-m", mode, "-w", "-t", "30", "stop",
                     timeout=40)  # fmt: skip

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.destroy)


def _start_throwaway_postgres() -> str:
    return PostgresCluster().url


# --------------------------------------------------------------------------- Redis


def _redis_ping(url: str, timeout: float = PROBE_TIMEOUT, *, pid: int | None = None) -> bool:
    """PING works (and, given `pid`, the server answering is that process)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        if not client.ping():
            return False
        return pid is None or int(client.info("server")["process_id"]) == pid
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_server_url(*, force_throwaway: bool | None = None, local_port: int = 6379) -> str:
    """URL of a Redis server for the tests (redis://host:port/db)."""
    forced = _forced("redis", force_throwaway)
    key = ("redis", forced, local_port)
    with _lock:
        if key in _cache:
            return _cache[key]
        url = os.environ.get(ENV_REDIS_URL, "").strip()
        if forced or not url:
            local = f"redis://{LOCAL_HOST}:{local_port}/0"
            url = local if not forced and _redis_ping(local) else _start_throwaway_redis()
        _cache[key] = url
        return url


class RedisServer:
    """A ``redis-server`` of our own on a free port, no persistence. ``stop()`` and
    ``start()`` take it down and bring it back on the same port; ``destroy()`` (also at exit)
    stops it and removes its directory."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server") or next(
            (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
             if os.access(p, os.X_OK)),
            None,
        )  # fmt: skip
        if exe is None:
            raise RuntimeError(
                "no Redis: set PREFLIGHT_TEST_REDIS_URL, or start one on 127.0.0.1:6379, "
                "or install redis-server"
            )
        self._exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="preflight-redis-"))
        self._log = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        atexit.register(self.destroy)
        for attempt in range(1, 4):  # a fresh port each time: another process may take one
            self.port = _free_port()
            if self.start(raise_on_failure=attempt == 3):
                return

    @property
    def url(self) -> str:
        return f"redis://{LOCAL_HOST}:{self.port}/0"

    def start(self, *, raise_on_failure: bool = True) -> bool:
        """Start the server on ``self.port``; True once it answers PING there."""
        argv = [
            self._exe, "--port", str(self.port), "--bind", LOCAL_HOST, "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self._log),
            "--daemonize", "no",
        ]  # fmt: skip
        self._proc = proc = subprocess.Popen(
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, not to redis
        )
        deadline = time.monotonic() + START_DEADLINE
        while proc.poll() is None and time.monotonic() < deadline:
            if _redis_ping(self.url, 0.5, pid=proc.pid):
                return True
            time.sleep(0.05)
        state = "timed out" if proc.poll() is None else f"exited with {proc.returncode}"
        tail = _tail(self._log)
        self.stop()
        if raise_on_failure or state == "timed out":
            self.destroy()
            raise RuntimeError(
                f"Redis ({self._exe}, port {self.port}) {state}\n--- {self._log} (tail) ---\n{tail}"
            )
        return False

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, None)
            self._proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.destroy)


def _start_throwaway_redis() -> str:
    return RedisServer().url


def _stop_process(proc: subprocess.Popen[bytes], tmp: Path | None) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":  # python -m tests.services: show what the tests would use
    print("postgres:", postgres_server_url())
    print("redis:   ", redis_server_url())
