"""Proof 3, crash safety (api.md, State from the venue: fills are idempotent by ``fill_id``; a
replay answers the first result and changes nothing).

One real ``uvicorn`` process on the run's PostgreSQL database and Redis; a desk of 100,000,000
USDC per subaccount. Six clients stream fills concurrently, one fill per request, each client on
its own position (two subaccounts × three instruments), buys and sells, with growths, reductions,
exact closes and flips, taker fees and maker rebates. The server is killed with SIGKILL while
requests are in flight, restarted on the same port, and killed once more while the clients retry
and resume. At each kill one fill is known to be stored without its client having read the
answer (the killer's own client sends it over a raw connection, waits until it is stored, never
reads): its retry must answer the first result, not apply it twice. After each restart, every fill
that got a 2xx is stored and audited exactly once, and resending all of them answers exactly the
first results; the clients then resend every fill that did not get a 2xx, with the same
``fill_id``. At the end every answer, every stored fill, the positions and the balances equal a
replay of all fills computed here, independently of the app, in exact rational arithmetic.

Each client sends its next fill only after the previous one was answered, so the order in which a
position's fills are applied is the client's order even across the crashes, and the replay of
each position is well defined. Balances only add (realised PnL minus fees), so their order does
not matter.

The replay, per position of signed size q and entry e, contract size k, for a fill of signed size
d (buy +, sell −) at price p with fee f (api.md, margin.md; README "Fills"):

- grows (q = 0 or d of the sign of q): q' = q + d, e' = (|q|·e + |d|·p) / |q'|, rounded at 18
  places against the holder (a long's entry up, a short's down); realised 0.
- reduces (opposite sign): c = min(|d|, |q|) closes, realising c·k·(p − e)·sign(q); e' = e if
  q' keeps the sign of q, 0 if q' = 0, p if the position flipped (the rest opens at p).
- settlement balance: + realised − f (a negative fee is a rebate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import Api
from tests.factories import BTC_PERP, deposit, desk
from tests.proof.conftest import Figures, scale
from tests.servers import (
    ADMIN_KEY,
    HOST,
    READY_DEADLINE_S,
    ServerProcess,
    server_env,
    serving,
)

PROOF = "3 crash safety"
FILLS_PER_STREAM = scale(ci=40, full=500)
KILL_AT = (Fraction(1, 3), Fraction(2, 3))  # SIGKILL once the killer's stream is this far
DEPOSIT = Decimal("100000000")
SUBACCOUNTS = ("sub-cross", "sub-portfolio")
REQUEST_TIMEOUT_S = 30.0
PHASE_DEADLINE_S = float(scale(ci=120, full=1200))  # longer is a hang, not slowness


@dataclass(frozen=True)
class Market:
    symbol: str
    contract_size: Decimal
    tick: Decimal
    lot: Decimal
    price: Decimal  # fills trade within ±3 % of it


MARKETS = (
    Market("BTC-PERP", Decimal("1"), Decimal("0.5"), Decimal("0.001"), Decimal("60000")),
    Market("ETH-PERP", Decimal("1"), Decimal("0.01"), Decimal("0.01"), Decimal("3000")),
    Market("SOL-PERP", Decimal("10"), Decimal("0.001"), Decimal("0.1"), Decimal("150")),
)
SOL_PERP: dict[str, Any] = {
    **BTC_PERP,
    "underlying": "SOL",
    "contract_size": "10",
    "tick_size": "0.001",
    "lot_size": "0.1",
}


@dataclass
class Stream:
    """One client's fills on one position, and what it has been told about them."""

    subaccount_id: str
    market: Market
    fills: list[dict[str, Any]]
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # fill_id → first 2xx item
    next: int = 0  # the first fill without a 2xx
    in_flight: str | None = None  # the fill_id of a request sent and not yet answered


def _fills(subaccount_id: str, market: Market, count: int) -> list[dict[str, Any]]:
    """A deterministic mix of growths, reductions, exact closes and flips, with taker fees and
    maker rebates."""
    rng = random.Random(f"{subaccount_id}/{market.symbol}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    held = Decimal(0)  # the running size, to aim at exact closes and flips
    fills = []
    for j in range(count):
        roll = rng.random()
        lots = market.lot * rng.randint(1, 2000)
        if held != 0 and roll < 0.15:  # close exactly
            side, size = ("sell" if held > 0 else "buy"), abs(held)
        elif held != 0 and roll < 0.35:  # flip
            side, size = ("sell" if held > 0 else "buy"), abs(held) + lots
        else:
            side, size = rng.choice(("buy", "sell")), lots
        held += size if side == "buy" else -size
        price = (market.price / market.tick + rng.randint(-600, 600)).to_integral() * market.tick
        rate = Decimal("0.0005") if rng.random() < 0.7 else Decimal("-0.0002")
        fee = (size * market.contract_size * price * rate).quantize(Decimal("0.000001"))
        fills.append(
            {
                "fill_id": f"{subaccount_id}:{market.symbol}:{j}",
                "subaccount_id": subaccount_id,
                "instrument": market.symbol,
                "side": side,
                "size": str(size),
                "price": str(price),
                "fee": str(fee),
                "ts": (start + timedelta(seconds=j)).isoformat().replace("+00:00", "Z"),
            }
        )
    return fills


# --- the independent replay ------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    size: Fraction = Fraction(0)
    entry: Fraction = Fraction(0)
    realized: Fraction = Fraction(0)


@dataclass(frozen=True)
class Step:
    """What one fill did: its realised PnL and the position after it."""

    realized: Fraction
    size: Fraction
    entry: Fraction


def _exact(value: str) -> Fraction:
    return Fraction(Decimal(value))


def _decimal(value: Fraction) -> str:
    """A replayed amount as a decimal string (every one terminates: its denominator divides a
    power of ten)."""
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return str(Decimal(int(value * 10**digits)).scaleb(-digits))


def _replay_fill(held: Held, fill: dict[str, Any], k: Fraction) -> Held:
    size, price = _exact(fill["size"]), _exact(fill["price"])
    signed = size if fill["side"] == "buy" else -size
    after = held.size + signed
    if held.size == 0 or (held.size > 0) == (signed > 0):
        weighted = (abs(held.size) * held.entry + size * price) / abs(after)
        scaled = weighted * 10**18
        against_holder = math.ceil(scaled) if after > 0 else math.floor(scaled)
        return Held(after, Fraction(against_holder, 10**18), held.realized)
    closed = min(size, abs(held.size))
    realized = closed * k * (price - held.entry) * (1 if held.size > 0 else -1)
    if after == 0:
        entry = Fraction(0)
    elif (after > 0) == (held.size > 0):
        entry = held.entry
    else:
        entry = price  # flipped: the rest opens at the fill price
    return Held(after, entry, held.realized + realized)


def _replay(stream: Stream) -> tuple[dict[str, Step], Held]:
    """Every fill's step, and the final position."""
    k = Fraction(stream.market.contract_size)
    held = Held()
    steps = {}
    for fill in stream.fills:
        after = _replay_fill(held, fill, k)
        steps[fill["fill_id"]] = Step(after.realized - held.realized, after.size, after.entry)
        held = after
    return steps, held


# --- helpers -------------------------------------------------------------------------------


@dataclass
class Tally:
    acked_at_kill: list[int] = field(default_factory=list)
    in_flight_at_kill: list[int] = field(default_factory=list)
    in_flight_answered: int = 0  # in flight at the kill, yet a 2xx arrived (sent before it)
    in_flight_committed: int = 0  # in flight, no 2xx, but stored: the retry must replay it
    duplicates: int = 0
    missing: int = 0
    mismatches: list[str] = field(default_factory=list)  # what differs from the replay
    killed_at: datetime | None = None


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[Api]:
    # Idle connections are dropped after 1 s, well before the server's 5 s keep-alive timeout:
    # a request never races the server closing its connection.
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        yield Api(client, ADMIN_KEY)


async def _send_one(api: Api, stream: Stream) -> bool:
    """Send the stream's first fill without a 2xx; False if the server is gone."""
    item = stream.fills[stream.next]
    stream.in_flight = item["fill_id"]
    try:
        response = await api.post("/v1/fills", json={"fills": [item]})
    except httpx.TransportError:
        return False  # killed: the client retries this fill once the server is back
    finally:
        stream.in_flight = None
    assert response.status_code == 200, (item["fill_id"], response.status_code, response.text)
    stream.acked[item["fill_id"]] = response.json()["fills"][0]
    stream.next += 1
    return True


async def _send(api: Api, stream: Stream, progress: asyncio.Event) -> None:
    """Send the stream's fills one by one, until the end or until the server is gone."""
    while stream.next < len(stream.fills):
        if not await _send_one(api, stream):
            return
        progress.set()


async def _post_unread(server: ServerProcess, item: dict[str, Any]) -> asyncio.StreamWriter:
    """POST one fill over a raw connection and never read the answer (the client's answer is
    lost, as when the client crashes or its connection drops after sending)."""
    body = json.dumps({"fills": [item]}).encode()
    head = (
        f"POST /v1/fills HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(head.encode() + body)
    await writer.drain()
    return writer


async def _until_stored(postgres_url: str, fill_id: str, deadline: float) -> None:
    engine = create_async_engine(postgres_url)
    query = text("SELECT count(*) FROM fills WHERE fill_id = :fill_id")
    try:
        async with engine.connect() as connection:
            while not (await connection.execute(query, {"fill_id": fill_id})).scalar_one():
                assert time.monotonic() < deadline, f"{fill_id} was never stored"
                await connection.rollback()
                await asyncio.sleep(0.02)
    finally:
        await engine.dispose()


async def _kill_when(
    server: ServerProcess,
    api: Api,
    streams: list[Stream],
    kill_at: Fraction,
    progress: asyncio.Event,
    tally: Tally,
    postgres_url: str,
) -> set[str]:
    """The killer is the client of the first stream: it sends that stream's fills until
    ``kill_at`` of them have a 2xx, then the next one without reading the answer; once that fill
    is stored, it SIGKILLs the server at a moment when the other clients have requests in flight.
    Answers the fills in flight at the kill."""
    deadline = time.monotonic() + PHASE_DEADLINE_S
    lossy, *others = streams
    while lossy.next < math.ceil(len(lossy.fills) * kill_at):
        assert time.monotonic() < deadline, "the stream stalled before the kill"
        assert await _send_one(api, lossy), "the server went away before the kill"
    lost = lossy.fills[lossy.next]["fill_id"]
    writer = await _post_unread(server, lossy.fills[lossy.next])
    try:
        await _until_stored(postgres_url, lost, deadline)
        while not any(s.in_flight for s in others):
            progress.clear()
            await asyncio.wait_for(progress.wait(), deadline - time.monotonic())
        # No await between the look and the kill: exactly these requests were unanswered.
        in_flight = [lost] + [s.in_flight for s in others if s.in_flight]
        server.kill()
    finally:
        writer.close()
    tally.killed_at = datetime.now(UTC)
    tally.acked_at_kill.append(sum(len(s.acked) for s in streams))
    tally.in_flight_at_kill.append(len(in_flight))
    return set(in_flight)


async def _phase(
    server: ServerProcess,
    streams: list[Stream],
    tally: Tally,
    kill_at: Fraction | None,
    postgres_url: str,
) -> set[str]:
    """Every client (re)sends from its first fill without a 2xx; with ``kill_at``, the server is
    killed (see ``_kill_when``) and the phase ends when every client has seen the server go.
    Answers the fills in flight at the kill."""
    progress = asyncio.Event()
    async with _client(server.url) as api:
        if kill_at is None:
            senders = [_send(api, stream, progress) for stream in streams]
            await asyncio.wait_for(asyncio.gather(*senders), PHASE_DEADLINE_S)
            # No kill, so no transport error: every client got to its end.
            assert [s.next for s in streams] == [len(s.fills) for s in streams]
            return set()
        senders = [_send(api, stream, progress) for stream in streams[1:]]
        killer = _kill_when(server, api, streams, kill_at, progress, tally, postgres_url)
        in_flight, *_ = await asyncio.wait_for(asyncio.gather(killer, *senders), PHASE_DEADLINE_S)
        assert isinstance(in_flight, set)
        return in_flight


async def _settled(postgres_url: str, killed_at: datetime) -> None:
    """Wait until every transaction open at the kill has ended in PostgreSQL (a COMMIT the dead
    server sent may still be in flight): from then on the stored fills are final."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND xact_start < :killed_at AND pid <> pg_backend_pid()"
    )
    engine = create_async_engine(postgres_url)
    deadline = time.monotonic() + PHASE_DEADLINE_S
    try:
        async with engine.connect() as connection:
            while (await connection.execute(query, {"killed_at": killed_at})).scalar_one():
                assert time.monotonic() < deadline, "a killed server's transaction never ended"
                await connection.rollback()  # a fresh snapshot of pg_stat_activity
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


def _restart(server: ServerProcess) -> None:
    server.start()
    assert server.wait_ready(time.monotonic() + READY_DEADLINE_S), server.output()


async def _table(postgres_url: str, table: str) -> list[dict[str, Any]]:
    """A table's rows, read directly from the database."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).mappings().all()
    finally:
        await engine.dispose()
    return [dict(row) for row in rows]


async def _stored(postgres_url: str) -> dict[str, dict[str, Any]]:
    """The fills table: fill_id → row."""
    return {row["fill_id"]: row for row in await _table(postgres_url, "fills")}


async def _audited(api: Api) -> Counter[str]:
    """How many times each fill was recorded in the audit chain (once per application)."""
    seen: Counter[str] = Counter()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"kind": "fill", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = await api.ok("GET", "/v1/audit", params=params)
        seen.update(entry["payload"]["fill_id"] for entry in page["entries"])
        cursor = page["next_cursor"]
        if not cursor:
            return seen


async def _check_after_restart(
    server: ServerProcess, postgres_url: str, streams: list[Stream], tally: Tally
) -> None:
    """Every acknowledged fill is stored and applied exactly once; nothing was stored that was
    not sent; a replay of every acknowledged fill answers its first result."""
    stored = await _stored(postgres_url)
    async with _client(server.url) as api:
        audited = await _audited(api)
        acked = {fill_id: item for s in streams for fill_id, item in s.acked.items()}
        sent = {f["fill_id"] for s in streams for f in s.fills[: s.next + 1]}
        tally.missing = len(set(acked) - set(stored))
        tally.duplicates = sum(n - 1 for n in audited.values() if n > 1)
        assert tally.missing == 0, sorted(set(acked) - set(stored))
        assert tally.duplicates == 0, [i for i, n in audited.items() if n > 1]
        assert set(audited) == set(stored) <= sent
        # Resent as clients retry (one all-or-nothing batch per 1,000): the first answers.
        items = sorted(acked)
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            by_id = {f["fill_id"]: f for s in streams for f in s.fills}
            body = await api.ok(
                "POST", "/v1/fills", json={"fills": [by_id[fill_id] for fill_id in chunk]}
            )
            assert body["fills"] == [acked[fill_id] for fill_id in chunk]
        assert await _audited(api) == audited  # the replays applied nothing


# --- the proof ---------------------------------------------------------------------------------


@pytest.fixture
def server(clean: None, postgres_url: str, redis_url: str) -> Any:
    with serving(server_env(postgres_url, redis_url)) as running:
        yield running


async def test_fills_survive_kill_9_exactly_once_and_positions_equal_the_replay(
    server: ServerProcess, postgres_url: str, figures: Figures
) -> None:
    """Proof 3: two SIGKILLs while fills stream in; every 2xx fill present exactly once after
    each restart, every retried fill applied exactly once, and positions, realised PnL and
    balances equal the independent replay exactly."""
    streams = [
        Stream(sid, market, _fills(sid, market, FILLS_PER_STREAM))
        for sid in SUBACCOUNTS
        for market in MARKETS
    ]
    subaccounts = sorted({s.subaccount_id for s in streams})
    tally = Tally()
    started = time.perf_counter()
    try:
        async with _client(server.url) as api:
            await desk(api, modes=("cross", "portfolio"))
            await api.ok("PUT", "/v1/instruments/SOL-PERP", json=SOL_PERP)
            for sid in subaccounts:
                await deposit(api, sid, str(DEPOSIT))

        for kill_at in KILL_AT:
            in_flight = await _phase(server, streams, tally, kill_at, postgres_url)
            assert tally.killed_at is not None
            await _settled(postgres_url, tally.killed_at)
            _restart(server)
            stored = await _stored(postgres_url)
            answered = {i for s in streams for i in s.acked}
            tally.in_flight_answered += len(in_flight & answered)
            tally.in_flight_committed += len((in_flight - answered) & set(stored))
            await _check_after_restart(server, postgres_url, streams, tally)
        # Each kill lost the answer of one stored fill, which its retry then got (the first
        # result, checked against the replay below).
        assert tally.in_flight_committed >= len(KILL_AT)
        await _phase(server, streams, tally, None, postgres_url)
        await _check_after_restart(server, postgres_url, streams, tally)

        # Every fill was answered, and every answer and stored row is the replay's step.
        stored = await _stored(postgres_url)
        assert len(stored) == sum(len(s.fills) for s in streams)
        expected_balance = {sid: Fraction(DEPOSIT) for sid in subaccounts}
        final: dict[tuple[str, str], Held] = {}
        for stream in streams:
            steps, held = _replay(stream)
            final[(stream.subaccount_id, stream.market.symbol)] = held
            assert set(stream.acked) == set(steps)
            for fill in stream.fills:
                step, item = steps[fill["fill_id"]], stream.acked[fill["fill_id"]]
                row = stored[fill["fill_id"]]
                assert (
                    _exact(item["realized_pnl"]),
                    _exact(item["position_size"]),
                    _exact(item["entry_price"]),
                ) == (step.realized, step.size, step.entry), fill
                assert (
                    Fraction(row["realized_pnl"]),
                    Fraction(row["position_size_after"]),
                    Fraction(row["entry_price_after"]),
                ) == (step.realized, step.size, step.entry), fill
                expected_balance[stream.subaccount_id] += step.realized - _exact(fill["fee"])

        async with _client(server.url) as api:
            for sid in subaccounts:
                listed = {
                    p["instrument"]: p
                    for p in (await api.ok("GET", f"/v1/subaccounts/{sid}/positions"))["positions"]
                }
                for symbol in sorted(symbol for owner, symbol in final if owner == sid):
                    held = final[(sid, symbol)]
                    position = listed.pop(symbol, None)
                    got = None
                    if position is not None:
                        columns = ("size", "entry_price", "realized_pnl", "isolated_margin")
                        got = tuple(_exact(position[c]) for c in columns)
                    want = None
                    if held.size != 0:  # cross and portfolio: no isolated margin
                        want = (held.size, held.entry, held.realized, Fraction(0))
                    if got != want:
                        tally.mismatches.append(f"{sid} {symbol}: {got} != {want}")
                assert listed == {}, listed  # no position the replay does not have
                balances = (await api.ok("GET", f"/v1/subaccounts/{sid}/balances"))["balances"]
                if _exact(balances["USDC"]) != expected_balance[sid]:
                    want_usdc = _decimal(expected_balance[sid])
                    tally.mismatches.append(f"{sid} USDC: {balances['USDC']} != {want_usdc}")
                assert set(balances) == {"USDC"}, balances
            assert (await api.ok("GET", "/v1/audit/verify"))["ok"] is True

        # The API lists open positions only; the table also keeps the realised PnL of the
        # positions that ended flat.
        for row in await _table(postgres_url, "positions"):
            held = final.pop((row["subaccount_id"], row["instrument"]))
            stored_position = tuple(
                Fraction(row[c]) for c in ("size", "entry_price", "realized_pnl")
            )
            if stored_position != (held.size, held.entry, held.realized):
                tally.mismatches.append(f"stored {row['subaccount_id']} {row['instrument']}")
        assert final == {}, final  # every replayed position is stored
    finally:
        elapsed = time.perf_counter() - started
        total = sum(len(s.fills) for s in streams)
        figures.record(
            f"fills streamed ({len(streams)} clients, {len(MARKETS)} instruments, "
            f"{len(subaccounts)} subaccounts)",
            total,
        )
        figures.record("kill -9 while fills in flight", len(tally.acked_at_kill), len(KILL_AT))
        figures.record(
            "fills acknowledged before each kill", " / ".join(map(str, tally.acked_at_kill))
        )
        figures.record(
            "fills in flight at each kill", " / ".join(map(str, tally.in_flight_at_kill))
        )
        figures.record("  of which answered 2xx after all", tally.in_flight_answered)
        figures.record("  of which stored without a 2xx", tally.in_flight_committed)
        figures.record("duplicates", tally.duplicates, 0)
        figures.record("missing acknowledged fills", tally.missing, 0)
        figures.record("position/balance mismatches vs replay", len(tally.mismatches), 0)
        figures.record("fills/s incl. 2 restarts", f"{total / elapsed:.1f}")
    assert tally.mismatches == []
