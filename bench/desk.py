"""The benchmark desk: its universe, its stores, its seeding through the API and its live feed.

- 20 perpetuals ``P00-PERP`` … ``P19-PERP`` (3 margin tiers, 50-level books around constant
  marks), USDC the only asset;
- 20 accounts × 10 cross subaccounts = 200 subaccounts, each loaded by ``PUT …/snapshot`` with
  20 positions (one per instrument, 2,000–50,000 USDC of notional each, long or short) and
  enough USDC that free collateral is above 100,000 USDC each: a reservation of one test
  order holds ~4 USDC, so checks keep passing however many accumulate;
- a ``Feeder`` thread that posts marks from two sources and the 20 books on their own
  connections, as a venue feed handler would.

Prices never move, so every answer is reproducible by hand (the race's count by hand needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import IO, Any

import httpx

from tests.services import create_database, drop_database, postgres_server_url, redis_server_url

N_INSTRUMENTS = 20
N_ACCOUNTS = 20
SUBS_PER_ACCOUNT = 10
N_SUBS = N_ACCOUNTS * SUBS_PER_ACCOUNT
ORDER_NOTIONAL = Decimal(200)  # a load-test order: passes anywhere on the desk
BOOK_LEVELS = 50
LEVEL_NOTIONAL = ORDER_NOTIONAL * 25  # depth of each book level
SOURCES = ("venue", "oracle")
TICK = Decimal("0.01")
LOT = Decimal("0.001")
TAKER_FEE = Decimal("0.0005")
FIRST_TIER_IMF = Decimal("0.02")  # below 1,000,000 of notional
QUIET_STALE_AFTER_S = 3600  # the instruments' staleness while the feed is quiet
PRICES = [(Decimal(20) * Decimal("1.35") ** i).quantize(TICK) for i in range(N_INSTRUMENTS)]


def log(message: str) -> None:
    print(message, flush=True)


def symbol(i: int) -> str:
    return f"P{i:02d}-PERP"


def sub_id(i: int) -> str:
    return f"sub-{i:04d}"


def acct_id(i: int) -> str:
    return f"acct-{i:03d}"


def order_size(i: int, notional: Decimal = ORDER_NOTIONAL) -> Decimal:
    return max(LOT, (notional / PRICES[i]).quantize(LOT, rounding=ROUND_DOWN))


def instrument_body(i: int, stale_after_s: int | None) -> dict[str, Any]:
    return {
        "kind": "perpetual",
        "underlying": f"U{i:02d}",
        "contract_size": "1",
        "tick_size": str(TICK),
        "lot_size": str(LOT),
        "margin_tiers": [
            {"notional_floor": "0", "initial_margin_fraction": str(FIRST_TIER_IMF)},
            {"notional_floor": "1000000", "initial_margin_fraction": "0.05"},
            {"notional_floor": "5000000", "initial_margin_fraction": "0.1"},
        ],
        "taker_fee_rate": str(TAKER_FEE),
        "maker_fee_rate": "0.0002",
        "price_band": "0.05",
        "funding_interval_s": 3600,
        **({"stale_after_s": str(stale_after_s)} if stale_after_s else {}),
    }


def _book_step(i: int) -> int:
    return max(1, round(int(PRICES[i] / TICK) * 0.0002))


def best_ask(i: int) -> Decimal:
    return (int(PRICES[i] / TICK) + _book_step(i)) * TICK


def level_size(i: int) -> Decimal:
    return (LEVEL_NOTIONAL / PRICES[i]).quantize(LOT)


def book_body(i: int, ts: datetime) -> dict[str, Any]:
    """50 levels a side around the mark, each deep enough for 25 load-test orders."""
    cents, step, size = int(PRICES[i] / TICK), _book_step(i), str(level_size(i))
    bids = [[str((cents - step * (k + 1)) * TICK), size] for k in range(BOOK_LEVELS)]
    asks = [[str((cents + step * (k + 1)) * TICK), size] for k in range(BOOK_LEVELS)]
    return {"bids": bids, "asks": asks, "ts": ts.isoformat()}


def marks_body(ts: datetime) -> dict[str, Any]:
    return {
        "marks": [
            {"symbol": symbol(i), "price": str(PRICES[i]), "source": source, "ts": ts.isoformat()}
            for i in range(N_INSTRUMENTS)
            for source in SOURCES
        ]
    }


@dataclass(frozen=True)
class Snapshot:
    body: dict[str, Any]
    free_collateral: Decimal  # by hand: E − IM at the constant marks (cross mode, tier 1)


def snapshot(rng: random.Random) -> Snapshot:
    positions, gross, upnl = [], Decimal(0), Decimal(0)
    for i in range(N_INSTRUMENTS):
        notional = Decimal(rng.randint(2_000, 50_000))
        size = max(LOT, (notional / PRICES[i]).quantize(LOT))
        if rng.random() < 0.5:
            size = -size
        entry = (PRICES[i] * Decimal(1 + rng.uniform(-0.02, 0.02))).quantize(TICK)
        positions.append({"instrument": symbol(i), "size": str(size), "entry_price": str(entry)})
        gross += abs(size) * PRICES[i]
        upnl += size * (PRICES[i] - entry)
    usdc = (gross * Decimal("0.25") + 20_000).quantize(TICK)
    body = {"balances": {"USDC": str(usdc)}, "positions": positions}
    return Snapshot(body, usdc + upnl - FIRST_TIER_IMF * gross)


# --- stores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str


def _claim_redis_database(held: list[IO[str]]) -> int:
    """A Redis database no test process holds: the tests' file-lock convention (conftest.py),
    taken from 15 down so a concurrent test run (which takes from 1 up) rarely waits."""
    for number in range(15, 0, -1):
        handle = open(Path(tempfile.gettempdir()) / f"preflight-test-redis-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        held.append(handle)
        return number
    raise RuntimeError("every Redis database 1–15 is held by a test run")


@contextlib.contextmanager
def stores(prefix: str = "preflight_bench") -> Iterator[Stores]:
    """A fresh migrated database and a claimed, flushed Redis database (found like the tests:
    ``tests/services.py``); the database dropped and Redis flushed on the way out."""
    import redis

    from app.core.migrations import upgrade

    server_url = postgres_server_url()
    name = f"{prefix}_{os.getpid()}"
    held: list[IO[str]] = []
    redis_db = _claim_redis_database(held)
    redis_url = f"{redis_server_url().rsplit('/', 1)[0]}/{redis_db}"
    flush = redis.Redis.from_url(redis_url)
    database_url = create_database(server_url, name)
    try:
        flush.flushdb()
        upgrade(database_url)
        log(f"database {name} on {server_url.rsplit('@', 1)[-1]}, redis db {redis_db}")
        yield Stores(database_url, redis_url)
    finally:
        with contextlib.suppress(Exception):
            flush.flushdb()
        flush.close()
        drop_database(server_url, name)
        for handle in held:
            handle.close()
        log(f"dropped {name}, flushed redis db {redis_db}")


# --- seeding through the API -----------------------------------------------------------------


class Api:
    """Concurrent requests as one key, at most ``concurrency`` in flight, failing loudly."""

    def __init__(self, client: httpx.AsyncClient, key: str, concurrency: int = 8) -> None:
        self.client, self.key = client, key
        self.gate = asyncio.Semaphore(concurrency)

    async def __call__(self, method: str, url: str, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        async with self.gate:
            response = await self.client.request(method, url, headers=headers, **kw)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:500]}")
        return response.json()


@dataclass(frozen=True)
class Keys:
    trader: str
    feeder: str


async def seed_reference(
    base: str,
    admin_key: str,
    *,
    stale_after_s: int | None,
    history_s: int = 0,
    history_every_s: float = 1.0,
) -> Keys:
    """Asset, instruments, accounts, keys, and optionally ``history_s`` of mark history (before
    anyone holds a position, so the backfill's margin-call sweeps are empty)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        call = Api(client, admin_key)
        t0 = time.perf_counter()
        await call("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
        await put_instruments(call, stale_after_s)
        await asyncio.gather(
            *(
                call("POST", "/v1/accounts", json={"account_id": acct_id(a), "name": f"Fund {a}"})
                for a in range(N_ACCOUNTS)
            )
        )
        accounts = [acct_id(a) for a in range(N_ACCOUNTS)]
        trader = await call(
            "POST", "/v1/api-keys", json={"role": "trader", "accounts": accounts, "label": "OMS"}
        )
        feeder = await call("POST", "/v1/api-keys", json={"role": "feeder", "label": "bench"})
        log(f"reference data and keys in {time.perf_counter() - t0:.1f} s")
        if history_s > 0:
            t0 = time.perf_counter()
            now, steps = datetime.now(UTC), int(history_s / history_every_s)
            for k in range(steps, 0, -1):
                ts = now - timedelta(seconds=k * history_every_s)
                await call("POST", "/v1/marks", key=feeder["key"], json=marks_body(ts))
            log(
                f"backfilled {history_s} s of marks ({steps} posts) in {time.perf_counter() - t0:.1f} s"
            )
        return Keys(trader["key"], feeder["key"])


async def put_instruments(call: Api, stale_after_s: int | None) -> None:
    await asyncio.gather(
        *(
            call("PUT", f"/v1/instruments/{symbol(i)}", json=instrument_body(i, stale_after_s))
            for i in range(N_INSTRUMENTS)
        )
    )


def set_staleness(base: str, admin_key: str, stale_after_s: int | None) -> None:
    """The instruments' ``stale_after_s`` (None: the service default, 5 s)."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            await put_instruments(Api(client, admin_key), stale_after_s)

    asyncio.run(run())


async def seed_subaccounts(
    base: str, admin_key: str, count: int = N_SUBS, concurrency: int = 8
) -> Decimal:
    """``count`` cross subaccounts (the desk's 200 by default, spread evenly over its accounts so
    the trader key sees them all), each holding the 20 instruments; returns the smallest free
    collateral among them."""
    rng = random.Random(20261125)
    per_account = math.ceil(count / N_ACCOUNTS)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        call = Api(client, admin_key, concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                call(
                    "POST",
                    "/v1/subaccounts",
                    json={
                        "subaccount_id": sub_id(s),
                        "account_id": acct_id(s // per_account),
                        "margin_mode": "cross",
                    },
                )
                for s in range(count)
            )
        )
        snapshots = [snapshot(rng) for _ in range(count)]
        await asyncio.gather(
            *(
                call("PUT", f"/v1/subaccounts/{sub_id(s)}/snapshot", json=snapshots[s].body)
                for s in range(count)
            )
        )
        log(
            f"seeded {count} subaccounts ({N_ACCOUNTS} accounts) × {N_INSTRUMENTS} positions "
            f"by PUT …/snapshot in {time.perf_counter() - t0:.1f} s"
        )
        return min(s.free_collateral for s in snapshots)


def fund_subaccount(base: str, admin_key: str, subaccount_id: str, usdc: Decimal) -> None:
    """A fresh cross subaccount of ``acct-000`` holding only ``usdc``."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            call = Api(client, admin_key)
            await call("POST", "/v1/subaccounts", json={
                "subaccount_id": subaccount_id, "account_id": acct_id(0), "margin_mode": "cross",
            })  # fmt: skip
            await call(
                "PUT",
                f"/v1/subaccounts/{subaccount_id}/snapshot",
                json={"balances": {"USDC": str(usdc)}, "positions": []},
            )

    asyncio.run(run())


def sanity(base: str, trader_key: str) -> None:
    """A few checks of each kind must answer 200 and accept against fresh books, else the
    numbers mean nothing."""
    headers = {"Authorization": f"Bearer {trader_key}"}
    nonce = secrets.token_hex(4)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for k in range(10):
            i = k % N_INSTRUMENTS
            order: dict[str, Any] = {
                "instrument": symbol(i), "side": "buy" if k % 2 else "sell",
                "size": str(order_size(i)), "type": "market",
            }  # fmt: skip
            body: dict[str, Any] = {"subaccount_id": sub_id(k * 37 % N_SUBS), "orders": [order]}
            if k >= 5:
                order["client_order_id"] = f"sanity-{nonce}-{k}"
                body.update(reserve=True, reservation_ttl_s=2)
            response = client.post("/v1/pretrade/check", json=body)
            if response.status_code != 200 or response.json()["decision"] != "accept":
                raise RuntimeError(
                    f"sanity check failed: {response.status_code} {response.text[:1500]}"
                )
            execution = response.json()["executions"][0]
            if execution["book"] != "fresh" or execution["price_source"] != "book":
                raise RuntimeError(f"the book is not used: {execution}")


# --- the feed --------------------------------------------------------------------------------


class Feeder(threading.Thread):
    """Marks (both sources in one post) every ``marks_every`` s and the 20 books every
    ``books_every`` s, each on its own connection, as a venue's feed handler sends them: 20 book
    updates answered slowly under load never hold back the next marks. A post that takes longer
    than its period delays the next one (the feed falls behind rather than piling up)."""

    def __init__(self, base: str, key: str, *, marks_every: float, books_every: float) -> None:
        super().__init__(daemon=True, name="feeder")
        self.base, self.key = base, key
        self.marks_every, self.books_every = marks_every, books_every
        self.halt = threading.Event()
        self.errors: list[str] = []
        self.posts = 0  # requests sent, answered or not
        self.latency: dict[str, list[float]] = {"marks": [], "books": []}
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def _send(self, client: httpx.Client, kind: str, method: str, url: str, body: Any) -> None:
        t0 = time.perf_counter()
        with self._lock:
            self.posts += 1
        try:
            response = client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            self.errors.append(f"{method} {url}: {exc!r}")
            return
        with self._lock:
            self.latency[kind].append(time.perf_counter() - t0)
        if response.status_code >= 300:
            self.errors.append(f"{method} {url}: {response.status_code} {response.text[:200]}")

    def _post_marks(self, client: httpx.Client) -> None:
        self._send(client, "marks", "POST", "/v1/marks", marks_body(datetime.now(UTC)))

    def _put_books(self, client: httpx.Client) -> None:
        now = datetime.now(UTC)
        for i in range(N_INSTRUMENTS):
            self._send(client, "books", "PUT", f"/v1/books/{symbol(i)}", book_body(i, now))

    def feed_now(self) -> None:
        """Marks and books once, from the calling thread."""
        with self._client() as client:
            self._post_marks(client)
            self._put_books(client)
        if self.errors:
            raise RuntimeError(f"feeding failed: {self.errors[-1]}")

    def take_latency(self) -> dict[str, list[float]]:
        """The latencies since the last call (seconds), sorted."""
        with self._lock:
            taken = {kind: sorted(values) for kind, values in self.latency.items()}
            for values in self.latency.values():
                values.clear()
        return taken

    def _loop(self, period: float, feed: Callable[[httpx.Client], None]) -> None:
        with self._client() as client:
            next_at = time.monotonic()
            while not self.halt.is_set():
                feed(client)
                # Behind schedule: the next post goes at once, with no burst to catch up.
                next_at = max(next_at + period, time.monotonic())
                self.halt.wait(max(0.0, next_at - time.monotonic()))

    def run(self) -> None:
        books = threading.Thread(
            target=self._loop, args=(self.books_every, self._put_books), daemon=True
        )
        books.start()
        self._loop(self.marks_every, self._post_marks)
        books.join(15)

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(15)
