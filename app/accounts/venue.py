"""State from the venue: fills, transfers and snapshots. Each is idempotent by its id: a replay
answers the first result and changes nothing; the same id with other content is a conflict."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository, reservations
from app.accounts.fills import apply_fill
from app.accounts.isolated import isolated_allocation
from app.accounts.models import Balance, Fill, Position, Subaccount, Transfer
from app.accounts.schemas import (
    BalancesOut,
    FillIn,
    FillOut,
    PositionOut,
    PositionsOut,
    SnapshotIn,
    TransferIn,
    TransferOut,
)
from app.audit import service as audit
from app.audit.chain import canonical_json
from app.auth.principal import Principal
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.types import utcnow
from app.instruments import repository as instruments_repository
from app.instruments.models import Asset, Instrument


def request_hash(item: BaseModel) -> str:
    return hashlib.sha256(canonical_json(item.model_dump(mode="json")).encode()).hexdigest()


async def _settlement(session: AsyncSession) -> Asset:
    asset = await instruments_repository.settlement_asset(session)
    if asset is None:
        raise Conflict("no settlement asset is configured (PUT /v1/assets/{symbol})")
    return asset


def _credit(
    session: AsyncSession,
    balances: dict[str, Balance],
    subaccount_id: str,
    asset: str,
    amount: Decimal,
) -> Balance:
    balance = balances.get(asset)
    if balance is None:
        balance = Balance(subaccount_id=subaccount_id, asset=asset, amount=Decimal(0))
        repository.add(session, balance)
        balances[asset] = balance
    balance.amount = balance.amount + amount
    return balance


# --- fills ----------------------------------------------------------------------------------


def fill_out(fill: Fill) -> FillOut:
    return FillOut(
        fill_id=fill.fill_id,
        subaccount_id=fill.subaccount_id,
        instrument=fill.instrument,
        side=fill.side,
        size=fill.size,
        price=fill.price,
        fee=fill.fee,
        fee_asset=fill.fee_asset,
        client_order_id=fill.client_order_id,
        ts=fill.ts,
        realized_pnl=fill.realized_pnl,
        position_size=fill.position_size_after,
        entry_price=fill.entry_price_after,
    )


async def record_fills(
    session: AsyncSession, principal: Principal, fills: Sequence[FillIn]
) -> list[Fill]:
    """Apply a batch of fills, all or nothing, in the order given."""
    subaccounts: dict[str, Subaccount] = {}
    for index, item in enumerate(fills):
        if item.subaccount_id not in subaccounts:
            subaccount = await repository.get_subaccount(session, item.subaccount_id)
            if subaccount is None or not principal.sees(subaccount.account_id):
                raise NotFound(
                    f"fills[{index}].subaccount_id: subaccount {item.subaccount_id!r} not found"
                )
            subaccounts[item.subaccount_id] = subaccount
    instruments = await instruments_repository.get_instruments(
        session, [item.instrument for item in fills]
    )
    settlement = await _settlement(session)
    assets: set[str] = {settlement.symbol}
    for index, item in enumerate(fills):
        if item.instrument not in instruments:
            raise InvalidInput(
                f"fills[{index}].instrument", f"unknown instrument {item.instrument!r}"
            )
        _holdable(
            f"fills[{index}].instrument",
            instruments[item.instrument],
            subaccounts[item.subaccount_id],
        )
        if item.fee_asset is not None and item.fee_asset not in assets:
            if await instruments_repository.get_asset(session, item.fee_asset) is None:
                raise InvalidInput(f"fills[{index}].fee_asset", f"unknown asset {item.fee_asset!r}")
            assets.add(item.fee_asset)

    # Lock first, then look for earlier copies: a concurrent replay waits and then sees ours.
    await repository.lock_subaccounts(session, subaccounts)
    # Fill ids are unique per subaccount: another subaccount's same id is another fill.
    keys = [(item.subaccount_id, item.fill_id) for item in fills]
    stored = await repository.get_fills(session, keys)
    hashes = [request_hash(item) for item in fills]
    for index, (key, item, digest) in enumerate(zip(keys, fills, hashes, strict=True)):
        earlier = stored.get(key)
        if earlier is not None and earlier.request_hash != digest:
            raise Conflict(
                f"fills[{index}].fill_id {item.fill_id!r} was already recorded with other content"
            )

    positions = {sid: await repository.positions_of(session, sid) for sid in subaccounts}
    leverage = {
        sid: {
            symbol: row.leverage
            for symbol, row in (await repository.leverage_of(session, sid)).items()
        }
        for sid in subaccounts
    }
    balances = {sid: await repository.balances_of(session, sid) for sid in subaccounts}
    now = utcnow()
    result: list[Fill] = []
    for key, item, digest in zip(keys, fills, hashes, strict=True):
        if key in stored:
            result.append(stored[key])
            continue
        instrument = instruments[item.instrument]
        held = positions[item.subaccount_id]
        position = held.get(item.instrument)
        if position is None:
            position = Position(
                subaccount_id=item.subaccount_id,
                instrument=item.instrument,
                size=Decimal(0),
                entry_price=Decimal(0),
                isolated_margin=Decimal(0),
                realized_pnl=Decimal(0),
            )
            repository.add(session, position)
            held[item.instrument] = position
        delta = item.size if item.side == "buy" else -item.size
        effect = apply_fill(
            position.size, position.entry_price, delta, item.price, instrument.contract_size
        )
        sub_balances = balances[item.subaccount_id]
        if effect.closed_size and position.isolated_margin:
            # Closing part of an isolated position frees that share of its allocated margin.
            released = position.isolated_margin * effect.closed_size / abs(position.size)
            position.isolated_margin -= released
            _credit(session, sub_balances, item.subaccount_id, settlement.symbol, released)
        position.size, position.entry_price = effect.size, effect.entry_price
        position.realized_pnl += effect.realized_pnl
        position.updated_at = now
        growing = effect.closed_size < abs(delta)
        if subaccounts[item.subaccount_id].margin_mode == "isolated" and growing:
            allocation = isolated_allocation(
                instrument,
                effect.size,
                effect.entry_price,
                item.price,
                position.isolated_margin,
                leverage[item.subaccount_id].get(item.instrument),
            )
            position.isolated_margin += allocation
            _credit(session, sub_balances, item.subaccount_id, settlement.symbol, -allocation)
        # An option's premium moves at the fill (a buy pays it, a sell receives it); its
        # realised PnL is recorded for reporting only: the premium already moved the cash.
        cash = (
            -delta * instrument.contract_size * item.price
            if instrument.kind == "option"
            else effect.realized_pnl
        )
        _credit(session, sub_balances, item.subaccount_id, settlement.symbol, cash)
        fee_asset = item.fee_asset or settlement.symbol
        _credit(session, sub_balances, item.subaccount_id, fee_asset, -item.fee)
        fill = Fill(
            fill_id=item.fill_id,
            subaccount_id=item.subaccount_id,
            instrument=item.instrument,
            side=item.side,
            size=item.size,
            price=item.price,
            fee=item.fee,
            fee_asset=fee_asset,
            client_order_id=item.client_order_id,
            ts=item.ts,
            realized_pnl=effect.realized_pnl,
            position_size_after=effect.size,
            entry_price_after=effect.entry_price,
            request_hash=digest,
            created_at=now,
        )
        repository.add(session, fill)
        if item.client_order_id is not None:
            await reservations.consume(session, item.subaccount_id, item.client_order_id, item.size)
        stored[key] = fill
        result.append(fill)
        await audit.record(
            session,
            "fill",
            principal.actor,
            fill_out(fill).model_dump(mode="json"),
            account_id=subaccounts[item.subaccount_id].account_id,
            subaccount_id=item.subaccount_id,
        )
    await session.flush()
    return result


# --- transfers -------------------------------------------------------------------------------


def transfer_out(transfer: Transfer) -> TransferOut:
    return TransferOut.model_validate(transfer, from_attributes=True)


async def record_transfer(
    session: AsyncSession,
    principal: Principal,
    subaccount: Subaccount,
    body: TransferIn,
    check_withdrawal: Callable[[Subaccount, str, Decimal], Awaitable[None]],
) -> tuple[Transfer, bool]:
    """Apply a deposit, withdrawal or transfer; the second value is False for a replay.
    ``check_withdrawal(subaccount, asset, amount)`` refuses an amount that may not leave (the
    margin check, app/risk); it runs under the lock, after the replay check, before the debit."""
    digest = request_hash(body)
    if await instruments_repository.get_asset(session, body.asset) is None:
        raise InvalidInput("asset", f"unknown asset {body.asset!r}")
    destination: Subaccount | None = None
    if body.to_subaccount_id is not None:
        destination = await repository.get_subaccount(session, body.to_subaccount_id)
        if destination is None or not principal.sees(destination.account_id):
            raise InvalidInput("to_subaccount_id", f"unknown subaccount {body.to_subaccount_id!r}")
        if destination.subaccount_id == subaccount.subaccount_id:
            raise InvalidInput("to_subaccount_id", "must differ from the source subaccount")
    locked = [subaccount.subaccount_id] + ([destination.subaccount_id] if destination else [])
    await repository.lock_subaccounts(session, locked)
    # Transfer ids are unique per source subaccount: one used elsewhere is neither a replay
    # nor a conflict here (nor revealed).
    earlier = await repository.get_transfer(session, subaccount.subaccount_id, body.transfer_id)
    if earlier is not None:
        if earlier.request_hash != digest:
            raise Conflict(f"transfer_id {body.transfer_id!r} was already used with other content")
        return earlier, False

    balances = await repository.balances_of(session, subaccount.subaccount_id)
    if body.kind == "deposit":
        _credit(session, balances, subaccount.subaccount_id, body.asset, body.amount)
    else:
        await check_withdrawal(subaccount, body.asset, body.amount)
        _credit(session, balances, subaccount.subaccount_id, body.asset, -body.amount)
        if destination is not None:
            target = await repository.balances_of(session, destination.subaccount_id)
            _credit(session, target, destination.subaccount_id, body.asset, body.amount)
    transfer = Transfer(
        transfer_id=body.transfer_id,
        subaccount_id=subaccount.subaccount_id,
        asset=body.asset,
        amount=body.amount,
        kind=body.kind,
        to_subaccount_id=body.to_subaccount_id,
        request_hash=digest,
        created_at=utcnow(),
    )
    repository.add(session, transfer)
    await session.flush()
    await audit.record(
        session,
        "transfer",
        principal.actor,
        transfer_out(transfer).model_dump(mode="json"),
        account_id=subaccount.account_id,
        subaccount_id=subaccount.subaccount_id,
    )
    return transfer, True


# --- snapshots, positions, balances -------------------------------------------------------


def _holdable(name: str, instrument: Instrument, subaccount: Subaccount) -> None:
    """Options are held in cross and portfolio subaccounts only (margin.md "Options")."""
    if instrument.kind == "option" and subaccount.margin_mode == "isolated":
        raise InvalidInput(
            name, f"option {instrument.symbol!r}: options are not held in isolated mode"
        )


async def check_snapshot(session: AsyncSession, body: SnapshotIn, subaccount: Subaccount) -> None:
    """Every asset and instrument a snapshot names must exist, and be holdable by the
    subaccount (422 naming the field)."""
    for asset in body.balances:
        if await instruments_repository.get_asset(session, asset) is None:
            raise InvalidInput(f"balances.{asset}", f"unknown asset {asset!r}")
    instruments = await instruments_repository.get_instruments(
        session, [p.instrument for p in body.positions]
    )
    for index, item in enumerate(body.positions):
        if item.instrument not in instruments:
            raise InvalidInput(
                f"positions[{index}].instrument", f"unknown instrument {item.instrument!r}"
            )
        if item.size != 0:
            _holdable(f"positions[{index}].instrument", instruments[item.instrument], subaccount)


async def load_snapshot(
    session: AsyncSession, principal: Principal, subaccount: Subaccount, body: SnapshotIn
) -> None:
    """Replace the subaccount's balances and positions with the venue's. Realised PnL carries
    over for instruments still held."""
    await check_snapshot(session, body, subaccount)
    await repository.lock_subaccounts(session, [subaccount.subaccount_id])
    previous = await repository.positions_of(session, subaccount.subaccount_id)
    realized = {symbol: row.realized_pnl for symbol, row in previous.items()}
    await repository.delete_positions(session, subaccount.subaccount_id)
    await repository.delete_balances(session, subaccount.subaccount_id)
    await session.flush()
    now = utcnow()
    for asset, amount in body.balances.items():
        repository.add(
            session, Balance(subaccount_id=subaccount.subaccount_id, asset=asset, amount=amount)
        )
    for item in body.positions:
        if item.size == 0:
            continue
        repository.add(
            session,
            Position(
                subaccount_id=subaccount.subaccount_id,
                instrument=item.instrument,
                size=item.size,
                entry_price=item.entry_price,
                isolated_margin=item.isolated_margin or Decimal(0),
                realized_pnl=realized.get(item.instrument, Decimal(0)),
                updated_at=now,
            ),
        )
    await session.flush()
    await audit.record(
        session,
        "snapshot",
        principal.actor,
        {"subaccount_id": subaccount.subaccount_id, **body.model_dump(mode="json")},
        account_id=subaccount.account_id,
        subaccount_id=subaccount.subaccount_id,
    )


async def positions_out(session: AsyncSession, subaccount: Subaccount) -> PositionsOut:
    rows = await repository.positions_of(session, subaccount.subaccount_id)
    return PositionsOut(
        subaccount_id=subaccount.subaccount_id,
        positions=[
            PositionOut.model_validate(row, from_attributes=True)
            for row in rows.values()
            if row.size != 0
        ],
    )


async def balances_out(session: AsyncSession, subaccount: Subaccount) -> BalancesOut:
    rows = await repository.balances_of(session, subaccount.subaccount_id)
    return BalancesOut(
        subaccount_id=subaccount.subaccount_id,
        balances={asset: row.amount for asset, row in rows.items()},
    )
