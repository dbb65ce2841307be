"""The whole book kept resident per process (design note, Resident, versioned state): every
subaccount's engine rows — positions, balances and chosen leverage as floats — under the version
token it was loaded at (app/core/versions.py).

A whole-book view reads every subaccount's token in one statement and reloads only the
subaccounts whose token moved (their row, and their engine rows in one statement); the rows of
the others are already joined into arrays. So a
view that starts after an acknowledged write sees it, whichever process wrote, without reading
every position row per request. Marks, instruments and assets are not kept here: each view
prices the rows afresh through instrument codes (one value per instrument, fanned out by numpy).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts.models import Subaccount
from app.core.db import dialect_name
from app.core.runtime import Runtime

_POSITION_COLUMNS = 5
"""A block's position rows: instrument code, size, entry price, isolated margin, leverage."""
_BALANCE_COLUMNS = 2
"""A block's balance rows: asset code, amount."""


class Symbols:
    """Instrument and asset symbols as small integer codes (codes only ever grow)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._names: list[str] = []
        self._array: np.ndarray | None = None

    def code(self, symbol: str) -> int:
        found = self._codes.get(symbol)
        if found is None:
            found = self._codes[symbol] = len(self._names)
            self._names.append(symbol)
            self._array = None
        return found

    def __len__(self) -> int:
        return len(self._names)

    def names(self) -> np.ndarray:
        """The symbol of each code (an object array, to take with code arrays)."""
        if self._array is None:
            self._array = np.array(self._names, dtype=object)
        return self._array


@dataclass(frozen=True)
class BookRows:
    """Rows of some subaccounts ready for the engine: owners index the caller's subaccounts,
    instrument and asset codes index ``symbols``."""

    position_owner: np.ndarray
    instrument: np.ndarray
    size: np.ndarray
    entry_price: np.ndarray
    isolated_margin: np.ndarray
    leverage: np.ndarray
    balance_owner: np.ndarray
    asset: np.ndarray
    amount: np.ndarray
    symbols: Symbols

    def join(self, other: BookRows) -> BookRows:
        assert other.symbols is self.symbols
        return BookRows(
            **{
                name: np.concatenate([getattr(self, name), getattr(other, name)])
                for name in _ROW_FIELDS
            },
            symbols=self.symbols,
        )


_ROW_FIELDS = (
    "position_owner",
    "instrument",
    "size",
    "entry_price",
    "isolated_margin",
    "leverage",
    "balance_owner",
    "asset",
    "amount",
)


def rows_from_tuples(
    symbols: Symbols,
    positions: Sequence[tuple[str, str, float, float, float]],
    balances: Sequence[tuple[str, str, float]],
    leverage: Mapping[tuple[str, str], float],
    owner_of: Mapping[str, int],
) -> BookRows:
    """``BookRows`` of row tuples ``(sid, instrument, size, entry, isolated margin)`` and
    ``(sid, asset, amount)`` (the embedded database's path, and the exact books')."""
    return BookRows(
        position_owner=np.array([owner_of[row[0]] for row in positions], dtype=np.intp),
        instrument=np.array([symbols.code(row[1]) for row in positions], dtype=np.intp),
        size=np.array([row[2] for row in positions], dtype=np.float64),
        entry_price=np.array([row[3] for row in positions], dtype=np.float64),
        isolated_margin=np.array([row[4] for row in positions], dtype=np.float64),
        leverage=np.array(
            [leverage.get((row[0], row[1]), 0.0) for row in positions], dtype=np.float64
        ),
        balance_owner=np.array([owner_of[row[0]] for row in balances], dtype=np.intp),
        asset=np.array([symbols.code(row[1]) for row in balances], dtype=np.intp),
        amount=np.array([row[2] for row in balances], dtype=np.float64),
        symbols=symbols,
    )


@dataclass(frozen=True)
class _Block:
    """One subaccount's rows, as of ``token``."""

    token: int
    subaccount: Subaccount | None
    """Detached, shared by every view: read-only (None: no such row any more)."""
    positions: np.ndarray
    """(k, 5) float64, columns as ``_POSITION_COLUMNS`` says (codes are exact in float64)."""
    balances: np.ndarray
    """(m, 2) float64."""


class BookView:
    """The book as one request sees it: every subaccount current as of the tokens it read.
    Immutable once made, so it stays consistent while the resident book moves on."""

    def __init__(self, blocks: Mapping[str, _Block], symbols: Symbols) -> None:
        ordered = sorted(blocks)
        self.symbols = symbols
        self._index = {sid: i for i, sid in enumerate(ordered)}
        self._subaccounts = [
            block.subaccount for sid in ordered if (block := blocks[sid]).subaccount is not None
        ]
        owners = np.arange(len(ordered), dtype=np.intp)
        chosen = [blocks[sid] for sid in ordered]
        self._position_owner = np.repeat(owners, [len(b.positions) for b in chosen])
        self._positions = np.concatenate(
            [b.positions for b in chosen] or [np.empty((0, _POSITION_COLUMNS))]
        )
        self._balance_owner = np.repeat(owners, [len(b.balances) for b in chosen])
        self._balances = np.concatenate(
            [b.balances for b in chosen] or [np.empty((0, _BALANCE_COLUMNS))]
        )

    def subaccounts(
        self, account_id: str | None = None, accounts: Iterable[str] | None = None
    ) -> list[Subaccount]:
        """By id, of ``account_id`` and within ``accounts`` when given (as
        ``accounts_repository.list_subaccounts`` answers)."""
        among = None if accounts is None else set(accounts)
        return [
            s
            for s in self._subaccounts
            if (account_id is None or s.account_id == account_id)
            and (among is None or s.account_id in among)
        ]

    def get(self, subaccount_ids: Iterable[str]) -> list[Subaccount]:
        """Those of ``subaccount_ids`` that exist, by id."""
        wanted = set(subaccount_ids)
        return [s for s in self._subaccounts if s.subaccount_id in wanted]

    def holding(self, symbols: Iterable[str]) -> list[str]:
        """Subaccounts with an open position in, or a balance of, any of ``symbols``, by id."""
        codes = np.array([self.symbols.code(symbol) for symbol in symbols], dtype=np.float64)
        owners = np.union1d(
            self._position_owner[np.isin(self._positions[:, 0], codes)],
            self._balance_owner[np.isin(self._balances[:, 0], codes) & (self._balances[:, 1] != 0)],
        )
        ordered = list(self._index)
        found = {ordered[i] for i in owners.tolist()}
        return [s.subaccount_id for s in self._subaccounts if s.subaccount_id in found]

    def rows(self, subaccount_ids: Sequence[str], skip: Iterable[str]) -> BookRows:
        """The rows of ``subaccount_ids`` except ``skip``, owners indexing ``subaccount_ids``."""
        skipped = set(skip)
        target = np.full(len(self._index), -1, dtype=np.intp)
        pairs = [
            (self._index[sid], i) for i, sid in enumerate(subaccount_ids) if sid not in skipped
        ]
        if pairs:
            where, owner = np.array(pairs, dtype=np.intp).T
            target[where] = owner
        position_owner = target[self._position_owner]
        keep = position_owner >= 0
        positions = self._positions[keep]
        balance_owner = target[self._balance_owner]
        kept = balance_owner >= 0
        balances = self._balances[kept]
        return BookRows(
            position_owner=position_owner[keep],
            instrument=positions[:, 0].astype(np.intp),
            size=positions[:, 1],
            entry_price=positions[:, 2],
            isolated_margin=positions[:, 3],
            leverage=positions[:, 4],
            balance_owner=balance_owner[kept],
            asset=balances[:, 0].astype(np.intp),
            amount=balances[:, 1],
            symbols=self.symbols,
        )


YIELD_EVERY = 1000
"""Subaccounts put between two looks at the event loop while a reload runs."""

MANY_STALE = 5000
"""More stale subaccounts than this reload from whole tables (a list of ids binds one
parameter each)."""


class ResidentBook:
    """Every subaccount's engine rows, each under its token; the view joining them all is
    made again only when a block changed."""

    def __init__(self) -> None:
        self.symbols = Symbols()
        self._blocks: dict[str, _Block] = {}
        self._view: BookView | None = None
        self._loading = asyncio.Lock()
        self.loaded = 0
        """Subaccounts (re)loaded since the start (what a test counts)."""

    async def current(self, session: AsyncSession) -> BookView:
        """The whole book as of the tokens read now: resident where they match, the
        subaccounts whose token moved reloaded."""
        tokens = await accounts_repository.subaccount_tokens(session)
        if self._stale(tokens):
            # One reload at a time: concurrent views (the sweep and an overview after a start)
            # wait for it rather than each reading the whole book.
            async with self._loading:
                while stale := self._stale(tokens):
                    # Most of the book (the first use): whole tables read faster than ids.
                    ids = None if len(stale) > min(len(tokens) // 2, MANY_STALE) else stale
                    subaccounts = await accounts_repository.detached_subaccounts(session, ids)
                    loaded = await accounts_repository.engine_rows(session, ids)
                    # Kept under the tokens read before the rows: at worst a later write is
                    # reloaded again, never an older state taken for current.
                    await self._put(stale, subaccounts, loaded, tokens)
        for sid in [sid for sid in self._blocks if sid not in tokens]:
            # Gone (emptied tables): nothing may be kept under a token that no longer exists.
            del self._blocks[sid]
            self._view = None
        if self._view is None:
            self._view = BookView(self._blocks, self.symbols)
        return self._view

    def _stale(self, tokens: Mapping[str, int]) -> list[str]:
        return [
            sid
            for sid, token in tokens.items()
            if (block := self._blocks.get(sid)) is None or block.token != token
        ]

    async def _put(
        self,
        stale: Sequence[str],
        subaccounts: Sequence[Subaccount],
        loaded: Sequence[Any],
        tokens: Mapping[str, int],
    ) -> None:
        positions: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        balances: dict[str, list[tuple[float, float]]] = defaultdict(list)
        leverage: dict[str, dict[str, float]] = defaultdict(dict)
        code = self.symbols.code
        for count, (kind, sid, name, a, b, c) in enumerate(loaded):
            if count % (10 * YIELD_EVERY) == 10 * YIELD_EVERY - 1:
                await asyncio.sleep(0)
            if kind == accounts_repository.ENGINE_POSITION:
                positions[sid].append((code(name), a, b, c, name))
            elif kind == accounts_repository.ENGINE_BALANCE:
                balances[sid].append((code(name), a))
            else:
                leverage[sid][name] = a
        found = {s.subaccount_id: s for s in subaccounts}
        for count, sid in enumerate({*stale, *found}):
            if sid not in tokens:
                continue
            if count % YIELD_EVERY == YIELD_EVERY - 1:
                # A whole book takes a while: let other requests run meanwhile. Each block is
                # current under its own token, and the view is made again after the last.
                await asyncio.sleep(0)
            chosen = leverage.get(sid, {})
            held = np.array(
                [
                    (row[0], row[1], row[2], row[3], chosen.get(row[4], 0.0))
                    for row in positions[sid]
                ],
                dtype=np.float64,
            ).reshape(-1, _POSITION_COLUMNS)
            owned = np.array(balances[sid], dtype=np.float64).reshape(-1, _BALANCE_COLUMNS)
            self._blocks[sid] = _Block(tokens[sid], found.get(sid), held, owned)
            self._view = None
        self.loaded += len(stale)
        self._view = None


async def current_view(session: AsyncSession, runtime: Runtime) -> BookView | None:
    """This process's whole book as of now (read in the caller's transaction); None on the
    embedded database, whose views read their rows each time."""
    if dialect_name(session) != "postgresql":
        return None
    if runtime.book is None:
        runtime.book = ResidentBook()
    book: ResidentBook = runtime.book
    return await book.current(session)
