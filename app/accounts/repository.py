from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, and_, cast, delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import (
    Account,
    Balance,
    Fill,
    Leverage,
    Position,
    Reservation,
    Subaccount,
    TradingState,
    Transfer,
)
from app.core import versions
from app.core.db import HotDb, dialect_name, driver_fetch


async def get_account(session: AsyncSession, account_id: str) -> Account | None:
    return await session.get(Account, account_id)


async def list_accounts(session: AsyncSession, only: Iterable[str] | None) -> Sequence[Account]:
    query = select(Account).order_by(Account.account_id)
    if only is not None:
        query = query.where(Account.account_id.in_(list(only)))
    return (await session.scalars(query)).all()


async def get_subaccount(session: AsyncSession, subaccount_id: str) -> Subaccount | None:
    return await session.get(Subaccount, subaccount_id)


async def get_subaccounts(session: AsyncSession, subaccount_ids: Sequence[str]) -> list[Subaccount]:
    """The subaccounts of ``subaccount_ids`` that exist, ordered by id."""
    rows = await session.scalars(
        select(Subaccount)
        .where(Subaccount.subaccount_id.in_(list(subaccount_ids)))
        .order_by(Subaccount.subaccount_id)
    )
    return list(rows)


async def lock_subaccounts(session: AsyncSession, subaccount_ids: Iterable[str]) -> None:
    """Row-lock subaccounts (in id order, so two writers never deadlock) until commit.
    Every change to a subaccount's balances, positions or reservations takes this lock."""
    ids = sorted(set(subaccount_ids))
    if ids and dialect_name(session) == "postgresql":
        await session.execute(
            select(Subaccount.subaccount_id)
            .where(Subaccount.subaccount_id.in_(ids))
            .order_by(Subaccount.subaccount_id)
            .with_for_update()
        )


async def list_subaccounts(
    session: AsyncSession, account_id: str | None, only_accounts: Iterable[str] | None
) -> Sequence[Subaccount]:
    query = select(Subaccount).order_by(Subaccount.subaccount_id)
    if account_id is not None:
        query = query.where(Subaccount.account_id == account_id)
    if only_accounts is not None:
        query = query.where(Subaccount.account_id.in_(list(only_accounts)))
    return (await session.scalars(query)).all()


async def subaccount_ids_of(session: AsyncSession, account_id: str) -> list[str]:
    rows = await session.scalars(
        select(Subaccount.subaccount_id)
        .where(Subaccount.account_id == account_id)
        .order_by(Subaccount.subaccount_id)
    )
    return list(rows)


@dataclass(frozen=True)
class SubaccountState:
    """A subaccount's open positions ``(instrument, size, entry_price, isolated_margin)``,
    balances and chosen leverage, as plain exact values."""

    positions: list[tuple[str, Decimal, Decimal, Decimal]]
    balances: dict[str, Decimal]
    leverage: dict[str, Decimal]


_STATE_SQL = """
SELECT 'p', instrument, size, entry_price, isolated_margin
  FROM positions WHERE subaccount_id = $1 AND size <> 0
UNION ALL SELECT 'b', asset, amount, NULL, NULL FROM balances WHERE subaccount_id = $1
UNION ALL SELECT 'l', instrument, leverage, NULL, NULL FROM leverage WHERE subaccount_id = $1
ORDER BY 1, 2
"""


async def state_of(session: AsyncSession, subaccount_id: str) -> SubaccountState:
    """Positions, balances and leverage in one round trip (every check reads them; on
    PostgreSQL straight from asyncpg, without the ORM's per-row cost)."""
    if dialect_name(session) != "postgresql":
        positions = await positions_of(session, subaccount_id)
        return SubaccountState(
            positions=[
                (p.instrument, p.size, p.entry_price, p.isolated_margin)
                for p in positions.values()
                if p.size != 0
            ],
            balances={a: b.amount for a, b in (await balances_of(session, subaccount_id)).items()},
            leverage={
                i: x.leverage for i, x in (await leverage_of(session, subaccount_id)).items()
            },
        )
    if session.new or session.dirty or session.deleted:
        await session.flush()  # the raw read must see this transaction's own changes
    state = SubaccountState([], {}, {})
    for kind, name, value, entry, allocated in await driver_fetch(
        session, _STATE_SQL, subaccount_id
    ):
        if kind == "p":
            state.positions.append((name, value, entry, allocated))
        elif kind == "b":
            state.balances[name] = value
        else:
            state.leverage[name] = value
    return state


async def leverage_of(session: AsyncSession, subaccount_id: str) -> dict[str, Leverage]:
    rows = await session.scalars(select(Leverage).where(Leverage.subaccount_id == subaccount_id))
    return {row.instrument: row for row in rows}


async def get_trading_state(
    session: AsyncSession, scope: str, scope_id: str, source: str = "manual"
) -> TradingState | None:
    return await session.get(TradingState, (scope, scope_id, source))


async def list_trading_states(session: AsyncSession) -> Sequence[TradingState]:
    query = select(TradingState).order_by(
        TradingState.scope, TradingState.scope_id, TradingState.source
    )
    return (await session.scalars(query)).all()


async def auto_reduce_only_of(session: AsyncSession, subaccount_ids: Sequence[str]) -> set[str]:
    """Which of ``subaccount_ids`` the circuit breaker holds in reduce-only."""
    if not subaccount_ids:
        return set()
    query = select(TradingState.scope_id).where(
        TradingState.scope == "subaccount",
        TradingState.source == "auto",
        TradingState.scope_id.in_(list(subaccount_ids)),
    )
    return set((await session.scalars(query)).all())


async def insert_auto_states(session: AsyncSession, rows: Sequence[TradingState]) -> set[str]:
    """Insert the circuit breaker's states in one statement, skipping any already there (a
    concurrent evaluation of the same subaccount set it first); the scope ids inserted."""
    if not rows:
        return set()
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    columns = [c.name for c in TradingState.__table__.columns]
    statement = (
        dialect.insert(TradingState)
        .values([{name: getattr(row, name) for name in columns} for row in rows])
        .on_conflict_do_nothing(index_elements=["scope", "scope_id", "source"])
        .returning(TradingState.scope_id)
    )
    return set((await session.scalars(statement)).all())


async def delete_auto_states(
    session: AsyncSession, subaccount_ids: Sequence[str] | None
) -> list[TradingState]:
    """Delete the circuit breaker's states of ``subaccount_ids`` (None: all of them); the rows
    deleted (one a concurrent evaluation deleted first is not among them)."""
    statement = delete(TradingState).where(TradingState.source == "auto")
    if subaccount_ids is not None:
        if not subaccount_ids:
            return []
        statement = statement.where(
            TradingState.scope == "subaccount", TradingState.scope_id.in_(list(subaccount_ids))
        )
    result = await session.execute(
        statement.returning(
            TradingState.scope, TradingState.scope_id, TradingState.state, TradingState.reason
        ).execution_options(synchronize_session=False)
    )
    return [
        TradingState(
            scope=row.scope,
            scope_id=row.scope_id,
            source="auto",
            state=row.state,
            reason=row.reason,
        )
        for row in result
    ]


async def trading_states_over(
    session: AsyncSession, account_id: str, subaccount_id: str, instruments: Sequence[str]
) -> list[tuple[str, str, str]]:
    """``(scope, scope_id, state)`` of the states that govern an order of this subaccount in
    these instruments: global, its account, itself, the instruments (by the primary key, so
    the read stays small however many states other subaccounts carry)."""
    query = select(TradingState.scope, TradingState.scope_id, TradingState.state).where(
        or_(
            TradingState.scope == "global",
            and_(TradingState.scope == "account", TradingState.scope_id == account_id),
            and_(TradingState.scope == "subaccount", TradingState.scope_id == subaccount_id),
            and_(TradingState.scope == "instrument", TradingState.scope_id.in_(list(instruments))),
        )
    )
    return [(row.scope, row.scope_id, row.state) for row in await session.execute(query)]


async def balances_of(session: AsyncSession, subaccount_id: str) -> dict[str, Balance]:
    rows = await session.scalars(
        select(Balance).where(Balance.subaccount_id == subaccount_id).order_by(Balance.asset)
    )
    return {row.asset: row for row in rows}


async def positions_of(session: AsyncSession, subaccount_id: str) -> dict[str, Position]:
    rows = await session.scalars(
        select(Position)
        .where(Position.subaccount_id == subaccount_id)
        .order_by(Position.instrument)
    )
    return {row.instrument: row for row in rows}


async def delete_positions(session: AsyncSession, subaccount_id: str) -> None:
    await session.execute(delete(Position).where(Position.subaccount_id == subaccount_id))


async def delete_balances(session: AsyncSession, subaccount_id: str) -> None:
    await session.execute(delete(Balance).where(Balance.subaccount_id == subaccount_id))


async def lock_account(session: AsyncSession, account_id: str) -> None:
    """Row-lock an account: reserving checks under account or strategy caps queue here."""
    if dialect_name(session) == "postgresql":
        await session.execute(
            select(Account.account_id).where(Account.account_id == account_id).with_for_update()
        )


async def realized_since(
    session: AsyncSession, subaccount_id: str, since: datetime, settlement: str
) -> Decimal:
    """Realised PnL of fills dated at or after ``since``, net of fees paid in ``settlement``.
    Summed by PostgreSQL (NUMERIC sums are exact), in one row however many fills the day has;
    on SQLite here, since it would sum decimal text as floats."""
    if dialect_name(session) == "postgresql":
        summed = await driver_fetch(
            session,
            "SELECT coalesce(sum(realized_pnl - CASE WHEN fee_asset = $3 THEN fee ELSE 0 END), 0)"
            " FROM fills WHERE subaccount_id = $1 AND ts >= $2",
            subaccount_id,
            since,
            settlement,
        )
        return Decimal(summed[0][0])
    rows = await session.execute(
        select(Fill.realized_pnl, Fill.fee, Fill.fee_asset).where(
            Fill.subaccount_id == subaccount_id, Fill.ts >= since
        )
    )
    total = Decimal(0)
    for realized, fee, fee_asset in rows:
        total += realized - (fee if fee_asset == settlement else 0)
    return total


FillKey = tuple[str, str]
"""``(subaccount_id, fill_id)``: a fill id is unique within its subaccount only."""


async def get_fills(session: AsyncSession, keys: Sequence[FillKey]) -> dict[FillKey, Fill]:
    """The fills recorded under any of these ``(subaccount_id, fill_id)`` keys."""
    if not keys:
        return {}
    rows = await session.scalars(
        select(Fill).where(tuple_(Fill.subaccount_id, Fill.fill_id).in_(list(set(keys))))
    )
    return {(row.subaccount_id, row.fill_id): row for row in rows}


async def get_transfer(
    session: AsyncSession, subaccount_id: str, transfer_id: str
) -> Transfer | None:
    """The transfer ``transfer_id`` recorded from this subaccount (ids are per subaccount)."""
    return await session.get(Transfer, {"subaccount_id": subaccount_id, "transfer_id": transfer_id})


MANY_IDS = 256
"""More ids than this are matched in Python (see :func:`active_reservations`)."""


async def active_reservations(
    session: AsyncSession, subaccount_ids: Sequence[str], now: datetime
) -> list[Reservation]:
    if not subaccount_ids:
        return []
    query = (
        select(Reservation)
        .where(Reservation.status == "active", Reservation.expires_at > now)
        .order_by(Reservation.created_at)
    )
    if len(subaccount_ids) <= MANY_IDS:
        return list(
            (
                await session.scalars(query.where(Reservation.subaccount_id.in_(subaccount_ids)))
            ).all()
        )
    # The whole book: the few active reservations, filtered here, rather than a list of
    # thousands of ids to bind and match.
    wanted = set(subaccount_ids)
    return [r for r in (await session.scalars(query)).all() if r.subaccount_id in wanted]


def add(
    session: AsyncSession,
    row: Account | Subaccount | Leverage | TradingState | Balance | Position | Fill | Transfer,
) -> None:
    session.add(row)


async def remove(session: AsyncSession, row: Leverage | TradingState | Position) -> None:
    await session.delete(row)


# --- bulk reads for the whole-book views (plain rows, no ORM objects) -------------------------


async def leverage_rows(
    session: AsyncSession, subaccount_ids: Sequence[str] | None
) -> Sequence[Any]:
    """``(subaccount_id, instrument, leverage)``."""
    query = select(Leverage.subaccount_id, Leverage.instrument, Leverage.leverage)
    if subaccount_ids is not None:
        query = query.where(Leverage.subaccount_id.in_(list(subaccount_ids)))
    return (await session.execute(query)).all()


async def subaccounts_holding(session: AsyncSession, symbols: Sequence[str]) -> list[str]:
    """Subaccounts with an open position in, or a balance of, any of ``symbols``."""
    positions = select(Position.subaccount_id).where(
        Position.instrument.in_(list(symbols)), Position.size != 0
    )
    balances = select(Balance.subaccount_id).where(
        Balance.asset.in_(list(symbols)), Balance.amount != 0
    )
    rows = await session.execute(positions.union(balances))
    return sorted(row[0] for row in rows)


async def position_float_rows(
    session: AsyncSession, subaccount_ids: Sequence[str] | None
) -> Sequence[Any]:
    """``(subaccount_id, instrument, size, entry_price, isolated_margin)`` of open positions
    as floats, converted by the database (the whole-book views feed float64 arrays)."""
    if dialect_name(session) == "postgresql":
        sql = (
            "SELECT subaccount_id, instrument, size::float8, entry_price::float8,"
            " isolated_margin::float8 FROM positions WHERE size <> 0"
        )
        if subaccount_ids is None:
            return await driver_fetch(session, sql)
        return await driver_fetch(
            session, sql + " AND subaccount_id = ANY($1)", list(subaccount_ids)
        )
    query = select(
        Position.subaccount_id,
        Position.instrument,
        cast(Position.size, Float),
        cast(Position.entry_price, Float),
        cast(Position.isolated_margin, Float),
    ).where(Position.size != 0)
    if subaccount_ids is not None:
        query = query.where(Position.subaccount_id.in_(list(subaccount_ids)))
    return (await session.execute(query)).all()


async def balance_float_rows(
    session: AsyncSession, subaccount_ids: Sequence[str] | None
) -> Sequence[Any]:
    """``(subaccount_id, asset, amount)`` as floats."""
    if dialect_name(session) == "postgresql":
        sql = "SELECT subaccount_id, asset, amount::float8 FROM balances"
        if subaccount_ids is None:
            return await driver_fetch(session, sql)
        return await driver_fetch(
            session, sql + " WHERE subaccount_id = ANY($1)", list(subaccount_ids)
        )
    query = select(Balance.subaccount_id, Balance.asset, cast(Balance.amount, Float))
    if subaccount_ids is not None:
        query = query.where(Balance.subaccount_id.in_(list(subaccount_ids)))
    return (await session.execute(query)).all()


async def subaccount_tokens(session: AsyncSession) -> dict[str, int]:
    """Every subaccount's version token, in one statement (PostgreSQL: the whole-book views
    validate their resident rows with it, app/risk/resident.py)."""
    rows = await driver_fetch(
        session, "SELECT id, token FROM state_versions WHERE scope = 'subaccount'"
    )
    return {row[0]: row[1] for row in rows}


async def detached_subaccounts(
    session: AsyncSession, subaccount_ids: Sequence[str] | None
) -> list[Subaccount]:
    """The subaccounts of ``subaccount_ids`` (None: all) as objects of no session, which a
    process may keep across requests (read-only). Read as rows, so the caller's session and
    any of its objects stay untouched."""
    table = Subaccount.__table__
    query = select(*table.columns)
    if subaccount_ids is not None:
        query = query.where(table.c.subaccount_id.in_(list(subaccount_ids)))
    found = []
    for count, row in enumerate((await session.execute(query)).mappings()):
        if count % 1000 == 999:
            # Thousands of objects (a first load): let other requests run meanwhile.
            await asyncio.sleep(0)
        found.append(Subaccount(**row))
    return found


ENGINE_POSITION, ENGINE_BALANCE, ENGINE_LEVERAGE = 0, 1, 2
"""The kinds of :func:`engine_rows`."""


async def engine_rows(session: AsyncSession, subaccount_ids: Sequence[str] | None) -> Sequence[Any]:
    """``(kind, subaccount_id, name, a, b, c)`` as floats converted by the database, in one
    statement (one snapshot): open positions ``(ENGINE_POSITION, sid, instrument, size,
    entry_price, isolated_margin)``, balances ``(ENGINE_BALANCE, sid, asset, amount, -, -)``
    and chosen leverage ``(ENGINE_LEVERAGE, sid, instrument, leverage, -, -)``. PostgreSQL only;
    ``None`` reads every subaccount."""
    where = "" if subaccount_ids is None else " AND subaccount_id = ANY($1)"
    sql = (
        f"SELECT {ENGINE_POSITION}, subaccount_id, instrument, size::float8, entry_price::float8,"
        f" isolated_margin::float8 FROM positions WHERE size <> 0{where}"
        f" UNION ALL SELECT {ENGINE_BALANCE}, subaccount_id, asset, amount::float8, 0, 0"
        f" FROM balances WHERE TRUE{where}"
        f" UNION ALL SELECT {ENGINE_LEVERAGE}, subaccount_id, instrument, leverage::float8, 0, 0"
        f" FROM leverage WHERE TRUE{where}"
    )
    if subaccount_ids is None:
        return await driver_fetch(session, sql)
    return await driver_fetch(session, sql, list(subaccount_ids))


# --- resident state: each load reads the state and its version token in one snapshot ---------


@dataclass(frozen=True)
class LoadedAccount:
    token: int | None
    account: Account
    subaccount_ids: tuple[str, ...]


async def load_account(db: HotDb, account_id: str) -> LoadedAccount | None:
    """The account, the ids of its subaccounts, and its version token."""
    if isinstance(db, AsyncSession):
        token = (await versions.tokens(db, [("account", account_id)])).get(("account", account_id))
        account = await get_account(db, account_id)
        if account is None:
            return None
        return LoadedAccount(token, account, tuple(await subaccount_ids_of(db, account_id)))
    rows = await db.fetch(
        "SELECT a.account_id, a.name, a.limits::text, a.created_at, v.token,"
        " array(SELECT s.subaccount_id FROM subaccounts s WHERE s.account_id = a.account_id"
        " ORDER BY s.subaccount_id)"
        " FROM accounts a LEFT JOIN state_versions v ON v.scope = 'account' AND v.id = a.account_id"
        " WHERE a.account_id = $1",
        account_id,
    )
    if not rows:
        return None
    ident, name, limits, created_at, token, subaccount_ids = rows[0]
    account = Account(account_id=ident, name=name, limits=json.loads(limits), created_at=created_at)
    return LoadedAccount(token, account, tuple(subaccount_ids))


async def load_trading_states(db: HotDb) -> tuple[int | None, list[tuple[str, str, str]]]:
    """Every non-default trading state ``(scope, scope_id, state)`` and their version token (a
    scope may come twice: its manual and its automatic state)."""
    if isinstance(db, AsyncSession):
        token = (await versions.tokens(db, [versions.TRADING])).get(versions.TRADING)
        return token, [(r.scope, r.scope_id, r.state) for r in await list_trading_states(db)]
    rows = await db.fetch(
        "SELECT (SELECT token FROM state_versions WHERE scope = 'trading' AND id = ''),"
        " coalesce((SELECT json_agg(json_build_array(scope, scope_id, state))"
        " FROM trading_states), '[]')::text"
    )
    token, states = rows[0]
    return token, [tuple(state) for state in json.loads(states)]
