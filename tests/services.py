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


def _start_throwaway_postgres() -> str:
    found = _find_pg_bin()
    if found is None:
        raise RuntimeError(
            "no PostgreSQL: set PREFLIGHT_TEST_DATABASE_URL, or start one on 127.0.0.1:5432, "
            "or install initdb/pg_ctl (not on PATH nor under /usr/lib/postgresql/*/bin)"
        )
    initdb, pg_ctl = found

    # initdb and postgres refuse to run as root: then run them as the `postgres` system user.
    run_as: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                "no PostgreSQL: running as root, and initdb refuses root, but there is no "
                "`postgres` system user to run it as; set PREFLIGHT_TEST_DATABASE_URL or start "
                "one on 127.0.0.1:5432"
            ) from None

    # As root, use /tmp: $TMPDIR may be somewhere the postgres user cannot reach.
    tmp = Path(tempfile.mkdtemp(prefix="preflight-pg-", dir="/tmp" if run_as else None))
    if run_as is not None:
        os.chown(tmp, run_as.pw_uid, run_as.pw_gid)
    data, log = tmp / "data", tmp / "postgres.log"
    env = {**os.environ, "HOME": str(tmp), "LC_ALL": "C", "LANG": "C"}
    for var in ("PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
        env.pop(var, None)

    def pg(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )

    def stop() -> None:
        with contextlib.suppress(Exception):
            if (data / "postmaster.pid").exists():
                pg(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "20", "stop", timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(stop)
    who = f" as user {run_as.pw_name}" if run_as else ""
    try:
        res = pg(
            initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync", timeout=START_DEADLINE,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"initdb{who} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        for attempt in range(1, 4):  # a fresh port each time: another process may take one
            port = _free_port()
            opts = (
                f"-p {port} -c listen_addresses={LOCAL_HOST} -k {shlex.quote(str(tmp))} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            res = pg(
                pg_ctl, "-D", str(data), "-l", str(log), "-o", opts,
                "-w", "-t", str(int(START_DEADLINE)), "start", timeout=START_DEADLINE + 10,
            )  # fmt: skip
            url = f"postgresql+asyncpg://postgres@{LOCAL_HOST}:{port}/postgres"
            # pg_ctl -w returns once the server is ready; make sure *ours* answers on that port.
            if res.returncode == 0 and _pg_fetch(url, "SHOW data_directory", 5) == str(data):
                break
            error = (
                f"throwaway PostgreSQL ({pg_ctl}{who}, port {port}) did not start "
                f"(pg_ctl exit {res.returncode}): {res.stdout}{res.stderr}\n"
                f"--- {log} (tail) ---\n{_tail(log)}"
            )
            if res.returncode == 0 or attempt == 3:
                raise RuntimeError(error)
    except BaseException:
        stop()
        atexit.unregister(stop)
        raise
    return url


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


def _start_throwaway_redis() -> str:
    exe = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )
    if exe is None:
        raise RuntimeError(
            "no Redis: set PREFLIGHT_TEST_REDIS_URL, or start one on 127.0.0.1:6379, "
            "or install redis-server"
        )
    tmp = Path(tempfile.mkdtemp(prefix="preflight-redis-"))
    log = tmp / "redis.log"
    for attempt in range(1, 4):  # a fresh port each time: another process may take one
        port = _free_port()
        argv = [
            exe, "--port", str(port), "--bind", LOCAL_HOST, "--save", "", "--appendonly", "no",
            "--dir", str(tmp), "--logfile", str(log), "--daemonize", "no",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, not to redis
        )
        url = f"redis://{LOCAL_HOST}:{port}/0"
        deadline = time.monotonic() + START_DEADLINE
        while proc.poll() is None and time.monotonic() < deadline:
            if _redis_ping(url, 0.5, pid=proc.pid):
                atexit.register(_stop_process, proc, tmp)
                return url
            time.sleep(0.1)
        state = "timed out" if proc.poll() is None else f"exited with {proc.returncode}"
        tail = _tail(log)
        _stop_process(proc, None)
        if state == "timed out" or attempt == 3:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(
                f"throwaway Redis ({exe}, port {port}) {state}\n--- {log} (tail) ---\n{tail}"
            )
    raise AssertionError("unreachable")


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
