"""Marks and books: written to PostgreSQL and the cache together, read from the cache and,
when it is down or was emptied, from PostgreSQL — judged by the same staleness rules."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import canonical_json
from app.audit.sealer import wake_sealers
from app.audit.service import Actor
from app.auth import service as auth_service
from app.auth.principal import MARKET_WRITERS
from app.auth.service import Caller
from app.core.cache import CacheUnavailable, RateCount, RateWindow
from app.core.config import Settings
from app.core.db import CHECK_COMMAND_TIMEOUT_S, HotDb
from app.core.errors import InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.instruments import repository as instruments_repository
from app.instruments import service as instruments_service
from app.instruments.models import Instrument
from app.marketdata import repository
from app.marketdata.marks import (
    NEVER_US,
    Mark,
    SourceMark,
    Sources,
    TwapState,
    Verdict,
    age_ms,
    is_fresh,
    judge,
    microseconds,
    verdict,
)
from app.marketdata.schemas import BookIn, BookOut, MarkIn, MarkOut, MarksAccepted, SourceOut

log = logging.getLogger("preflight.marketdata")


def marks_key(symbol: str) -> str:
    """A hash: each source's latest value, and the TWAP state under ``TWAP_FIELD``."""
    return f"pf:mark:{symbol}"


TWAP_FIELD = "~twap"
"""Not a source: source names start with a letter or digit (ID_PATTERN)."""


def book_key(symbol: str) -> str:
    return f"pf:book:{symbol}"


def _micros(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _encode(mark: SourceMark) -> str:
    """``{p: price, t: ts in µs, f: funding rate}``, and ``v``: the iv, an option's only (other
    symbols' values are as they were before options)."""
    funding = None if mark.funding_rate is None else str(mark.funding_rate)
    value = {"p": str(mark.price), "t": _micros(mark.ts), "f": funding}
    if mark.iv is not None:
        value["v"] = str(mark.iv)
    return json.dumps(value)


def _decode(source: str, raw: str) -> SourceMark:
    value = json.loads(raw)
    funding = None if value["f"] is None else Decimal(value["f"])
    iv = value.get("v")
    return SourceMark(
        source,
        Decimal(value["p"]),
        _from_micros(value["t"]),
        funding,
        None if iv is None else Decimal(iv),
    )


def _encode_twap(state: TwapState) -> str:
    return json.dumps([state.at_ms, state.last, state.average, state.span_ms])


@dataclass(frozen=True)
class CachedMark:
    sources: list[SourceMark]
    twap: TwapState | None

    @cached_property
    def prepared(self) -> Sources:
        return Sources.of(self.sources)


def decode_mark_hash(fields: Mapping[str, str]) -> CachedMark | None:
    """A symbol's cached hash (None when the cache holds no source for it)."""
    sources = [_decode(source, raw) for source, raw in fields.items() if source != TWAP_FIELD]
    if not sources:
        return None
    raw_twap = fields.get(TWAP_FIELD)
    return CachedMark(sources, None if raw_twap is None else TwapState(*json.loads(raw_twap)))


_decoded_marks: dict[str, tuple[Mapping[str, str], CachedMark | None]] = {}
"""symbol → (the cached hash, its decoding): a mark is decoded once per post, not per check."""


def _decode_kept(symbol: str, fields: Mapping[str, str]) -> CachedMark | None:
    kept = _decoded_marks.get(symbol)
    if kept is not None and kept[0] == fields:
        return kept[1]
    found = decode_mark_hash(fields)
    _decoded_marks[symbol] = (fields, found)
    return found


def _cache_failed(runtime: Runtime, exc: CacheUnavailable) -> None:
    runtime.metrics.dependency_errors.labels("redis").inc()
    log.warning("cache unavailable; using PostgreSQL", extra={"error": str(exc)[:200]})


async def _load_sources(
    db: HotDb, runtime: Runtime, symbols: Sequence[str]
) -> dict[str, CachedMark]:
    """Each symbol's latest value per source and its TWAP state: the cache, else PostgreSQL's
    copy of the sources (without history there is no TWAP to deviate from)."""
    found: dict[str, CachedMark] = {}
    try:
        hashes = await runtime.cache.hgetall_many([marks_key(s) for s in symbols])
        for symbol, fields in zip(symbols, hashes, strict=True):
            cached = decode_mark_hash(fields)
            if cached is not None:
                found[symbol] = cached
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
    found.update(await stored_marks(db, [s for s in symbols if s not in found]))
    return found


async def stored_marks(db: HotDb, symbols: Sequence[str]) -> dict[str, CachedMark]:
    """PostgreSQL's copy of the sources of ``symbols`` and their TWAP states (those the cache
    could not answer)."""
    found: dict[str, CachedMark] = {}
    if symbols:
        twaps = await repository.twap_rows(db, symbols)
        for symbol, source, price, ts, funding, iv in await repository.source_rows(db, symbols):
            found.setdefault(symbol, CachedMark([], twaps.get(symbol))).sources.append(
                SourceMark(source, price, ts, funding, iv)
            )
    return found


@dataclass(frozen=True)
class Thresholds:
    stale_after_s: Decimal
    max_twap_deviation: Decimal


_THRESHOLDS: dict[tuple[int, float, float], tuple[Instrument | None, Thresholds]] = {}
"""A symbol's thresholds by its reference object (loaded once per version and shared) and the
defaults: built once, not once per check and symbol."""


def _thresholds_of(instrument: Instrument | None, runtime: Runtime) -> Thresholds:
    settings = runtime.settings
    key = (id(instrument), settings.default_stale_after_s, settings.default_max_twap_deviation)
    kept = _THRESHOLDS.get(key)
    if kept is not None and kept[0] is instrument:
        return kept[1]
    thresholds = Thresholds(
        instruments_service.stale_after_s(instrument, settings),
        instruments_service.max_twap_deviation(instrument, settings),
    )
    if len(_THRESHOLDS) >= 4096:
        _THRESHOLDS.clear()
    _THRESHOLDS[key] = (instrument, thresholds)
    return thresholds


async def _thresholds(
    session: AsyncSession,
    runtime: Runtime,
    symbols: Sequence[str],
    instruments: Mapping[str, Instrument] | None = None,
) -> dict[str, Thresholds]:
    if instruments is None:
        instruments = await instruments_repository.get_instruments(session, symbols)
    return {symbol: _thresholds_of(instruments.get(symbol), runtime) for symbol in symbols}


def _thresholds_marked(symbol: repository.MarkedSymbol, settings: Settings) -> Thresholds:
    return Thresholds(
        instruments_service.stale_after_or_default(symbol.stale_after_s, settings),
        instruments_service.max_twap_deviation_or_default(symbol.max_twap_deviation, settings),
    )


def _extend_twaps(
    runtime: Runtime,
    stored: Mapping[str, TwapState],
    known: Mapping[str, repository.MarkedSymbol],
    merged: Mapping[tuple[str, str], SourceMark],
    moved: Sequence[str],
    now: datetime,
) -> dict[str, TwapState]:
    """The TWAP states this post extends: by one point, at the post's time, worth the fresh
    consensus then (the mark as a check would judge it now), for each symbol the post ``moved``
    that has a fresh source. ``stored``: the states as stored, row-locked by the caller, so
    concurrent posts of a symbol extend it in turn."""
    now_ms = now.timestamp() * 1000
    window_ms = runtime.settings.twap_window_s * 1000
    extended: dict[str, TwapState] = {}
    for symbol in moved:
        sources = [m for (s, _), m in merged.items() if s == symbol]
        limits = _thresholds_marked(known[symbol], runtime.settings)
        mark = judge(
            symbol, Sources.of(sources), None, now, limits.stale_after_s, limits.max_twap_deviation
        )
        if mark.status == "stale":
            continue  # no fresh consensus: nothing enters the TWAP
        before = stored.get(symbol)
        value = float(mark.price)
        extended[symbol] = (
            TwapState.first(now_ms, value)
            if before is None
            else before.extended(now_ms, value, window_ms)
        )
    return extended


async def post_marks(runtime: Runtime, who: Caller, marks: Sequence[MarkIn]) -> MarksAccepted:
    """Store a post's marks (each source's newest), extend the TWAPs, note the symbols for the
    margin-call sweep and audit the post, in one transaction (on PostgreSQL: one statement
    reads the key's version, the symbols and their TWAP states, locked; one writes); then the
    cache. Margin calls are raised off this request (app/risk/margin_calls.py)."""
    now = utcnow()
    symbols = sorted({m.symbol for m in marks})
    payload = canonical_json({"marks": [m.model_dump(mode="json") for m in marks]})
    deadline = asyncio.get_running_loop().time() + CHECK_COMMAND_TIMEOUT_S
    async with runtime.hot.connect(transaction=True, deadline=deadline) as db:
        # The key as of this write (revoked since the process loaded it: refused), the symbols
        # and their TWAP states locked, in one statement.
        reads = await repository.post_reads(
            db, symbols, None if who.key_token is None else who.principal.key_id
        )
        principal = await auth_service.confirm(db, runtime.resident, who, reads.key_token)
        auth_service.require_role(principal, MARKET_WRITERS, unscoped=True)
        actor = principal.actor
        known = reads.known
        skew_s = runtime.settings.mark_future_skew_s
        for index, mark in enumerate(marks):
            if mark.symbol not in known:
                raise InvalidInput(
                    f"marks[{index}].symbol",
                    f"unknown instrument, asset or underlying {mark.symbol!r}",
                )
            if (mark.ts - now).total_seconds() > skew_s:
                raise InvalidInput(f"marks[{index}].ts", f"is more than {skew_s:g} s in the future")
            kind = known[mark.symbol].kind
            if mark.funding_rate is not None and kind != "perpetual":
                raise InvalidInput(f"marks[{index}].funding_rate", "applies to perpetuals only")
            if mark.iv is None and kind == "option":
                raise InvalidInput(f"marks[{index}].iv", "required on options")
            if mark.iv is not None and kind != "option":
                raise InvalidInput(f"marks[{index}].iv", "applies to options only")

        current = await _load_sources(db, runtime, symbols)
        latest = {(s, m.source): m for s, cached in current.items() for m in cached.sources}
        incoming: dict[tuple[str, str], SourceMark] = {}
        superseded = 0
        for mark in marks:
            key = (mark.symbol, mark.source)
            newer = incoming.get(key) or latest.get(key)
            if newer is not None and newer.ts > mark.ts:
                superseded += 1
                continue
            incoming[key] = SourceMark(mark.source, mark.price, mark.ts, mark.funding_rate, mark.iv)
        merged = {**latest, **incoming}
        moved = sorted({symbol for symbol, _ in incoming})
        stored = reads.twaps
        extended = _extend_twaps(runtime, stored, known, merged, moved, now)
        # The symbols are noted in this transaction, so a committed mark is always swept,
        # whichever process sweeps.
        await repository.write_marks(
            db, [(symbol, m) for (symbol, _), m in incoming.items()], extended, moved, now,
            actor_key_id=actor.key_id, audit_payload=payload,
        )  # fmt: skip
    wake_sealers()  # committed: its audit entry can be linked now
    twaps = {**stored, **extended}
    try:
        # Every source of a touched symbol is written, so a cache that was emptied is refilled.
        await runtime.cache.hset_many(
            [
                (
                    marks_key(symbol),
                    {
                        **{m.source: _encode(m) for (s, _), m in merged.items() if s == symbol},
                        **({TWAP_FIELD: _encode_twap(twaps[symbol])} if symbol in twaps else {}),
                    },
                )
                for symbol in symbols
            ]
        )
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
    cached = await _load_sources(session, runtime, symbols)
    present = [s for s in symbols if s in cached]
    thresholds = await _thresholds(session, runtime, present, instruments)
    return {
        symbol: judge_cached(runtime, symbol, cached[symbol], now, thresholds[symbol])
        for symbol in present
    }


def judge_cached(
    runtime: Runtime, symbol: str, cached: CachedMark, now: datetime, thresholds: Thresholds
) -> Mark:
    window_ms = runtime.settings.twap_window_s * 1000
    recorded = None if cached.twap is None else cached.twap.at(now.timestamp() * 1000, window_ms)
    mark = judge(
        symbol,
        cached.prepared,
        recorded,
        now,
        thresholds.stale_after_s,
        thresholds.max_twap_deviation,
    )
    runtime.metrics.mark_ages.newest_us[symbol] = cached.prepared.newest_us
    return mark


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
        iv=mark.iv,
        sources=[
            SourceOut(
                source=s.source, price=s.price, ts=s.ts, age_ms=s.age_ms, fresh=s.fresh, iv=s.iv
            )
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


async def put_book(runtime: Runtime, actor: Actor, symbol: str, body: BookIn) -> BookOut:
    """Store a book (unless the stored one is newer), audit it, cache it and answer it: one
    statement on PostgreSQL, no read."""
    now = utcnow()
    if (body.ts - now).total_seconds() > runtime.settings.mark_future_skew_s:
        raise InvalidInput(
            "ts", f"is more than {runtime.settings.mark_future_skew_s:g} s in the future"
        )
    bids = [[str(p), str(s)] for p, s in body.bids]
    asks = [[str(p), str(s)] for p, s in body.asks]
    payload = canonical_json({"symbol": symbol, **body.model_dump(mode="json")})
    async with runtime.hot.connect() as db:
        stored = await repository.store_book(
            db, symbol, bids, asks, body.ts, actor_key_id=actor.key_id, audit_payload=payload,
            at=now,
        )  # fmt: skip
    if stored is None:
        raise NotFound(f"instrument {symbol!r} not found")
    wake_sealers()  # committed: its audit entry can be linked now
    if not stored.replaced:  # a late book: the newer one stays, and is the answer
        async with runtime.session_factory() as session:
            return await book_out(session, runtime, symbol)
    try:
        await runtime.cache.set_many(
            [(book_key(symbol), json.dumps({"b": bids, "a": asks, "t": _micros(body.ts)}))]
        )
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
    stale_after = instruments_service.stale_after_or_default(stored.stale_after_s, runtime.settings)
    return _book_out(OrderBook(symbol, list(body.bids), list(body.asks), body.ts), stale_after)


async def get_book(session: AsyncSession, runtime: Runtime, symbol: str) -> OrderBook | None:
    try:
        [raw] = await runtime.cache.get_many([book_key(symbol)])
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
    return _book_out(book, instruments_service.stale_after_s(instrument, runtime.settings))


def _book_out(book: OrderBook, stale_after: Decimal) -> BookOut:
    now = utcnow()
    return BookOut(
        symbol=book.symbol,
        bids=book.bids,
        asks=book.asks,
        ts=book.ts,
        age_ms=age_ms(now, book.ts),
        status="fresh" if is_fresh(now, book.ts, stale_after) else "stale",
    )


# --- the check's read --------------------------------------------------------------------------


_VERDICTS: dict[str, tuple[CachedMark, Instrument | None, Settings, int, Verdict]] = {}
"""symbol → (what it was judged from, with which instrument and settings (its thresholds), until
when the verdict holds, the verdict): a mark is judged once per post while nothing but the time
moves (``verdict``)."""


@dataclass(frozen=True)
class CheckMarket:
    marks: dict[str, Verdict]
    """Symbols never marked are absent; ages are the check's to compute from its ``now``."""
    books: dict[str, OrderBook]
    """Instruments without a book are absent."""
    rate: RateWindow | None
    """None when the cache could not count."""


_parsed_books: dict[str, tuple[str, OrderBook]] = {}
"""symbol → (the cached text, its parse): a book is parsed once per update, not per check."""


def _parse_book(symbol: str, raw: str) -> OrderBook:
    kept = _parsed_books.get(symbol)
    if kept is not None and kept[0] == raw:
        return kept[1]
    value = json.loads(raw)
    book = OrderBook(
        symbol,
        [(Decimal(p), Decimal(s)) for p, s in value["b"]],
        [(Decimal(p), Decimal(s)) for p, s in value["a"]],
        _from_micros(value["t"]),
    )
    _parsed_books[symbol] = (raw, book)
    return book


async def read_for_check(
    db: HotDb,
    runtime: Runtime,
    symbols: Sequence[str],
    books_of: Sequence[str],
    rate: RateCount | None,
    instruments: Mapping[str, Instrument],
    now: datetime,
) -> CheckMarket:
    """Marks of ``symbols``, books of ``books_of`` and the order-rate window (counted, and
    added to where the caps allow) in one cache round trip; PostgreSQL answers what the cache
    lacks or, while it is down, everything but the window."""
    cached: dict[str, CachedMark] = {}
    books: dict[str, OrderBook] = {}
    window = None
    kept = runtime.kept
    keys = [*(marks_key(s) for s in symbols), *(book_key(s) for s in books_of)]
    known, values = kept.sequence, kept.values  # as they are now: another check may move them
    now_us = microseconds(now)
    judged: dict[str, Verdict] | None = None
    try:
        read = await runtime.cache.read_for_check(
            keys[: len(symbols)],
            keys[len(symbols) :],
            rate,
            known,
            [key not in values for key in keys],
        )
        if not read.unchanged and read.sequence > kept.sequence:
            kept.sequence, kept.values = read.sequence, {}  # what was kept is older
        if read.unchanged:
            judged = _kept_verdicts(symbols, read.sequence, instruments, runtime, now_us)
        # Kept only under the sequence it was read at (a read that overtook this one moved it).
        keep = kept.values if read.sequence and kept.sequence == read.sequence else {}
        if judged is None:
            for key, symbol, fields in zip(keys[: len(symbols)], symbols, read.hashes, strict=True):
                found = (
                    values[key]
                    if fields is None
                    else keep.setdefault(key, _decode_kept(symbol, fields))
                )
                if found is not None:
                    cached[symbol] = cast(CachedMark, found)
        for key, symbol, raw in zip(keys[len(symbols) :], books_of, read.strings, strict=True):
            if read.unchanged and key in values:
                book = values[key]
            else:
                book = keep.setdefault(key, None if raw is None else _parse_book(symbol, raw))
            if book is not None:
                books[symbol] = cast(OrderBook, book)
        window = read.rate
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
        read = None
    unbooked = [s for s in books_of if s not in books]
    if unbooked:
        for symbol, bids, asks, ts in await repository.book_rows(db, unbooked):
            books[symbol] = OrderBook(
                symbol,
                [(Decimal(p), Decimal(s)) for p, s in bids],
                [(Decimal(p), Decimal(s)) for p, s in asks],
                ts,
            )
    if judged is not None:
        return CheckMarket(judged, books, window)
    from_cache = len(cached) == len(symbols)
    cached.update(await stored_marks(db, [s for s in symbols if s not in cached]))
    window_ms = runtime.settings.twap_window_s * 1000
    newest = runtime.metrics.mark_ages.newest_us
    marks = {}
    holds_until = NEVER_US
    for symbol, found in cached.items():
        instrument = instruments.get(symbol)
        kept_verdict = _VERDICTS.get(symbol)
        if (
            kept_verdict is not None
            and kept_verdict[0] is found
            and kept_verdict[1] is instrument
            and kept_verdict[2] is runtime.settings
            and now_us <= kept_verdict[3]
        ):
            marks[symbol] = kept_verdict[4]
            until = kept_verdict[3]
        else:
            thresholds = _thresholds_of(instrument, runtime)
            verdict_now, until = verdict(
                found.prepared, found.twap, window_ms, now_us, thresholds.stale_after_s,
                thresholds.max_twap_deviation,
            )  # fmt: skip
            if len(_VERDICTS) >= 4096:
                _VERDICTS.clear()
            _VERDICTS[symbol] = (found, instrument, runtime.settings, until, verdict_now)
            marks[symbol] = verdict_now
        holds_until = min(holds_until, until)
        newest[symbol] = found.prepared.newest_us
    if read is not None and read.sequence and from_cache:
        if len(_VERDICT_SETS) >= 4096:
            _VERDICT_SETS.clear()
        _VERDICT_SETS[tuple(symbols)] = (
            read.sequence, instruments, runtime.settings, holds_until, marks
        )  # fmt: skip
    return CheckMarket(marks, books, window)


_VERDICT_SETS: dict[
    tuple[str, ...], tuple[int, Mapping[str, Instrument], Settings, int, dict[str, Verdict]]
] = {}
"""The verdicts of a set of symbols as judged at a cache write sequence, with the instruments
and settings they were judged under and until when all of them hold (``verdict``): a check
that finds the cache unchanged since reuses them whole, not symbol by symbol."""


def _kept_verdicts(
    symbols: Sequence[str],
    sequence: int,
    instruments: Mapping[str, Instrument],
    runtime: Runtime,
    now_us: int,
) -> dict[str, Verdict] | None:
    kept = _VERDICT_SETS.get(tuple(symbols))
    if (
        kept is not None
        and kept[0] == sequence
        and kept[1] is instruments
        and kept[2] is runtime.settings
        and now_us <= kept[3]
    ):
        return kept[4]
    return None


async def forget_orders(runtime: Runtime, keys: Sequence[str], members: Sequence[str]) -> None:
    """Take back the orders a check counted in the rate windows and then rejected."""
    try:
        await runtime.cache.zrem_many([(key, members) for key in keys])
    except CacheUnavailable as exc:
        _cache_failed(runtime, exc)
