"""Reference data: collateral assets and instruments with their margin tiers."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.core.config import Settings
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.types import utcnow
from app.instruments import repository
from app.instruments.models import Asset, Instrument
from app.instruments.schemas import (
    AssetIn,
    AssetOut,
    InstrumentIn,
    InstrumentOut,
    MarginTierOut,
)


async def put_asset(
    session: AsyncSession, actor: audit.Actor, symbol: str, body: AssetIn
) -> tuple[Asset, bool]:
    """Create or replace an asset; the second value says whether it was created."""
    if body.is_settlement:
        current = await repository.settlement_asset(session)
        if current is not None and current.symbol != symbol:
            raise Conflict(f"{current.symbol} is already the settlement asset; there is only one")
    asset = await repository.get_asset(session, symbol)
    created = asset is None
    if asset is None:
        asset = Asset(symbol=symbol)
        repository.add(session, asset)
    elif asset.is_settlement and not body.is_settlement:
        raise Conflict(f"{symbol} is the settlement asset and cannot stop being it")
    asset.collateral_weight = body.collateral_weight
    asset.underlying = body.underlying
    asset.is_settlement = body.is_settlement
    asset.updated_at = utcnow()
    await session.flush()
    await audit.record(session, "asset.put", actor, {"symbol": symbol, **body.model_dump()})
    return asset, created


async def get_asset(session: AsyncSession, symbol: str) -> Asset:
    asset = await repository.get_asset(session, symbol)
    if asset is None:
        raise NotFound(f"asset {symbol!r} not found")
    return asset


async def list_assets(session: AsyncSession) -> Sequence[Asset]:
    return await repository.list_assets(session)


def _tiers(body: InstrumentIn) -> list[dict[str, str]]:
    return [
        {
            "notional_floor": str(tier.notional_floor),
            "initial_margin_fraction": str(tier.initial_margin_fraction),
            "maintenance_margin_fraction": str(
                tier.maintenance_margin_fraction
                if tier.maintenance_margin_fraction is not None
                else tier.initial_margin_fraction / 2
            ),
        }
        for tier in body.margin_tiers or ()
    ]


def _check_option_expiry(instrument: Instrument | None, body: InstrumentIn) -> None:
    """An option is created with an expiry still ahead (api.md, reference data). An update of an
    existing option may keep its expiry, even once past; moving it, or turning another kind into
    an option, is judged like a creation."""
    if body.kind != "option" or body.expiry is None:
        return
    kept = (
        instrument is not None and instrument.kind == "option" and instrument.expiry == body.expiry
    )
    if not kept and body.expiry <= utcnow():
        raise InvalidInput("expiry", "must be in the future when an option is created")


async def put_instrument(
    session: AsyncSession, actor: audit.Actor, symbol: str, body: InstrumentIn
) -> tuple[Instrument, bool]:
    instrument = await repository.get_instrument(session, symbol)
    _check_option_expiry(instrument, body)
    created = instrument is None
    if instrument is None:
        instrument = Instrument(symbol=symbol)
        repository.add(session, instrument)
    elif _terms_change(instrument, body) and await repository.has_open_positions(session, symbol):
        raise Conflict(
            f"{symbol} has open positions; its kind, contract_size, option_type and strike "
            "cannot change"
        )
    instrument.kind = body.kind
    instrument.underlying = body.underlying
    instrument.contract_size = body.contract_size
    instrument.tick_size = body.tick_size
    instrument.lot_size = body.lot_size
    instrument.margin_tiers = _tiers(body)
    instrument.taker_fee_rate = body.taker_fee_rate
    instrument.maker_fee_rate = body.maker_fee_rate
    instrument.price_band = body.price_band
    instrument.max_order_notional = body.max_order_notional
    instrument.expiry = body.expiry
    instrument.option_type = body.option_type
    instrument.strike = body.strike
    instrument.funding_interval_s = body.funding_interval_s
    instrument.stale_after_s = body.stale_after_s
    instrument.max_twap_deviation = body.max_twap_deviation
    instrument.updated_at = utcnow()
    await session.flush()
    await audit.record(
        session, "instrument.put", actor, {"symbol": symbol, **body.model_dump(mode="json")}
    )
    return instrument, created


def _terms_change(instrument: Instrument, body: InstrumentIn) -> bool:
    """Whether the PUT changes what an open position in the instrument is."""
    return (
        instrument.kind != body.kind
        or instrument.contract_size != body.contract_size
        or instrument.option_type != body.option_type
        or instrument.strike != body.strike
    )


async def get_instrument(session: AsyncSession, symbol: str) -> Instrument:
    instrument = await repository.get_instrument(session, symbol)
    if instrument is None:
        raise NotFound(f"instrument {symbol!r} not found")
    return instrument


async def list_instruments(session: AsyncSession) -> Sequence[Instrument]:
    return await repository.list_instruments(session)


def asset_out(asset: Asset) -> AssetOut:
    return AssetOut.model_validate(asset, from_attributes=True)


def instrument_out(instrument: Instrument, settings: Settings) -> InstrumentOut:
    tiers = [MarginTierOut.model_validate(tier) for tier in instrument.margin_tiers]
    return InstrumentOut(
        symbol=instrument.symbol,
        kind=instrument.kind,
        underlying=instrument.underlying,
        contract_size=instrument.contract_size,
        tick_size=instrument.tick_size,
        lot_size=instrument.lot_size,
        margin_tiers=tiers,
        taker_fee_rate=instrument.taker_fee_rate,
        maker_fee_rate=instrument.maker_fee_rate,
        price_band=instrument.price_band,
        max_order_notional=instrument.max_order_notional,
        expiry=instrument.expiry,
        option_type=instrument.option_type,
        strike=instrument.strike,
        funding_interval_s=instrument.funding_interval_s,
        stale_after_s=stale_after_s(instrument, settings),
        max_twap_deviation=max_twap_deviation(instrument, settings),
        max_leverage=max_leverage(instrument),
        updated_at=instrument.updated_at,
    )


def max_leverage(instrument: Instrument) -> Decimal | None:
    """The most a chosen leverage may be: 1 / the first tier's initial margin fraction. None for
    an instrument without tiers (an option: tiers and chosen leverage do not apply to it)."""
    if not instrument.margin_tiers:
        return None
    return 1 / Decimal(instrument.margin_tiers[0]["initial_margin_fraction"])


def stale_after_s(instrument: Instrument | None, settings: Settings) -> Decimal:
    return stale_after_or_default(
        None if instrument is None else instrument.stale_after_s, settings
    )


def stale_after_or_default(own: Decimal | None, settings: Settings) -> Decimal:
    """An instrument's own ``stale_after_s``, else the default (assets and indices too)."""
    return Decimal(str(settings.default_stale_after_s)) if own is None else own


def max_twap_deviation(instrument: Instrument | None, settings: Settings) -> Decimal:
    return max_twap_deviation_or_default(
        None if instrument is None else instrument.max_twap_deviation, settings
    )


def max_twap_deviation_or_default(own: Decimal | None, settings: Settings) -> Decimal:
    return Decimal(str(settings.default_max_twap_deviation)) if own is None else own
