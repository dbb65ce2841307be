"""What a check reads of PostgreSQL, kept resident in the process under version tokens
(app/core/versions.py): the subaccount (positions, balances, leverage, active reservations,
today's realised PnL), its account and siblings, the trading states. A check reads the tokens
in one statement and reloads only what moved, in one statement per kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, cast

from app.accounts import repository as accounts_repository
from app.accounts.models import Account, Reservation, Subaccount
from app.core.db import HotDb
from app.core.versions import TRADING, Resident, VersionKey
from app.pretrade import repository
from app.risk.book import Holding


@dataclass(frozen=True)
class SubaccountState:
    subaccount: Subaccount
    """Detached, shared by every check: read-only."""
    holdings: tuple[Holding, ...]
    balances: Mapping[str, Decimal]
    leverage: Mapping[str, Decimal]
    reservations: tuple[Reservation, ...]
    """Active when loaded; expiry is by time, so each use filters (:meth:`held`)."""
    realized_since: datetime
    realized_today: Decimal
    unrealized_at_start: Decimal
    """Unrealised PnL when the day opened (its end-of-day capture; 0 without one): today's
    loss counts the change since, not the whole of today's unrealised PnL."""
    memo: dict[object, Any] = field(default_factory=dict, compare=False)
    """What checks computed from this state (it is gone with the state when it moves)."""

    def held(self, now: datetime) -> tuple[Reservation, ...]:
        """The reservations still active at ``now``."""
        if not self.reservations or self.last_expiry <= now:
            return ()
        return tuple(r for r, until in zip(self.reservations, self.expiries, strict=True)
                     if until > now)  # fmt: skip

    @cached_property
    def expiries(self) -> tuple[datetime, ...]:
        """Each reservation's expiry, read once per state (not through the ORM per check)."""
        return tuple(r.expires_at for r in self.reservations)

    @cached_property
    def last_expiry(self) -> datetime:
        return max(self.expiries)

    @cached_property
    def instruments(self) -> frozenset[str]:
        """The instruments it holds a position in."""
        return frozenset(h.instrument for h in self.holdings)


@dataclass(frozen=True)
class AccountState:
    account: Account
    subaccount_ids: tuple[str, ...]


STRICTNESS = {"active": 0, "reduce_only": 1, "halted": 2}


@dataclass(frozen=True)
class TradingStates:
    states: Mapping[tuple[str, str], str]

    def governing(
        self, account_id: str, subaccount_id: str, instruments: Sequence[str]
    ) -> dict[str, str]:
        """The states over an order of this subaccount in these instruments, keyed as the
        rules read them (``global``, ``account``, ``subaccount``, ``instrument:X``)."""
        found = {}
        for key, scope_id in (
            ("global", ""),
            ("account", account_id),
            ("subaccount", subaccount_id),
        ):
            state = self.states.get((key, scope_id))
            if state is not None:
                found[key] = state
        for symbol in instruments:
            state = self.states.get(("instrument", symbol))
            if state is not None:
                found[f"instrument:{symbol}"] = state
        return found


def subaccount_key(subaccount_id: str) -> VersionKey:
    return ("subaccount", subaccount_id)


def account_key(account_id: str) -> VersionKey:
    return ("account", account_id)


def known_subaccount(resident: Resident, subaccount_id: str) -> SubaccountState | None:
    """The last state kept, current or not."""
    return cast(SubaccountState | None, resident.peek(subaccount_key(subaccount_id)))


def known_account(resident: Resident, account_id: str) -> AccountState | None:
    return cast(AccountState | None, resident.peek(account_key(account_id)))


async def subaccounts(
    db: HotDb,
    resident: Resident,
    tokens: Mapping[VersionKey, int],
    subaccount_ids: Sequence[str],
    since: datetime,
    now: datetime,
    settlement: str,
) -> dict[str, SubaccountState]:
    """The states of ``subaccount_ids`` that exist: resident where ``tokens`` match, the rest
    loaded in one statement (and kept). Today's PnL counts fills since ``since``."""
    found: dict[str, SubaccountState] = {}
    stale = []
    for subaccount_id in subaccount_ids:
        kept = cast(
            SubaccountState | None,
            resident.get(subaccount_key(subaccount_id), tokens.get(subaccount_key(subaccount_id))),
        )
        if kept is not None and kept.realized_since == since:
            found[subaccount_id] = kept
        else:
            stale.append(subaccount_id)
    if stale:
        for loaded in await repository.load_subaccounts(db, stale, since, now, settlement):
            subaccount_id = loaded.subaccount.subaccount_id
            state = _loaded_state(loaded, since, known_subaccount(resident, subaccount_id))
            resident.put(subaccount_key(subaccount_id), loaded.token, state)
            found[subaccount_id] = state
    return found


def _loaded_state(
    loaded: repository.LoadedSubaccount, since: datetime, last: SubaccountState | None
) -> SubaccountState:
    """The state as loaded, reusing the objects of the last state kept where they are equal:
    what checks computed from them (positions as floats and text, reservations as fills,
    evaluations in the memo, all keyed by content) stays computed when only a part moved."""
    kept_holdings = {} if last is None else {_holding_key(h): h for h in last.holdings}
    kept_reservations = {} if last is None else {r.reservation_id: r for r in last.reservations}
    holdings = []
    for position in loaded.state.positions:
        holding = Holding(*position)
        holdings.append(kept_holdings.get(_holding_key(holding), holding))
    reservations = []
    for reservation_id, check_id, legs, created_at, expires_at in loaded.reservations:
        kept = kept_reservations.get(reservation_id)
        if kept is None or kept.expires_at != expires_at:
            kept = Reservation(
                reservation_id=reservation_id,
                check_id=check_id,
                subaccount_id=loaded.subaccount.subaccount_id,
                status="active",
                legs=legs,
                created_at=created_at,
                expires_at=expires_at,
                closed_at=None,
            )
        reservations.append(kept)
    return SubaccountState(
        subaccount=loaded.subaccount,
        holdings=tuple(holdings),
        balances=loaded.state.balances,
        leverage=loaded.state.leverage,
        reservations=tuple(reservations),
        realized_since=since,
        realized_today=loaded.realized_today,
        unrealized_at_start=loaded.unrealized_at_start or Decimal(0),
        memo={} if last is None else last.memo,
    )


def _holding_key(holding: Holding) -> tuple[str, Decimal, Decimal, Decimal]:
    return (holding.instrument, holding.size, holding.entry_price, holding.isolated_margin)


def with_reservation(
    resident: Resident, held: SubaccountState, token: int, reservation: Reservation
) -> None:
    """Keep ``held`` plus a reservation this process has just written under ``token``, the
    subaccount's token read in the writing transaction (under its row lock): the next check
    here finds it current instead of loading it again. Harmless if the write rolls back: the
    token is then never read again. Reservations past their expiry are dropped from the kept
    state (they count nowhere), so it does not grow with every reservation written here."""
    active = tuple(r for r in held.reservations if r.expires_at > reservation.created_at)
    state = replace(held, reservations=(*active, reservation))
    resident.put(subaccount_key(held.subaccount.subaccount_id), token, state)


async def account(
    db: HotDb, resident: Resident, tokens: Mapping[VersionKey, int], account_id: str
) -> AccountState | None:
    key = account_key(account_id)
    kept = cast(AccountState | None, resident.get(key, tokens.get(key)))
    if kept is not None:
        return kept
    loaded = await accounts_repository.load_account(db, account_id)
    if loaded is None:
        return None
    state = AccountState(loaded.account, loaded.subaccount_ids)
    resident.put(key, loaded.token, state)
    return state


async def trading_states(
    db: HotDb, resident: Resident, tokens: Mapping[VersionKey, int]
) -> TradingStates:
    kept = cast(TradingStates | None, resident.get(TRADING, tokens.get(TRADING)))
    if kept is not None:
        return kept
    token, rows = await accounts_repository.load_trading_states(db)
    states: dict[tuple[str, str], str] = {}
    for scope, scope_id, state in rows:
        # A scope's manual and automatic states: the stricter governs.
        other = states.get((scope, scope_id))
        if other is None or STRICTNESS[state] > STRICTNESS[other]:
            states[(scope, scope_id)] = state
    trading = TradingStates(states)
    resident.put(TRADING, token, trading)
    return trading
