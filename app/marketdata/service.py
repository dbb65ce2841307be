"""Marks and books: written to PostgreSQL and the cache together, read from the cache and,
when it is down or was emptied, from PostgreSQL — judged by the same staleness rules."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.audit.service import Actor
from app.core.cache import CacheUnavailable
from app.core.errors import InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.instruments import repository as instruments_repository
from app.instruments import service as instruments_service
from app.instruments.models import Instrument
from app.marketdata import repository
from app.marketdata.marks import Mark, SourceMark, age_ms, judge, point_at
from app.marketdata.schemas import BookIn, BookOut, MarkIn, MarkOut, MarksAccepted, SourceOut

log = logging.getLogger("preflight.marketdata")


def _marks_key(symbol: str) -> str:
    return f"pf:mark:{symbol}"


def _history_key(symbol: str) -> str:
    return f"pf:history:{symbol}"


def _book_key(symbol: str) -> str:
    return f"pf:book:{symbol}"


def _micros(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _encode(mark: SourceMark) -> str:
    funding = None if mark.funding_rate is None else str(mark.funding_rate)
    return json.dumps({"p": str(mark.price), "t": _micros(mark.ts), "f": funding})


def _decode(source: str, raw: str) -> SourceMark:
    value = json.loads(raw)
    funding = None if value["f"] is None else Decimal(value["f"])
    return SourceMark(source, Decimal(value["p"]), _from_micros(value["t"]), funding)


def _cache_failed(runtime: Runtime, exc: CacheUnavailable) -> None:
    runtime.metrics.dependency_errors.labels("redis").inc()
    log.warning("cache unavailable; using PostgreSQL", extra={"error": str(exc)[:200]})


async def _load_sources(
    session: AsyncSession, runtime: Runtime, symbols: Sequence[str]
) -> dict[str, list[SourceMark]]:
    """Each symbol's latest value per source: the cache, else PostgreSQL's copy."""
    found: dict[str, list[SourceMark]] = {}
    try:
        hashes = await runtime.cache.hgetall_many([_marks_key(s) for s in symbols])
        for symbol, fields in zip(symbols, hashes, strict=True):
            if fields:
                found[symbol] = [_decode(source, raw) for source, raw in fields.items()]
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
    missing = [s for s in symbols if s not in found]
    if missing:
        for row in await repository.marks_for(session, missing):
            found.setdefault(row.symbol, []).append(
                SourceMark(row.source, row.price, row.ts, row.funding_rate)
            )
    return found


async def _load_history(
    runtime: Runtime, symbols: Sequence[str], now: datetime
) -> dict[str, list[tuple[float, float]]]:
    since = now.timestamp() * 1000 - 2 * runtime.settings.twap_window_s * 1000
    try:
        members = await runtime.cache.zrange_many([_history_key(s) for s in symbols], since)
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
        return {}
    history: dict[str, list[tuple[float, float]]] = {}
    for symbol, items in zip(symbols, members, strict=True):
        parts = (member.split("|") for member in items)
        history[symbol] = [(float(ms), float(value)) for ms, value in parts]
    return history


@dataclass(frozen=True)
class _Thresholds:
    stale_after_s: Decimal
    max_twap_deviation: Decimal


async def _thresholds(
    session: AsyncSession,
    runtime: Runtime,
    symbols: Sequence[str],
    instruments: Mapping[str, Instrument] | None = None,
) -> dict[str, _Thresholds]:
    if instruments is None:
        instruments = await instruments_repository.get_instruments(session, symbols)
    return {
        symbol: _Thresholds(
            instruments_service.stale_after_s(instruments.get(symbol), runtime.settings),
            instruments_service.max_twap_deviation(instruments.get(symbol), runtime.settings),
        )
        for symbol in symbols
    }


async def audit_marks(session: AsyncSession, actor: Actor, marks: Sequence[MarkIn]) -> None:
    """The audit entry of a mark post. Called last in the request: appending takes the chain's
    lock until commit, and nothing else should run while it is held."""
    await audit.record(
        session, "marks", actor, {"marks": [m.model_dump(mode="json") for m in marks]}
    )


async def post_marks(
    session: AsyncSession, runtime: Runtime, marks: Sequence[MarkIn]
) -> MarksAccepted:
    now = utcnow()
    symbols = sorted({m.symbol for m in marks})
    instruments = await instruments_repository.get_instruments(session, symbols)
    assets = {s for s in symbols if s not in instruments}
    for asset in list(assets):
        if await instruments_repository.get_asset(session, asset) is None:
            assets.discard(asset)
    skew_s = runtime.settings.mark_future_skew_s
    for index, mark in enumerate(marks):
        if mark.symbol not in instruments and mark.symbol not in assets:
            raise InvalidInput(
                f"marks[{index}].symbol", f"unknown instrument or asset {mark.symbol!r}"
            )
        if (mark.ts - now).total_seconds() > skew_s:
            raise InvalidInput(f"marks[{index}].ts", f"is more than {skew_s:g} s in the future")
        if mark.funding_rate is not None:
            instrument = instruments.get(mark.symbol)
            if instrument is None or instrument.kind != "perpetual":
                raise InvalidInput(f"marks[{index}].funding_rate", "applies to perpetuals only")

    current = await _load_sources(session, runtime, symbols)
    latest = {(s, m.source): m for s, ms in current.items() for m in ms}
    incoming: dict[tuple[str, str], SourceMark] = {}
    superseded = 0
    for mark in marks:
        key = (mark.symbol, mark.source)
        known = incoming.get(key) or latest.get(key)
        if known is not None and known.ts > mark.ts:
            superseded += 1
            continue
        incoming[key] = SourceMark(mark.source, mark.price, mark.ts, mark.funding_rate)

    await repository.upsert_marks(
        session,
        [
            {
                "symbol": symbol,
                "source": m.source,
                "price": m.price,
                "ts": m.ts,
                "funding_rate": m.funding_rate,
            }
            for (symbol, _), m in incoming.items()
        ],
    )
    merged = {**latest, **incoming}
    keep_after_ms = now.timestamp() * 1000 - 2 * runtime.settings.twap_window_s * 1000
    thresholds = await _thresholds(session, runtime, symbols)
    points: dict[str, dict[str, float]] = {}
    for symbol in symbols:
        arrived = [m.ts for (s, _), m in incoming.items() if s == symbol]
        if not arrived:
            continue
        at = max(arrived)
        sources = [m for (s, _), m in merged.items() if s == symbol]
        value = point_at(sources, at, thresholds[symbol].stale_after_s)
        if value is not None:
            ms = at.timestamp() * 1000
            points[_history_key(symbol)] = {f"{ms:.0f}|{value}": ms}
    try:
        # Every source of a touched symbol is written, so a cache that was emptied is refilled.
        await runtime.cache.hset_many(
            [
                (
                    _marks_key(symbol),
                    {m.source: _encode(m) for (s, _), m in merged.items() if s == symbol},
                )
                for symbol in symbols
            ]
        )
        await runtime.cache.zadd_many(list(points.items()), keep_after=keep_after_ms)
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
    return MarksAccepted(accepted=len(marks) - superseded, superseded=superseded)


async def current_marks(
    session: AsyncSession,
    runtime: Runtime,
    symbols: Sequence[str],
    instruments: Mapping[str, Instrument] | None = None,
) -> dict[str, Mark]:
    """The judged mark of each symbol that has one (symbols never marked are absent).
    ``instruments``, when the caller has them, saves reading them again."""
    now = utcnow()
    symbols = sorted(set(symbols))
    sources = await _load_sources(session, runtime, symbols)
    present = [s for s in symbols if s in sources]
    history = await _load_history(runtime, present, now)
    thresholds = await _thresholds(session, runtime, present, instruments)
    result = {}
    for symbol in present:
        mark = judge(
            symbol,
            sources[symbol],
            history.get(symbol, []),
            now,
            thresholds[symbol].stale_after_s,
            thresholds[symbol].max_twap_deviation,
            runtime.settings.twap_window_s * 1000,
        )
        runtime.metrics.mark_age.labels(symbol).set(mark.age_ms / 1000)
        result[symbol] = mark
    return result


async def all_marks(session: AsyncSession, runtime: Runtime) -> list[Mark]:
    symbols = sorted({row.symbol for row in await repository.all_marks(session)})
    return list((await current_marks(session, runtime, symbols)).values())


async def get_mark(session: AsyncSession, runtime: Runtime, symbol: str) -> Mark:
    marks = await current_marks(session, runtime, [symbol])
    if symbol not in marks:
        raise NotFound(f"no mark for {symbol!r}")
    return marks[symbol]


def mark_out(mark: Mark) -> MarkOut:
    return MarkOut(
        symbol=mark.symbol,
        price=mark.price,
        twap=mark.twap,
        status=mark.status,
        age_ms=mark.age_ms,
        funding_rate=mark.funding_rate,
        sources=[
            SourceOut(source=s.source, price=s.price, ts=s.ts, age_ms=s.age_ms, fresh=s.fresh)
            for s in mark.sources
        ],
    )


# --- books -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderBook:
    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    ts: datetime


async def _instrument(session: AsyncSession, symbol: str) -> Instrument:
    instrument = await instruments_repository.get_instrument(session, symbol)
    if instrument is None:
        raise NotFound(f"instrument {symbol!r} not found")
    return instrument


async def put_book(
    session: AsyncSession, runtime: Runtime, actor: Actor, symbol: str, body: BookIn
) -> OrderBook:
    await _instrument(session, symbol)
    if (body.ts - utcnow()).total_seconds() > runtime.settings.mark_future_skew_s:
        raise InvalidInput(
            "ts", f"is more than {runtime.settings.mark_future_skew_s:g} s in the future"
        )
    bids = [[str(p), str(s)] for p, s in body.bids]
    asks = [[str(p), str(s)] for p, s in body.asks]
    await repository.upsert_book(
        session, {"symbol": symbol, "bids": bids, "asks": asks, "ts": body.ts}
    )
    await audit.record(session, "book", actor, {"symbol": symbol, **body.model_dump(mode="json")})
    try:
        await runtime.cache.set_many(
            [(_book_key(symbol), json.dumps({"b": bids, "a": asks, "t": _micros(body.ts)}))]
        )
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
    return OrderBook(symbol, list(body.bids), list(body.asks), body.ts)


async def get_book(session: AsyncSession, runtime: Runtime, symbol: str) -> OrderBook | None:
    try:
        [raw] = await runtime.cache.get_many([_book_key(symbol)])
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
        raw = None
    if raw is not None:
        value = json.loads(raw)
        bids, asks, ts = value["b"], value["a"], _from_micros(value["t"])
    else:
        row = await repository.get_book(session, symbol)
        if row is None:
            return None
        bids, asks, ts = row.bids, row.asks, row.ts
    return OrderBook(
        symbol,
        [(Decimal(p), Decimal(s)) for p, s in bids],
        [(Decimal(p), Decimal(s)) for p, s in asks],
        ts,
    )


async def book_out(session: AsyncSession, runtime: Runtime, symbol: str) -> BookOut:
    instrument = await _instrument(session, symbol)
    book = await get_book(session, runtime, symbol)
    if book is None:
        raise NotFound(f"no book for {symbol!r}")
    age = age_ms(utcnow(), book.ts)
    fresh = age <= instruments_service.stale_after_s(instrument, runtime.settings) * 1000
    return BookOut(
        symbol=symbol,
        bids=book.bids,
        asks=book.asks,
        ts=book.ts,
        age_ms=age,
        status="fresh" if fresh else "stale",
    )
