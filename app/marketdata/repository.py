"""Marks and books in PostgreSQL: the last value per source, so a cache restart loses nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import versions
from app.core.db import HotDb, dialect_name
from app.marketdata.marks import SourceMark, TwapState
from app.marketdata.models import Book, MarkSource, MarkTwap, MovedMark


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    return dialect.insert(table)


async def upsert_marks(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace each (symbol, source), keeping whichever value is newer."""
    if not rows:
        return
    statement = _insert(session, MarkSource).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=[MarkSource.symbol, MarkSource.source],
        set_={
            "price": statement.excluded.price,
            "ts": statement.excluded.ts,
            "funding_rate": statement.excluded.funding_rate,
            "iv": statement.excluded.iv,
        },
        where=statement.excluded.ts >= MarkSource.ts,
    )
    await session.execute(statement)


async def _twaps(session: AsyncSession, symbols: Sequence[str]) -> dict[str, TwapState]:
    """The TWAP states of ``symbols`` (SQLite's ``post_reads``: its write lock serialises)."""
    query = select(MarkTwap).where(MarkTwap.symbol.in_(sorted(symbols))).order_by(MarkTwap.symbol)
    return {r.symbol: _twap(r) for r in (await session.scalars(query)).all()}


def _twap(row: MarkTwap) -> TwapState:
    return TwapState(row.at_ms, row.last, row.average, row.span_ms)


async def put_twaps(session: AsyncSession, states: dict[str, TwapState]) -> None:
    if not states:
        return
    statement = _insert(session, MarkTwap).values(
        [
            {
                "symbol": symbol,
                "at_ms": state.at_ms,
                "last": state.last,
                "average": state.average,
                "span_ms": state.span_ms,
            }
            for symbol, state in sorted(states.items())
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[MarkTwap.symbol],
        set_={
            "at_ms": statement.excluded.at_ms,
            "last": statement.excluded.last,
            "average": statement.excluded.average,
            "span_ms": statement.excluded.span_ms,
        },
    )
    await session.execute(statement)


async def twap_rows(db: HotDb, symbols: Sequence[str]) -> dict[str, TwapState]:
    """The stored TWAP states of ``symbols`` (the check's fallback when the cache lacks them)."""
    if isinstance(db, AsyncSession):
        rows = await db.scalars(select(MarkTwap).where(MarkTwap.symbol.in_(list(symbols))))
        return {r.symbol: _twap(r) for r in rows}
    found = await db.fetch(
        "SELECT symbol, at_ms, last, average, span_ms FROM mark_twaps "
        "WHERE symbol = ANY($1::text[])",
        list(symbols),
    )
    return {r[0]: TwapState(r[1], r[2], r[3], r[4]) for r in found}


@dataclass(frozen=True)
class MarkedSymbol:
    """What a mark post needs to know of a symbol it marks."""

    kind: str | None
    """The instrument's kind; None for a collateral asset or an underlying's index."""
    stale_after_s: Decimal | None
    max_twap_deviation: Decimal | None


_NO_KIND = MarkedSymbol(None, None, None)
"""An asset or an underlying's index: no kind, the default thresholds."""


async def _marked_symbols(session: AsyncSession, symbols: Sequence[str]) -> dict[str, MarkedSymbol]:
    """The instruments, assets and underlyings (indices: the ``underlying`` of an instrument)
    among ``symbols`` (an instrument wins over an asset or underlying of the same name); the
    others are absent (SQLite's ``post_reads``)."""
    from app.instruments import repository as instruments_repository
    from app.instruments.models import Instrument

    instruments = await instruments_repository.get_instruments(session, symbols)
    found = {
        s: MarkedSymbol(i.kind, i.stale_after_s, i.max_twap_deviation)
        for s, i in instruments.items()
    }
    for symbol in symbols:
        if symbol not in found and await instruments_repository.get_asset(session, symbol):
            found[symbol] = _NO_KIND
    rest = [s for s in symbols if s not in found]
    if rest:
        query = select(Instrument.underlying).where(Instrument.underlying.in_(rest)).distinct()
        found.update(dict.fromkeys(await session.scalars(query), _NO_KIND))
    return found


@dataclass(frozen=True)
class PostReads:
    """What a mark post reads before it writes, in its transaction."""

    key_token: int | None
    """The poster's key's version token now (None: no key, or no row yet)."""
    known: dict[str, MarkedSymbol]
    """The instruments, assets and underlyings' indices among the post's symbols (an
    instrument wins over an asset or index of the same name); the others are absent."""
    twaps: dict[str, TwapState]
    """The TWAP states of the post's symbols, row-locked until commit (PostgreSQL): two posts
    of one symbol extend it one after the other, whichever process takes them."""


_POST_READS_SQL = """
WITH locked AS (
  SELECT symbol, at_ms, last, average, span_ms FROM mark_twaps
   WHERE symbol = ANY($1::text[]) ORDER BY symbol FOR UPDATE
)
SELECT 0, symbol, NULL::text, NULL::numeric, NULL::numeric, at_ms, last, average, span_ms,
       NULL::bigint FROM locked
UNION ALL SELECT 1, symbol, kind, stale_after_s, max_twap_deviation, NULL, NULL, NULL, NULL, NULL
  FROM instruments WHERE symbol = ANY($1::text[])
UNION ALL SELECT 2, symbol, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM assets WHERE symbol = ANY($1::text[])
UNION ALL SELECT 2, u, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM unnest($1::text[]) AS u
 WHERE EXISTS (SELECT 1 FROM instruments WHERE underlying = u)
UNION ALL SELECT 3, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, token
  FROM state_versions WHERE scope = 'key' AND id = $2
"""


async def post_reads(db: HotDb, symbols: Sequence[str], key_id: str | None) -> PostReads:
    """The key's token, the symbols marked and their TWAP states row-locked: on PostgreSQL one
    statement (a post of N symbols waits for one round trip, not three)."""
    if isinstance(db, AsyncSession):  # SQLite: one process, BEGIN IMMEDIATE serialises posts
        keys = [] if key_id is None else [("key", key_id)]
        token = (await versions.tokens(db, keys)).get(("key", key_id or ""))
        return PostReads(token, await _marked_symbols(db, symbols), await _twaps(db, symbols))
    token, known, twaps = None, {}, {}
    for (
        part,
        symbol,
        kind,
        stale,
        deviation,
        at_ms,
        last,
        average,
        span_ms,
        key_token,
    ) in await db.fetch(_POST_READS_SQL, sorted(symbols), key_id or ""):
        if part == 0:
            twaps[symbol] = TwapState(at_ms, last, average, span_ms)
        elif part == 3:
            token = int(key_token)
        elif symbol not in known or kind is not None:  # an instrument wins over the rest
            known[symbol] = MarkedSymbol(kind, stale, deviation)
    return PostReads(token, known, twaps)


_WRITE_MARKS_SQL = """
WITH marks_in AS (
  INSERT INTO marks (symbol, source, price, ts, funding_rate, iv)
  SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::timestamptz[], $5::numeric[],
                       $15::numeric[])
  ON CONFLICT (symbol, source) DO UPDATE
   SET price = EXCLUDED.price, ts = EXCLUDED.ts, funding_rate = EXCLUDED.funding_rate,
       iv = EXCLUDED.iv
   WHERE EXCLUDED.ts >= marks.ts
  RETURNING 1
), twaps_in AS (
  INSERT INTO mark_twaps (symbol, at_ms, last, average, span_ms)
  SELECT * FROM unnest($6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[])
  ON CONFLICT (symbol) DO UPDATE
   SET at_ms = EXCLUDED.at_ms, last = EXCLUDED.last, average = EXCLUDED.average,
       span_ms = EXCLUDED.span_ms
  RETURNING 1
), moved_in AS (
  INSERT INTO marks_moved (symbol, moved_at) SELECT unnest($11::text[]), $12
  ON CONFLICT (symbol) DO UPDATE SET moved_at = EXCLUDED.moved_at
  RETURNING 1
), audited AS (
  INSERT INTO audit_log (kind, actor_key_id, payload, created_at) VALUES ('marks', $13, $14, $12)
  RETURNING 1
)
SELECT 1
"""


async def write_marks(
    db: HotDb,
    marks: Sequence[tuple[str, SourceMark]],
    twaps: dict[str, TwapState],
    moved: Sequence[str],
    at: datetime,
    *,
    actor_key_id: str | None,
    audit_payload: str,
) -> None:
    """A mark post's writes: each (symbol, source) unless a newer value is stored, the extended
    TWAP states, the symbols noted for the sweep and the post's audit entry — one statement on
    PostgreSQL, in the caller's transaction."""
    if isinstance(db, AsyncSession):
        from app.audit import service as audit

        await upsert_marks(
            db,
            [
                {"symbol": symbol, "source": m.source, "price": m.price, "ts": m.ts,
                 "funding_rate": m.funding_rate, "iv": m.iv}
                for symbol, m in marks
            ],
        )  # fmt: skip
        await put_twaps(db, twaps)
        await mark_moved(db, moved, at)
        await audit.record_text(db, "marks", audit.Actor(actor_key_id), audit_payload)
        return
    states = sorted(twaps.items())
    await db.execute(
        _WRITE_MARKS_SQL,
        [symbol for symbol, _ in marks],
        [m.source for _, m in marks],
        [m.price for _, m in marks],
        [m.ts for _, m in marks],
        [m.funding_rate for _, m in marks],
        [symbol for symbol, _ in states],
        [t.at_ms for _, t in states],
        [t.last for _, t in states],
        [t.average for _, t in states],
        [t.span_ms for _, t in states],
        sorted(moved),
        at,
        actor_key_id,
        audit_payload,
        [m.iv for _, m in marks],
    )


async def mark_moved(session: AsyncSession, symbols: Sequence[str], at: datetime) -> None:
    """Note ``symbols`` for the next margin-call sweep."""
    if not symbols:
        return
    statement = _insert(session, MovedMark).values(
        [{"symbol": symbol, "moved_at": at} for symbol in sorted(symbols)]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[MovedMark.symbol], set_={"moved_at": statement.excluded.moved_at}
    )
    await session.execute(statement)


async def any_moved(db: HotDb) -> bool:
    if isinstance(db, AsyncSession):
        return (await db.scalar(select(MovedMark.symbol).limit(1))) is not None
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM marks_moved)"))


async def noted_moved(session: AsyncSession) -> list[tuple[str, datetime]]:
    """Every symbol noted for the sweep, with when it was noted (read, not locked: posts keep
    noting while a sweep runs)."""
    rows = await session.execute(select(MovedMark.symbol, MovedMark.moved_at))
    return sorted((symbol, moved_at) for symbol, moved_at in rows.all())


async def forget_moved(session: AsyncSession, swept: Sequence[tuple[str, datetime]]) -> None:
    """Forget the notes a sweep took care of: each one only if not noted again since."""
    if dialect_name(session) == "postgresql":
        await session.execute(
            text(
                "DELETE FROM marks_moved m USING unnest(CAST(:symbols AS TEXT[]), "
                "CAST(:noted AS TIMESTAMPTZ[])) AS t(symbol, moved_at) "
                "WHERE m.symbol = t.symbol AND m.moved_at = t.moved_at"
            ),
            {"symbols": [s for s, _ in swept], "noted": [at for _, at in swept]},
        )
        return
    for symbol, moved_at in swept:  # SQLite: a demo's handful
        await session.execute(
            delete(MovedMark).where(MovedMark.symbol == symbol, MovedMark.moved_at == moved_at)
        )


async def marks_for(session: AsyncSession, symbols: Sequence[str]) -> list[MarkSource]:
    query = select(MarkSource).where(MarkSource.symbol.in_(list(symbols)))
    return list((await session.scalars(query)).all())


async def all_marks(session: AsyncSession) -> list[MarkSource]:
    return list((await session.scalars(select(MarkSource).order_by(MarkSource.symbol))).all())


async def upsert_book(session: AsyncSession, row: dict[str, Any]) -> None:
    statement = _insert(session, Book).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=[Book.symbol],
        set_={
            "bids": statement.excluded.bids,
            "asks": statement.excluded.asks,
            "ts": statement.excluded.ts,
        },
        where=statement.excluded.ts >= Book.ts,
    )
    await session.execute(statement)


_STORE_BOOK_SQL = """
WITH instrument AS (SELECT symbol, stale_after_s FROM instruments WHERE symbol = $1),
stored AS (
  INSERT INTO books (symbol, bids, asks, ts)
  SELECT symbol, $2::text::jsonb, $3::text::jsonb, $4 FROM instrument
  ON CONFLICT (symbol) DO UPDATE SET bids = EXCLUDED.bids, asks = EXCLUDED.asks, ts = EXCLUDED.ts
   WHERE EXCLUDED.ts >= books.ts
  RETURNING 1
),
audited AS (
  INSERT INTO audit_log (kind, actor_key_id, payload, created_at)
  SELECT 'book', $5, $6, $7 FROM instrument
  RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM instrument), EXISTS (SELECT 1 FROM stored),
       (SELECT stale_after_s FROM instrument)
"""


@dataclass(frozen=True)
class StoredBook:
    replaced: bool
    """False: the stored book is newer than this one and was kept."""
    stale_after_s: Decimal | None
    """The instrument's own (None: the default)."""


async def store_book(
    db: HotDb,
    symbol: str,
    bids: list[list[str]],
    asks: list[list[str]],
    ts: datetime,
    *,
    actor_key_id: str | None,
    audit_payload: str,
    at: datetime,
) -> StoredBook | None:
    """A book replacing the stored one unless that one is newer, and its audit entry: one
    statement on PostgreSQL. None when ``symbol`` is no instrument (nothing written)."""
    if isinstance(db, AsyncSession):
        from app.audit import service as audit
        from app.instruments.models import Instrument

        instrument = await db.get(Instrument, symbol)
        if instrument is None:
            return None
        older = await db.scalar(select(Book.ts).where(Book.symbol == symbol))
        await upsert_book(db, {"symbol": symbol, "bids": bids, "asks": asks, "ts": ts})
        await audit.record_text(db, "book", audit.Actor(actor_key_id), audit_payload)
        return StoredBook(older is None or ts >= older, instrument.stale_after_s)
    exists, replaced, stale_after_s = await db.fetchrow(
        _STORE_BOOK_SQL, symbol, json.dumps(bids), json.dumps(asks), ts, actor_key_id,
        audit_payload, at,
    )  # fmt: skip
    return StoredBook(replaced, stale_after_s) if exists else None


async def get_book(session: AsyncSession, symbol: str) -> Book | None:
    return await session.get(Book, symbol)


async def source_rows(
    db: HotDb, symbols: Sequence[str]
) -> list[tuple[str, str, Decimal, datetime, Decimal | None, Decimal | None]]:
    """``(symbol, source, price, ts, funding_rate, iv)`` of ``symbols``: the check's fallback
    when the cache cannot answer."""
    if isinstance(db, AsyncSession):
        return [
            (r.symbol, r.source, r.price, r.ts, r.funding_rate, r.iv)
            for r in await marks_for(db, symbols)
        ]
    rows = await db.fetch(
        "SELECT symbol, source, price, ts, funding_rate, iv FROM marks "
        "WHERE symbol = ANY($1::text[])",
        list(symbols),
    )
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


async def book_rows(
    db: HotDb, symbols: Sequence[str]
) -> list[tuple[str, list[Any], list[Any], datetime]]:
    """``(symbol, bids, asks, ts)`` of the stored books of ``symbols``."""
    if isinstance(db, AsyncSession):
        rows = await db.scalars(select(Book).where(Book.symbol.in_(list(symbols))))
        return [(r.symbol, r.bids, r.asks, r.ts) for r in rows]
    found = await db.fetch(
        "SELECT symbol, bids::text, asks::text, ts FROM books WHERE symbol = ANY($1::text[])",
        list(symbols),
    )
    return [(r[0], json.loads(r[1]), json.loads(r[2]), r[3]) for r in found]
