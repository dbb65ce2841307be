"""Proof 4, Redis outage (api.md, Operations: "When Redis is unreachable: marks and books fall
back to the last values persisted in Postgres, judged by the same staleness rules; checks keep
answering"; ``/readyz`` reports Redis down as ``degraded``).

A server process runs on the run's PostgreSQL database and on a Redis of the test's own. While
a stream of pre-trade checks runs, that Redis is stopped, then started again on the same port;
the app is never restarted. Every check must answer 200, and its decision must follow from the
mark as posted and its age alone (margin.md, Pre-trade, step 5):

- BTC-PERP has ``stale_after_s`` = S = 3 s (5 s at full scale, where 16 clients slow every
  answer down). The desk holds 1 BTC-PERP long and 1,000,000 USDC.
- The stream alternates two one-leg baskets: *adding* (buy 0.1 BTC-PERP, limit at the price
  of the first mark, 60,000) grows the position; *reducing* (sell 0.1 at the same limit)
  shrinks it. With 1,000,000 USDC against an IM of at most 10 % · 1.1 · 60,350 ≈ 6,639,
  margin never binds, and the limit is within the 5 % price band of every mark posted while
  the stream runs (60,000 … 60,350, at most 0.6 % away), so the only rule that can break is
  the mark's freshness.
- Each mark post carries its own price, so a check's ``marks.BTC-PERP.price`` names the post
  it was judged on; that post must be the newest one acknowledged before the check was sent,
  or one sent while it ran (never an older one: nothing may fall back to out-of-date values).
- A check judged at time j sees the mark fresh iff ``j − ts ≤ S``; j lies between the check's
  ``as_of`` and the moment its answer arrived. So: answer received by ``ts + S`` → fresh →
  both baskets accepted; ``as_of`` after ``ts + S`` → stale → the adding basket is rejected
  with exactly ``STALE_MARK`` and the reducing one is still accepted. In between, either.

Marks posted while Redis is down still answer 200 and are stored in PostgreSQL: checks judge
them fresh, then stale S seconds later, and they are still there after Redis comes back empty.
The order-rate cap (``max_order_rate``) holds throughout: from Redis's shared window while it
is up, from the accepted checks stored in PostgreSQL while it is down. When Redis returns, fresh
marks are accepted again, and what Redis serves works again without a restart: the order-rate
window, and the TWAP that flags a deviating mark (margin.md, step 5: ``ORACLE_DEVIATION``),
whose state PostgreSQL kept through the outage, so a jump is flagged at the first post.

Two more ways Redis goes away are proven below: it comes back holding its old data, and it
hangs (accepts connections, never answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from app.core.config import Settings
from tests.conftest import Api, empty_everything
from tests.factories import BTC_PERP, deposit, desk, fill
from tests.proof.conftest import Figures, scale
from tests.servers import ADMIN_KEY, ServerProcess, server_env, serving
from tests.services import RedisServer

PROOF = "4 Redis outage"

STALE_AFTER_S = float(scale(3, 5))
LIMIT = "60000"
SIZE = "0.1"
WORKERS = scale(4, 16)  # concurrent clients streaming checks
PER_PHASE = scale(3, 10)  # answers of each kind every phase must show, at least
REQUEST_TIMEOUT_S = 20.0
# Latency: Redis down may not slow the median check by one cache socket timeout (0.5 s; a
# check makes about five cache calls, so paying it per call would cost 2.5 s), and no answer
# may come anywhere near the client's timeout.
REDIS_TIMEOUT_S = 0.5
NO_HANG_S = 5.0
PHASE_DEADLINE_S = 30.0


@dataclass(frozen=True)
class MarkPost:
    price: Decimal
    ts: float  # the marks' own time (epoch seconds)
    sent: float
    acked: float


@dataclass(frozen=True)
class Answer:
    kind: str  # "add" or "reduce"
    sent: float
    received: float
    status: int | None
    body: dict[str, Any] | None
    error: str | None

    @property
    def latency(self) -> float:
        return self.received - self.sent

    @property
    def as_of(self) -> float:
        assert self.body is not None
        return datetime.fromisoformat(self.body["as_of"]).timestamp()

    @property
    def codes(self) -> list[str]:
        assert self.body is not None
        return [r["code"] for r in self.body["reasons"]]


@dataclass
class Run:
    """Everything the stream and the test observed, with wall-clock times (one host)."""

    stale_after: float = STALE_AFTER_S
    posts: list[MarkPost] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    down: float = float("inf")
    up: float = float("inf")

    def post_priced(self, price: Decimal) -> int:
        return next(i for i, p in enumerate(self.posts) if p.price == price)


def _order(side: str, limit: str = LIMIT, instrument: str = "BTC-PERP") -> dict[str, Any]:
    return {
        "instrument": instrument,
        "side": side,
        "size": SIZE,
        "type": "limit",
        "limit_price": limit,
    }


async def _post_marks(api: Api, run: Run, price: str) -> MarkPost:
    """Two agreeing sources at ``price``, dated now; answered 200 with both accepted."""
    sent = time.time()
    ts = datetime.now(UTC)
    body = {
        "marks": [
            {"symbol": "BTC-PERP", "price": price, "source": source, "ts": ts.isoformat()}
            for source in ("venue", "oracle")
        ]
    }
    accepted = await api.ok("POST", "/v1/marks", json=body)
    assert accepted == {"accepted": 2, "superseded": 0}, accepted
    post = MarkPost(Decimal(price), ts.timestamp(), sent, time.time())
    run.posts.append(post)
    return post


async def _stream(api: Api, run: Run, stop: asyncio.Event, worker: int) -> None:
    """Checks back to back, alternating adding and reducing baskets, until ``stop``."""
    kinds = ("add", "reduce") if worker % 2 == 0 else ("reduce", "add")
    n = 0
    while not stop.is_set():
        kind = kinds[n % 2]
        n += 1
        sent = time.time()
        order = _order("buy" if kind == "add" else "sell")
        try:
            response = await api.post(
                "/v1/pretrade/check", json={"subaccount_id": "sub-cross", "orders": [order]}
            )
        except httpx.HTTPError as exc:
            run.answers.append(Answer(kind, sent, time.time(), None, None, repr(exc)))
            continue
        body = response.json() if response.status_code == 200 else None
        run.answers.append(Answer(kind, sent, time.time(), response.status_code, body, None))


async def _until(what: str, condition: Callable[[], bool], run: Run) -> None:
    """Poll ``condition`` until it holds (the stream keeps running meanwhile)."""
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            slow = sorted(a.latency for a in run.answers)[-5:]
            raise AssertionError(f"{what}: not seen within {PHASE_DEADLINE_S} s; slowest {slow}")
        failures = [a for a in run.answers if a.status != 200]
        assert not failures, failures[:3]
        await asyncio.sleep(0.05)


def _judged(run: Run, answer: Answer) -> tuple[MarkPost, str]:
    """The post a check was judged on, and whether it must have been ``fresh``, ``stale`` or
    may be either (``edge``), from the times alone."""
    assert answer.body is not None
    price = Decimal(answer.body["marks"]["BTC-PERP"]["price"])
    index = run.post_priced(price)
    post = run.posts[index]
    newest_acked = max(i for i, p in enumerate(run.posts) if p.acked <= answer.sent or i == 0)
    assert index >= newest_acked, (
        f"a check sent after the mark at {run.posts[newest_acked].price} was acknowledged "
        f"was judged on the older {price}",
        answer,
    )
    assert post.sent <= answer.received, answer
    if answer.received - post.ts <= run.stale_after:
        return post, "fresh"
    if answer.as_of - post.ts > run.stale_after:
        return post, "stale"
    return post, "edge"


def _verify(run: Run, answer: Answer) -> str:
    """Assert one check's answer against the spec; return its expected freshness."""
    assert answer.status == 200 and answer.body is not None, answer
    _, expected = _judged(run, answer)
    body = answer.body
    status = body["marks"]["BTC-PERP"]["status"]
    if expected != "edge":
        assert status == expected, (expected, answer)
    if answer.kind == "reduce" or status == "fresh":
        # A reducing basket passes whatever the mark; with a fresh mark both do.
        assert body["decision"] == "accept", answer
        assert answer.codes == [], answer
    else:
        assert body["decision"] == "reject", answer
        assert answer.codes == ["STALE_MARK"], answer
    return expected


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _seen_both(run: Run, expected: str, price: Decimal, after: float = 0.0) -> int:
    """The fewer, of adding and of reducing answers, judged ``expected`` on that post."""
    return min(_seen(run, kind, expected, price, after) for kind in ("add", "reduce"))


def _seen(run: Run, kind: str, expected: str, price: Decimal, after: float = 0.0) -> int:
    """How many answers of ``kind`` were judged ``expected`` on the post at ``price``."""
    count = 0
    known = {p.price for p in run.posts}
    for answer in list(run.answers):
        if answer.kind != kind or answer.sent < after or answer.status != 200:
            continue
        assert answer.body is not None
        if Decimal(answer.body["marks"]["BTC-PERP"]["price"]) not in known:
            continue  # judged on a post whose answer has not reached the test yet
        post, judged = _judged(run, answer)
        if post.price == price and judged == expected:
            count += 1
    return count


@contextlib.asynccontextmanager
async def _client(url: str, run: Run) -> AsyncIterator[Api]:
    async def count(response: httpx.Response) -> None:
        run.statuses[response.status_code] += 1

    limits = httpx.Limits(max_connections=WORKERS + 8, max_keepalive_connections=WORKERS + 8)
    async with httpx.AsyncClient(
        base_url=url,
        timeout=REQUEST_TIMEOUT_S,
        limits=limits,
        event_hooks={"response": [count]},
    ) as client:
        yield Api(client, ADMIN_KEY)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def running(postgres_url: str, own_redis: RedisServer) -> Iterator[ServerProcess]:
    """One server process for the module, on the run's database and the test's own Redis."""
    with serving(server_env(postgres_url, own_redis.url)) as process:
        yield process


@pytest.fixture
async def server(
    settings: Settings, own_redis: RedisServer, running: ServerProcess
) -> ServerProcess:
    """The server, with the run's database and the test's Redis emptied (Redis started again
    if a failed test left it down)."""
    await empty_everything(settings)
    client = redis_asyncio.Redis.from_url(own_redis.url)
    try:
        try:
            await client.flushdb()
        except (RedisError, OSError):
            await asyncio.to_thread(own_redis.start)
            await client.flushdb()
    finally:
        await client.aclose()
    return running


async def _seed(api: Api) -> None:
    await desk(api)
    await api.ok(
        "PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, "stale_after_s": str(STALE_AFTER_S)}
    )
    await deposit(api, "sub-cross", "1000000")
    await deposit(api, "other-sub", "1000000")
    await api.ok("POST", "/v1/fills", json={"fills": [fill("open", "buy", "1", LIMIT)]})


async def _ready(api: Api) -> dict[str, Any]:
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _rate_capped(api: Api, run: Run, price: str) -> bool:
    """Fresh marks at ``price``, then two checks on ``other-sub`` (``max_order_rate`` 1) back
    to back, until a pair lands within one second: is the second refused ``ORDER_RATE``?"""
    await _post_marks(api, run, price)
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while time.monotonic() < deadline:
        body = {"subaccount_id": "other-sub", "orders": [_order("buy", price)]}
        first = await api.ok("POST", "/v1/pretrade/check", json=body)
        if first["decision"] != "accept":
            # Only the window of an earlier try can refuse it: the mark is fresh, margin ample.
            assert [r["code"] for r in first["reasons"]] == ["ORDER_RATE"], first
            continue
        second = await api.ok("POST", "/v1/pretrade/check", json=body)
        gap = (
            datetime.fromisoformat(second["as_of"]) - datetime.fromisoformat(first["as_of"])
        ).total_seconds()
        if gap < 0.9:
            codes = [r["code"] for r in second["reasons"]]
            assert codes in ([], ["ORDER_RATE"]), second
            return codes == ["ORDER_RATE"]
    raise AssertionError("no two checks within one second")


async def test_checks_keep_answering_from_postgresql_while_redis_is_down(
    server: ServerProcess, own_redis: RedisServer, figures: Figures
) -> None:
    """Redis stopped mid-stream and started again empty: the module docstring's promises."""
    run = Run()
    stop = asyncio.Event()
    async with _client(server.url, run) as api:
        await _seed(api)
        await api.ok("PUT", "/v1/subaccounts/other-sub/limits", json={"max_order_rate": 1})
        assert (await _ready(api))["status"] == "ready"
        p0 = await _post_marks(api, run, "60000")
        workers = [asyncio.create_task(_stream(api, run, stop, w)) for w in range(WORKERS)]
        try:
            # 1. Redis up: both baskets accepted on the fresh mark.
            await _until(
                "accepts before the outage",
                lambda: _seen_both(run, "fresh", p0.price) >= PER_PHASE,
                run,
            )
            rate_capped_before = await _rate_capped(api, run, "60050")
            assert rate_capped_before  # the cap works while Redis is up

            # 2. Fresh marks, then Redis goes away mid-stream.
            p1 = await _post_marks(api, run, "60100")
            await asyncio.to_thread(own_redis.stop)
            run.down = time.time()
            ready = await _ready(api)
            assert ready == {"status": "degraded", "database": "ok", "cache": "degraded"}
            assert (await api.get("/healthz")).status_code == 200
            # Answered from PostgreSQL: fresh while younger than S, then adding is refused.
            await _until(
                "fresh, then stale, answers on the mark posted before the outage",
                lambda: (
                    _seen(run, "add", "fresh", p1.price, run.down) >= 1
                    and _seen_both(run, "stale", p1.price, run.down) >= PER_PHASE
                ),
                run,
            )

            # 3. Marks posted while Redis is down are stored in PostgreSQL and judged there.
            rate_capped_during = await _rate_capped(api, run, "60150")
            assert rate_capped_during  # counted from PostgreSQL: it must not fail open
            p2 = await _post_marks(api, run, "60200")
            mark = await api.ok("GET", "/v1/marks/BTC-PERP")
            assert (mark["price"], mark["status"]) == ("60200", "fresh"), mark
            await _until(
                "fresh, then stale, answers on the mark posted during the outage",
                lambda: (
                    _seen_both(run, "fresh", p2.price) >= 1
                    and _seen_both(run, "stale", p2.price) >= PER_PHASE
                ),
                run,
            )

            # 4. Redis returns, empty, on the same port; the app is not restarted.
            await asyncio.to_thread(own_redis.start)
            run.up = time.time()
            deadline = time.monotonic() + PHASE_DEADLINE_S
            while (await _ready(api))["status"] != "ready":
                assert time.monotonic() < deadline, "readyz never became ready again"
                await asyncio.sleep(0.02)
            recovered_s = time.time() - run.up
            ready = await _ready(api)
            assert ready == {"status": "ready", "database": "ok", "cache": "ok"}
            # The mark posted during the outage survived it: Redis came back empty.
            mark = await api.ok("GET", "/v1/marks/BTC-PERP")
            assert (mark["price"], mark["status"]) == ("60200", "stale"), mark
            p3 = await _post_marks(api, run, "60300")
            await _until(
                "accepts after Redis returned",
                lambda: _seen_both(run, "fresh", p3.price, p3.acked) >= PER_PHASE,
                run,
            )
        finally:
            stop.set()
            await asyncio.gather(*workers)

        # 5. What lives only in Redis works again: the order-rate window ...
        rate_capped_after = await _rate_capped(api, run, "60350")
        assert rate_capped_after
        # ... and the TWAP, whose state PostgreSQL kept through the outage: a jump to 70,000
        # (+16 %) right after is ``deviating``. Its points are every post of the run, from
        # 60,000 (t0) to 60,350, then 70,000 (t4); over [t0, now] the TWAP is at least 60,000
        # and at most 60,350 · (1 − f) + 70,000 · f, f = (now − t4)/(now − t0), under
        # 70,000 / 1.05 = 66,667 while f < 0.65. now − t4 is one GET; t4 − t0 spans the whole
        # run (every phase above).
        await _post_marks(api, run, "70000")
        mark = await api.ok("GET", "/v1/marks/BTC-PERP")
        assert mark["status"] == "deviating", mark
        assert Decimal("60000") <= Decimal(mark["twap"]) < Decimal("66667"), mark
        deviating = await api.ok(
            "POST",
            "/v1/pretrade/check",
            json={"subaccount_id": "sub-cross", "orders": [_order("buy", "70000")]},
        )
        assert [r["code"] for r in deviating["reasons"]] == ["ORACLE_DEVIATION"], deviating

    # Every answer, judged against the spec.
    expected = Counter(_verify(run, a) for a in run.answers)
    server_errors = sum(n for status, n in run.statuses.items() if status >= 500)
    assert server_errors == 0, run.statuses
    during = [a for a in run.answers if run.down <= a.sent and a.received <= run.up]
    stale_rejects = [a for a in during if a.kind == "add" and a.codes == ["STALE_MARK"]]
    reduce_stale = [a for a in during if a.kind == "reduce" and _judged(run, a)[1] == "stale"]
    assert stale_rejects and reduce_stale
    accepted_again = min(
        a.received
        for a in run.answers
        if a.kind == "add" and a.codes == [] and _judged(run, a)[0] == p3
    )
    before = _median([a.latency for a in run.answers if a.received < run.down])
    median = _median([a.latency for a in during])
    worst = max(a.latency for a in during)
    assert median - before < REDIS_TIMEOUT_S and worst < NO_HANG_S, (before, median, worst)

    figures.record("checks answered during the outage (all 200)", len(during))
    figures.record("responses 5xx, whole run", server_errors, 0)
    figures.record("STALE_MARK rejects of adding legs after stale_after", len(stale_rejects))
    figures.record("reducing legs accepted on a stale mark", len(reduce_stale))
    figures.record("checks judged fresh / stale / edge", dict(expected))
    figures.record(
        "check latency median before / median, slowest during (s)",
        f"{before:.3f} / {median:.3f}, {worst:.3f}",
        f"median +{REDIS_TIMEOUT_S}, < {NO_HANG_S}",
    )
    figures.record("readyz ready after Redis returned (s)", f"{recovered_s:.3f}")
    figures.record(
        "first adding check accepted after Redis returned (s)", f"{accepted_again - run.up:.3f}"
    )
    figures.record("max_order_rate enforced during outage", rate_capped_during)


async def _put_book(api: Api, bid: str, ask: str) -> None:
    book = {"bids": [[bid, "5"]], "asks": [[ask, "5"]], "ts": datetime.now(UTC).isoformat()}
    await api.ok("PUT", "/v1/books/ETH-PERP", json=book)


async def test_redis_back_with_its_old_data_does_not_hide_what_was_posted_meanwhile(
    server: ServerProcess, own_redis: RedisServer, figures: Figures
) -> None:
    """A Redis that keeps its data across a restart (``redis:7`` saves a dump at shutdown and
    loads it at start, as compose runs it) comes back holding the marks and books of before the
    outage. What was posted while it was down went to PostgreSQL only, and is newer: it must
    win, in the mark and book shown and in the check's valuation."""
    run = Run()
    async with _client(server.url, run) as api:
        await _seed(api)
        # Staleness is not what is tested here: both marks stay fresh the whole test.
        await api.ok("PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, "stale_after_s": "60"})
        await _post_marks(api, run, "60000")
        await _put_book(api, "2990", "3010")
        snapshot = redis_asyncio.Redis.from_url(own_redis.url)
        try:
            assert await snapshot.save()  # the dump it will load when it starts again
        finally:
            await snapshot.aclose()
        await asyncio.to_thread(own_redis.stop)

        await _post_marks(api, run, "60100")
        await _put_book(api, "3090", "3110")

        await asyncio.to_thread(own_redis.start)
        deadline = time.monotonic() + PHASE_DEADLINE_S
        while (await _ready(api))["status"] != "ready":
            assert time.monotonic() < deadline, "readyz never became ready again"
            await asyncio.sleep(0.02)
        mark = await api.ok("GET", "/v1/marks/BTC-PERP")
        book = await api.ok("GET", "/v1/books/ETH-PERP")
        check = await api.ok(
            "POST",
            "/v1/pretrade/check",
            json={"subaccount_id": "sub-cross", "orders": [_order("buy", "60100")]},
        )
    shown = (mark["price"], book["bids"][0][0], check["marks"]["BTC-PERP"]["price"])
    figures.record("mark / book / check price after Redis came back with old data", shown)
    assert shown == ("60100", "3090", "60100"), (mark, book, check["marks"])
    assert check["decision"] == "accept", check["reasons"]
    assert sum(n for status, n in run.statuses.items() if status >= 500) == 0, run.statuses


async def test_a_hung_redis_costs_checks_no_more_than_its_timeout(
    server: ServerProcess, own_redis: RedisServer, figures: Figures
) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP: a hung host, a partition)
    is the outage where timeouts matter. The cache's socket timeout is 0.5 s; checks must keep
    answering without paying it on every call (a check makes several): the median check is
    slowed by less than one timeout. When Redis answers again, checks are judged on the marks
    posted meanwhile, not on what the hung Redis still held."""
    run = Run(stale_after=60.0)  # staleness is the first test's subject, not this one's
    stop = asyncio.Event()
    with redis_sync.Redis.from_url(own_redis.url) as probe:
        pid = int(probe.info("server")["process_id"])
    async with _client(server.url, run) as api:
        await _seed(api)
        await api.ok("PUT", "/v1/instruments/BTC-PERP", json={**BTC_PERP, "stale_after_s": "60"})
        p0 = await _post_marks(api, run, "60000")
        workers = [asyncio.create_task(_stream(api, run, stop, w)) for w in range(WORKERS)]
        try:
            await _until(
                "accepts before the hang",
                lambda: _seen_both(run, "fresh", p0.price) >= PER_PHASE,
                run,
            )
            os.kill(pid, signal.SIGSTOP)
            run.down = time.time()
            try:
                p1 = await _post_marks(api, run, "60100")
                ready = await _ready(api)
                assert ready == {"status": "degraded", "database": "ok", "cache": "degraded"}
                await _until(
                    "answers on the mark posted during the hang",
                    lambda: _seen_both(run, "fresh", p1.price, p1.acked) >= PER_PHASE,
                    run,
                )
            finally:
                os.kill(pid, signal.SIGCONT)
                run.up = time.time()
            deadline = time.monotonic() + PHASE_DEADLINE_S
            while (await _ready(api))["status"] != "ready":
                assert time.monotonic() < deadline, "readyz never became ready again"
                await asyncio.sleep(0.02)
            ready_at = time.time()
            await _until(
                "answers after the hang",
                lambda: _seen_both(run, "fresh", p1.price, ready_at) >= PER_PHASE,
                run,
            )
            p2 = await _post_marks(api, run, "60200")
            await _until(
                "answers on a mark posted after the hang",
                lambda: _seen_both(run, "fresh", p2.price, p2.acked) >= PER_PHASE,
                run,
            )
        finally:
            stop.set()
            await asyncio.gather(*workers)

    for answer in run.answers:
        _verify(run, answer)
    during = [a.latency for a in run.answers if run.down <= a.sent and a.received <= run.up]
    before = _median([a.latency for a in run.answers if a.received < run.down])
    median, worst = _median(during), max(during)
    figures.record("checks answered while Redis hung (all 200)", len(during))
    figures.record(
        "check latency median before / median, slowest while hung (s)",
        f"{before:.3f} / {median:.3f}, {worst:.3f}",
        f"median +{REDIS_TIMEOUT_S}, < {NO_HANG_S}",
    )
    assert sum(n for status, n in run.statuses.items() if status >= 500) == 0, run.statuses
    assert median - before < REDIS_TIMEOUT_S and worst < NO_HANG_S, (before, sorted(during))
