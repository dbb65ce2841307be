from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Reservation, Subaccount
from app.accounts.repository import SubaccountState, get_subaccount, realized_since, state_of
from app.core import versions
from app.core.db import HotDb
from app.pretrade.models import CheckRecord, OrderId
from app.risk.models import DailyMarginReport


async def checks_for_order_ids(
    session: AsyncSession, subaccount_id: str, client_order_ids: Sequence[str]
) -> list[CheckRecord]:
    """The earlier checks that used any of these ``client_order_id``s on this subaccount."""
    if not client_order_ids:
        return []
    query = (
        select(CheckRecord)
        .join(OrderId, OrderId.check_id == CheckRecord.check_id)
        .where(
            OrderId.subaccount_id == subaccount_id,
            OrderId.client_order_id.in_(list(client_order_ids)),
        )
    )
    return list((await session.scalars(query)).unique().all())


async def earlier_answers(
    db: HotDb, subaccount_id: str, client_order_ids: Sequence[str]
) -> list[tuple[str, str]]:
    """``(request_hash, response JSON)`` of the earlier checks that used any of these
    ``client_order_id``s on this subaccount."""
    if isinstance(db, AsyncSession):
        return [
            (row.request_hash, json.dumps(row.response))
            for row in await checks_for_order_ids(db, subaccount_id, client_order_ids)
        ]
    rows = await db.fetch(
        "SELECT DISTINCT c.request_hash, c.response::text FROM checks c"
        " JOIN check_orders o ON o.check_id = c.check_id"
        " WHERE o.subaccount_id = $1 AND o.client_order_id = ANY($2::text[])",
        subaccount_id,
        list(client_order_ids),
    )
    return [(row[0], row[1]) for row in rows]


async def reservations_of(
    session: AsyncSession, subaccount_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[Reservation]:
    """Newest first, by (created_at, reservation_id); only those before ``before`` (a page's
    last) when given."""
    query = select(Reservation).where(Reservation.subaccount_id == subaccount_id)
    if before is not None:
        created_at, reservation_id = before
        query = query.where(
            or_(
                Reservation.created_at < created_at,
                and_(
                    Reservation.created_at == created_at,
                    Reservation.reservation_id < reservation_id,
                ),
            )
        )
    query = query.order_by(Reservation.created_at.desc(), Reservation.reservation_id.desc())
    return list((await session.scalars(query.limit(limit))).all())


async def get_reservation(session: AsyncSession, reservation_id: str) -> Reservation | None:
    return await session.get(Reservation, reservation_id)


def add(session: AsyncSession, row: CheckRecord | OrderId | Reservation) -> None:
    session.add(row)


_ACCEPTED_ORDERS_SQL = """
SELECT coalesce(sum(jsonb_array_length(c.response -> 'executions')), 0)
  FROM checks c {join}
 WHERE {scope} = $1 AND c.created_at >= $2 AND c.response ->> 'decision' = 'accept'
"""


async def accepted_orders_since(
    session: HotDb, *, since: datetime, subaccount_id: str | None = None,
    account_id: str | None = None,
) -> int:  # fmt: skip
    """Orders in the checks accepted since ``since``, of one subaccount or of one account's
    subaccounts: the order-rate window counted from PostgreSQL when Redis cannot count it."""
    assert (subaccount_id is None) != (account_id is None)
    if not isinstance(session, AsyncSession):
        if subaccount_id is not None:
            sql = _ACCEPTED_ORDERS_SQL.format(join="", scope="c.subaccount_id")
            ident = subaccount_id
        else:
            sql = _ACCEPTED_ORDERS_SQL.format(
                join="JOIN subaccounts s ON s.subaccount_id = c.subaccount_id",
                scope="s.account_id",
            )
            ident = str(account_id)
        rows = await session.fetch(sql, ident, since)
        return int(rows[0][0])
    query = select(CheckRecord.response).where(CheckRecord.created_at >= since)
    if subaccount_id is not None:
        query = query.where(CheckRecord.subaccount_id == subaccount_id)
    else:
        query = query.join(Subaccount, Subaccount.subaccount_id == CheckRecord.subaccount_id)
        query = query.where(Subaccount.account_id == account_id)
    responses = (await session.scalars(query)).all()
    return sum(len(r["executions"]) for r in responses if r["decision"] == "accept")


# --- the check's reads: versions, and a subaccount's state when they moved ----------------


@dataclass(frozen=True)
class LoadedSubaccount:
    token: int | None
    subaccount: Subaccount
    state: SubaccountState
    reservations: list[tuple[str, str, list[dict[str, Any]], datetime, datetime]]
    """Active, unexpired reservations: ``(reservation_id, check_id, legs, created_at,
    expires_at)`` in creation order."""
    realized_today: Decimal
    unrealized_at_start: Decimal | None
    """Unrealised PnL in the capture that opened the day (the previous day's end-of-day
    report), None when none was captured."""


_SUBACCOUNTS_SQL = """
SELECT s.subaccount_id, s.account_id, s.margin_mode, s.strategy, s.limits::text,
       s.created_at, v.token,
       (SELECT coalesce(json_agg(json_build_array(p.instrument, p.size::text,
                 p.entry_price::text, p.isolated_margin::text) ORDER BY p.instrument), '[]')
          FROM positions p WHERE p.subaccount_id = s.subaccount_id AND p.size <> 0)::text,
       (SELECT coalesce(json_object_agg(b.asset, b.amount::text ORDER BY b.asset), '{}')
          FROM balances b WHERE b.subaccount_id = s.subaccount_id)::text,
       (SELECT coalesce(json_object_agg(l.instrument, l.leverage::text), '{}')
          FROM leverage l WHERE l.subaccount_id = s.subaccount_id)::text,
       (SELECT coalesce(json_agg(json_build_array(r.reservation_id, r.check_id, r.legs,
                 r.created_at, r.expires_at) ORDER BY r.created_at), '[]')
          FROM reservations r WHERE r.subaccount_id = s.subaccount_id
           AND r.status = 'active' AND r.expires_at > $3)::text,
       (SELECT coalesce(sum(f.realized_pnl
                 - CASE WHEN f.fee_asset = $4 THEN f.fee ELSE 0 END), 0)
          FROM fills f WHERE f.subaccount_id = s.subaccount_id AND f.ts >= $2)::text,
       (SELECT m.summary->>'unrealized_pnl' FROM margin_reports m
         WHERE m.subaccount_id = s.subaccount_id AND m.report_date = $5)
  FROM subaccounts s
  LEFT JOIN state_versions v ON v.scope = 'subaccount' AND v.id = s.subaccount_id
 WHERE s.subaccount_id = ANY($1::text[])
"""


async def load_subaccounts(
    db: HotDb, subaccount_ids: Sequence[str], since: datetime, now: datetime, settlement: str
) -> list[LoadedSubaccount]:
    """Each existing subaccount of ``subaccount_ids`` with everything a check reads of it
    (realised PnL of fills at or after ``since``), and its version token — on PostgreSQL in
    one statement, one snapshot."""
    if isinstance(db, AsyncSession):
        return [
            loaded
            for subaccount_id in subaccount_ids
            if (loaded := await _load_subaccount_orm(db, subaccount_id, since, now, settlement))
        ]
    found = []
    opened_by = _opening_report(since)
    rows = await db.fetch(_SUBACCOUNTS_SQL, list(subaccount_ids), since, now, settlement, opened_by)
    for row in rows:
        subaccount = Subaccount(
            subaccount_id=row[0],
            account_id=row[1],
            margin_mode=row[2],
            strategy=row[3],
            limits=json.loads(row[4]),
            created_at=row[5],
        )
        state = SubaccountState(
            positions=[
                (name, Decimal(size), Decimal(entry), Decimal(allocated))
                for name, size, entry, allocated in json.loads(row[7])
            ],
            balances={asset: Decimal(amount) for asset, amount in json.loads(row[8]).items()},
            leverage={name: Decimal(value) for name, value in json.loads(row[9]).items()},
        )
        reservations = [
            (rid, cid, legs, _timestamp(created), _timestamp(expires))
            for rid, cid, legs, created, expires in json.loads(row[10])
        ]
        start = None if row[12] is None else Decimal(row[12])
        found.append(
            LoadedSubaccount(row[6], subaccount, state, reservations, Decimal(row[11]), start)
        )
    return found


def _opening_report(since: datetime) -> date:
    """The end-of-day report that opened the day starting at ``since`` (midnight UTC): the
    previous day's, captured just after that midnight."""
    return (since - timedelta(days=1)).date()


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def _load_subaccount_orm(
    session: AsyncSession, subaccount_id: str, since: datetime, now: datetime, settlement: str
) -> LoadedSubaccount | None:
    # The token first: a write landing between the reads leaves a token that is already old.
    token = (await versions.tokens(session, [("subaccount", subaccount_id)])).get(
        ("subaccount", subaccount_id)
    )
    subaccount = await get_subaccount(session, subaccount_id)
    if subaccount is None:
        return None
    rows = await session.scalars(
        select(Reservation)
        .where(
            Reservation.subaccount_id == subaccount_id,
            Reservation.status == "active",
            Reservation.expires_at > now,
        )
        .order_by(Reservation.created_at)
    )
    return LoadedSubaccount(
        token,
        subaccount,
        await state_of(session, subaccount_id),
        [(r.reservation_id, r.check_id, r.legs, r.created_at, r.expires_at) for r in rows],
        await realized_since(session, subaccount_id, since, settlement),
        await _unrealized_at_start(session, subaccount_id, since),
    )


async def _unrealized_at_start(
    session: AsyncSession, subaccount_id: str, since: datetime
) -> Decimal | None:
    report = await session.get(DailyMarginReport, (_opening_report(since), subaccount_id))
    if report is None or report.summary.get("unrealized_pnl") is None:
        return None
    return Decimal(str(report.summary["unrealized_pnl"]))


@dataclass(frozen=True)
class Versions:
    """What one check learns from PostgreSQL on a warm process."""

    tokens: dict[versions.VersionKey, int]
    reference: int | None
    """The reference data token (app/core/reference.py)."""
    used_order_ids: bool
    """Some ``client_order_id`` of the basket was already checked on this subaccount."""


@dataclass(frozen=True)
class VersionsAsk:
    """What one check asks PostgreSQL on a warm process."""

    keys: Sequence[versions.VersionKey]
    subaccount_id: str
    client_order_ids: Sequence[str]


_VERSIONS_SQL = """
SELECT k.n, k.scope, k.id, v.token FROM unnest($1::int[], $2::text[], $3::text[]) AS k(n, scope, id)
  JOIN state_versions v ON v.scope = k.scope AND v.id = k.id
UNION ALL SELECT -1, 'reference', '', token FROM reference_version WHERE id = 1
UNION ALL SELECT o.n, 'order', o.id, 0 FROM unnest($4::int[], $5::text[], $6::text[]) AS o(n, sub, id)
  JOIN check_orders c ON c.subaccount_id = o.sub AND c.client_order_id = o.id
"""


async def read_versions(db: HotDb, asks: Sequence[VersionsAsk]) -> list[Versions]:
    """The versions each of ``asks`` learns (its keys' tokens, the reference token, whether an
    order id was used): one statement for all of them on PostgreSQL."""
    if isinstance(db, AsyncSession):
        from app.core.reference import reference_token

        return [
            Versions(
                await versions.tokens(db, ask.keys),
                await reference_token(db),
                bool(await checks_for_order_ids(db, ask.subaccount_id, ask.client_order_ids)),
            )
            for ask in asks
        ]
    numbers, scopes, ids = [], [], []
    order_numbers, order_subaccounts, order_ids = [], [], []
    for n, ask in enumerate(asks):
        for scope, ident in ask.keys:
            numbers.append(n)
            scopes.append(scope)
            ids.append(ident)
        for order_id in ask.client_order_ids:
            order_numbers.append(n)
            order_subaccounts.append(ask.subaccount_id)
            order_ids.append(order_id)
    rows = await db.fetch(
        _VERSIONS_SQL, numbers, scopes, ids, order_numbers, order_subaccounts, order_ids
    )
    tokens: list[dict[versions.VersionKey, int]] = [{} for _ in asks]
    used = [False] * len(asks)
    reference = None
    for n, scope, ident, token in rows:
        if scope == "reference":
            reference = token
        elif scope == "order":
            used[n] = True
        else:
            tokens[n][(scope, ident)] = token
    return [Versions(t, reference, u) for t, u in zip(tokens, used, strict=True)]


async def lock_for_reservation(db: HotDb, subaccount_id: str, account_id: str | None) -> None:
    """Row-lock the account (when its caps span subaccounts) and the subaccount until commit:
    reserving checks on them queue here, across processes. Its own statement, before the
    versions are read: a statement that waited for a lock still reads the snapshot it started
    with, and would miss what the previous holder committed."""
    if isinstance(db, AsyncSession):
        return  # SQLite: BEGIN IMMEDIATE already serialises writers
    if account_id is not None:
        await db.execute("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)
    await db.execute("SELECT 1 FROM subaccounts WHERE subaccount_id = $1 FOR UPDATE", subaccount_id)


@dataclass(frozen=True)
class CheckRow:
    """Everything one check writes: its answer, its order ids, its reservation, its audit
    entry (the answer's bytes reused in the payload)."""

    check_id: str
    subaccount_id: str
    account_id: str
    actor_key_id: str | None
    request_hash: str
    response_json: str
    audit_payload: str
    created_at: datetime
    client_order_ids: list[str]
    reservation: tuple[str, list[dict[str, Any]], datetime] | None
    """``(reservation_id, legs, expires_at)``."""
    judged_at_token: int | None = None
    """A reservation written without the subaccount's row lock: the subaccount's token the
    check was judged at. It is written only if the token is still that (nothing moved since);
    None writes it whatever the token (the check holds the row lock)."""


async def insert_check(db: HotDb, row: CheckRow) -> int | None:
    """One statement on PostgreSQL: all of it commits, or none (a reused order id is a
    unique violation, answered 409 and retried into a replay). The subaccount's new token when
    the row holds a reservation (PostgreSQL; None on SQLite, whose triggers change it)."""
    reservation_id, legs, expires_at = row.reservation or (None, None, None)
    if isinstance(db, AsyncSession):
        from app.audit import service as audit

        add(
            db,
            CheckRecord(
                check_id=row.check_id,
                subaccount_id=row.subaccount_id,
                request_hash=row.request_hash,
                response=json.loads(row.response_json),
                created_at=row.created_at,
            ),
        )
        await db.flush()
        for order_id in row.client_order_ids:
            add(db, OrderId(subaccount_id=row.subaccount_id, client_order_id=order_id,
                            check_id=row.check_id))  # fmt: skip
        if reservation_id is not None and legs is not None and expires_at is not None:
            add(
                db,
                Reservation(
                    reservation_id=reservation_id,
                    check_id=row.check_id,
                    subaccount_id=row.subaccount_id,
                    status="active",
                    legs=legs,
                    created_at=row.created_at,
                    expires_at=expires_at,
                    closed_at=None,
                ),
            )
        await db.flush()
        await audit.record_text(
            db,
            "check",
            audit.Actor(row.actor_key_id),
            row.audit_payload,
            account_id=row.account_id,
            subaccount_id=row.subaccount_id,
        )
        return None
    return (await insert_checks(db, [row])).get(row.subaccount_id)


_INSERT_CHECKS_SQL = """
WITH locked AS (
  SELECT subaccount_id FROM subaccounts WHERE subaccount_id = ANY($18::text[])
   ORDER BY subaccount_id FOR KEY SHARE
), claim AS (
  UPDATE state_versions v SET token = floor(random() * 9223372036854775806)::bigint
    FROM unnest($18::text[], $19::bigint[]) AS e(id, judged_at)
   WHERE v.scope = 'subaccount' AND v.id = e.id AND e.id IN (SELECT subaccount_id FROM locked)
     AND (e.judged_at IS NULL OR v.token = e.judged_at)
  RETURNING v.id, v.token
), kept AS (
  SELECT k.check_id FROM unnest($1::text[], $2::text[], $20::bool[]) AS k(check_id, sub, claims)
   WHERE NOT k.claims OR k.sub IN (SELECT id FROM claim)
), answers AS (
  INSERT INTO checks (check_id, subaccount_id, request_hash, response, created_at)
  SELECT a.* FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])
      AS a(check_id, subaccount_id, request_hash, response, created_at)
   WHERE a.check_id IN (SELECT check_id FROM kept)
), orders AS (
  INSERT INTO check_orders (subaccount_id, client_order_id, check_id)
  SELECT o.* FROM unnest($6::text[], $7::text[], $8::text[]) AS o(sub, id, check_id)
   WHERE o.check_id IN (SELECT check_id FROM kept)
), held AS (
  INSERT INTO reservations
    (reservation_id, check_id, subaccount_id, status, legs, created_at, expires_at)
  SELECT r.id, r.check_id, r.subaccount_id, 'active', r.legs, r.created_at, r.expires_at
    FROM unnest($12::text[], $13::text[], $14::text[], $15::jsonb[], $16::timestamptz[],
                $17::timestamptz[]) AS r(id, check_id, subaccount_id, legs, created_at, expires_at)
   WHERE r.check_id IN (SELECT check_id FROM kept)
), entries AS (
  INSERT INTO audit_log (kind, actor_key_id, account_id, subaccount_id, payload, created_at)
  SELECT 'check', l.actor, l.account, l.sub, l.payload, l.created_at
    FROM unnest($9::text[], $10::text[], $2::text[], $11::text[], $5::timestamptz[], $1::text[])
      AS l(actor, account, sub, payload, created_at, check_id)
   WHERE l.check_id IN (SELECT check_id FROM kept)
)
SELECT id, token FROM claim
"""


async def insert_checks(db: asyncpg.Connection, rows: Sequence[CheckRow]) -> dict[str, int]:
    """The records of checks, their order ids, reservations and audit entries, in one
    statement (PostgreSQL): all of them commit, or none (a reused order id in any is a unique
    violation, answered 409 and retried into a replay).

    A row with a reservation gives its subaccount a new token in the same statement (the
    migration e7a1c3b5d9f2 took that off the reservations trigger), and one judged at a token
    (``judged_at_token``) is written only if its subaccount still has it: one that does not
    writes nothing. Locks in the order every writer of a subaccount takes them — its row
    first (here a key share, which waits for a fill's, transfer's or locked reserving check's
    row lock), then its version — so none of them deadlocks with another. Answers the new
    token of each subaccount whose reservation was written. At most one reservation row per
    subaccount: a process writes one at a time per subaccount (its reserving checks there
    queue on a gate)."""
    held = [(row, row.reservation) for row in rows if row.reservation is not None]
    claims = sorted((row.subaccount_id, row.judged_at_token) for row, _ in held)
    assert len({sid for sid, _ in claims}) == len(claims), "two reservations of one subaccount"
    orders = [(row.subaccount_id, o, row.check_id) for row in rows for o in row.client_order_ids]
    written = await db.fetch(
        _INSERT_CHECKS_SQL,
        [row.check_id for row in rows],
        [row.subaccount_id for row in rows],
        [row.request_hash for row in rows],
        [row.response_json for row in rows],
        [row.created_at for row in rows],
        [subaccount for subaccount, _, _ in orders],
        [order_id for _, order_id, _ in orders],
        [check_id for _, _, check_id in orders],
        [row.actor_key_id for row in rows],
        [row.account_id for row in rows],
        [row.audit_payload for row in rows],
        [reservation_id for _, (reservation_id, _, _) in held],
        [row.check_id for row, _ in held],
        [row.subaccount_id for row, _ in held],
        [json.dumps(legs) for _, (_, legs, _) in held],
        [row.created_at for row, _ in held],
        [expires_at for _, (_, _, expires_at) in held],
        [subaccount_id for subaccount_id, _ in claims],
        [judged_at for _, judged_at in claims],
        [row.reservation is not None for row in rows],
    )
    return {subaccount_id: int(token) for subaccount_id, token in written}


async def lock_rate_window(db: HotDb, account_id: str) -> None:
    """While Redis cannot count the order-rate window, checks of one account count it from
    PostgreSQL one at a time: this lock, held until the check is written, makes the count and
    the write one step."""
    if not isinstance(db, AsyncSession):
        await db.execute("SELECT pg_advisory_xact_lock(hashtext('pf:rate:' || $1))", account_id)
