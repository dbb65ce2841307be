"""The demo desk that ``preflight serve --demo`` seeds, and the feed that keeps its marks fresh.

Tier tables follow Hyperliquid's published shape (maximum leverage falling with notional);
prices are illustrative.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts import service as accounts_service
from app.accounts import venue
from app.accounts.schemas import AccountIn, SnapshotIn, SubaccountIn
from app.audit.service import Actor
from app.auth.principal import Principal, Role
from app.auth.service import Caller
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import black76_value, years_to_expiry
from app.instruments import service as instruments_service
from app.instruments.schemas import AssetIn, InstrumentIn
from app.marketdata import service as marketdata
from app.marketdata.schemas import BookIn, MarkIn

log = logging.getLogger("preflight.demo")
SEEDER = Principal("demo-seed", Role.ADMIN, None)
FEEDER = Actor("demo-feed")
FEED_CALLER = Caller(Principal("demo-feed", Role.FEEDER, None), None, "")
"""The demo feed as a caller of the mark post (no key: nothing to confirm)."""
ACCOUNT = "fund-a"

ASSETS = {
    "USDC": AssetIn(collateral_weight=Decimal(1), is_settlement=True),
    "BTC": AssetIn(collateral_weight=Decimal("0.95"), underlying="BTC"),
    "ETH": AssetIn(collateral_weight=Decimal("0.9"), underlying="ETH"),
    "SOL": AssetIn(collateral_weight=Decimal("0.8"), underlying="SOL"),
}
PRICES = {
    "BTC-PERP": Decimal("97000"),
    "ETH-PERP": Decimal("3600"),
    "SOL-PERP": Decimal("240"),
    "BTC-20270326": Decimal("98200"),
    "BTC": Decimal("97000"),
    "ETH": Decimal("3600"),
    "SOL": Decimal("240"),
}
CALL = "BTC-20270326-100000-C"
CALL_IV = Decimal("0.55")
"""The demo's option: a BTC call struck at 100,000, marked at its Black-76 value at this
implied volatility and the BTC index of the moment."""
FUNDING = {
    "BTC-PERP": Decimal("0.0000125"),
    "ETH-PERP": Decimal("0.00001"),
    "SOL-PERP": Decimal("-0.000005"),
}


def _tiers(*rows: tuple[str, str]) -> list[dict[str, str]]:
    return [{"notional_floor": floor, "initial_margin_fraction": imf} for floor, imf in rows]


def _instruments() -> dict[str, InstrumentIn]:
    perpetual = {
        "kind": "perpetual",
        "funding_interval_s": 3600,
        "taker_fee_rate": "0.00045",
        "maker_fee_rate": "0.00015",
        "price_band": "0.05",
    }
    return {
        "BTC-PERP": InstrumentIn.model_validate(
            {
                **perpetual,
                "underlying": "BTC",
                "tick_size": "0.1",
                "lot_size": "0.0001",
                "margin_tiers": _tiers(("0", "0.025"), ("150000000", "0.05")),
            }
        ),
        "ETH-PERP": InstrumentIn.model_validate(
            {
                **perpetual,
                "underlying": "ETH",
                "tick_size": "0.01",
                "lot_size": "0.001",
                "margin_tiers": _tiers(("0", "0.04"), ("100000000", "0.1")),
            }
        ),
        "SOL-PERP": InstrumentIn.model_validate(
            {
                **perpetual,
                "underlying": "SOL",
                "tick_size": "0.001",
                "lot_size": "0.01",
                "margin_tiers": _tiers(("0", "0.05"), ("70000000", "0.1")),
            }
        ),
        "BTC-20270326": InstrumentIn.model_validate(
            {
                "kind": "future",
                "underlying": "BTC",
                "tick_size": "0.5",
                "lot_size": "0.001",
                "expiry": "2027-03-26T08:00:00Z",
                "taker_fee_rate": "0.0005",
                "maker_fee_rate": "0.0002",
                "price_band": "0.05",
                "margin_tiers": _tiers(("0", "0.05"), ("50000000", "0.1")),
            }
        ),
        CALL: InstrumentIn.model_validate(
            {
                "kind": "option",
                "underlying": "BTC",
                "option_type": "call",
                "strike": "100000",
                "expiry": "2027-03-26T08:00:00Z",
                "tick_size": "5",
                "lot_size": "0.01",
                "taker_fee_rate": "0.0003",
                "maker_fee_rate": "0.0003",
                "price_band": "0.5",
            }
        ),
    }


SUBACCOUNTS = {
    "fund-a.iso": (
        "isolated",
        None,
        {
            "balances": {"USDC": "50000"},
            "positions": [
                {
                    "instrument": "BTC-PERP",
                    "size": "1",
                    "entry_price": "96000",
                    "isolated_margin": "5000",
                },
                {
                    "instrument": "SOL-PERP",
                    "size": "-100",
                    "entry_price": "245",
                    "isolated_margin": "2000",
                },
            ],
        },
    ),
    "fund-a.cross": (
        "cross",
        "directional",
        {
            "balances": {"USDC": "250000", "ETH": "20"},
            "positions": [
                {"instrument": "BTC-PERP", "size": "2", "entry_price": "95500"},
                {"instrument": "ETH-PERP", "size": "-30", "entry_price": "3650"},
                {"instrument": "SOL-PERP", "size": "500", "entry_price": "235"},
                {"instrument": CALL, "size": "-1", "entry_price": "9800"},
            ],
        },
    ),
    "fund-a.basis": (
        "portfolio",
        "basis",
        {
            "balances": {"USDC": "20000", "BTC": "10"},
            "positions": [{"instrument": "BTC-PERP", "size": "-10", "entry_price": "96800"}],
        },
    ),
}


async def seed(session: AsyncSession) -> bool:
    """Load the demo desk into an empty database; False when it is already there."""
    if await accounts_repository.get_account(session, ACCOUNT) is not None:
        return False
    for symbol, asset in ASSETS.items():
        await instruments_service.put_asset(session, SEEDER.actor, symbol, asset)
    for symbol, instrument in _instruments().items():
        await instruments_service.put_instrument(session, SEEDER.actor, symbol, instrument)
    await accounts_service.create_account(
        session, SEEDER, AccountIn(account_id=ACCOUNT, name="Fund A")
    )
    for subaccount_id, (mode, strategy, snapshot) in SUBACCOUNTS.items():
        subaccount, _ = await accounts_service.create_subaccount(
            session,
            SEEDER,
            SubaccountIn(
                subaccount_id=subaccount_id, account_id=ACCOUNT, margin_mode=mode, strategy=strategy
            ),
        )
        await venue.load_snapshot(session, SEEDER, subaccount, SnapshotIn.model_validate(snapshot))
    return True


def _book(mark: Decimal, tick: Decimal, lot: Decimal, now: datetime) -> BookIn:
    """20 levels a side, one basis point apart, about $50,000 at the touch growing by $50,000
    a level (some $10 million a side)."""
    step = max(tick, (mark * Decimal("0.0001")).quantize(tick))
    base = max(lot, (Decimal(50_000) / mark).quantize(lot))
    bids = [(mark - step * (i + 1), base * (i + 1)) for i in range(20)]
    asks = [(mark + step * (i + 1), base * (i + 1)) for i in range(20)]
    return BookIn(bids=bids, asks=asks, ts=now)


async def publish(runtime: Runtime, prices: dict[str, Decimal]) -> None:
    """Marks from two sources for every symbol, and a fresh book for every instrument (each
    written as the feeder's requests write them)."""
    now = utcnow()
    instruments = _instruments()
    prices = {**prices, CALL: _call_value(instruments[CALL], prices["BTC"], now)}
    marks = []
    for symbol, price in prices.items():
        for source, skew in (("venue", Decimal(1)), ("oracle", Decimal("1.0001"))):
            marks.append(
                MarkIn(
                    symbol=symbol,
                    price=(price * skew).quantize(Decimal("0.01")),
                    source=source,
                    ts=now,
                    funding_rate=FUNDING.get(symbol),
                    iv=CALL_IV if symbol == CALL else None,
                )
            )
    await marketdata.post_marks(runtime, FEED_CALLER, marks)  # swept by the app's sweeper
    for symbol, instrument in instruments.items():
        mark = prices[symbol].quantize(instrument.tick_size)
        book = _book(mark, instrument.tick_size, instrument.lot_size, now)
        await marketdata.put_book(runtime, FEEDER, symbol, book)


def _call_value(call: InstrumentIn, index: Decimal, now: datetime) -> Decimal:
    """The demo call's premium: Black-76 at the index, ``CALL_IV`` and its time to expiry."""
    assert call.expiry is not None and call.strike is not None
    years = years_to_expiry(call.expiry.timestamp(), now.timestamp())
    value = black76_value(True, float(index), float(call.strike), float(CALL_IV), years)
    return max(Decimal("5"), Decimal(str(float(value))).quantize(Decimal("0.01")))


async def feed_forever(runtime: Runtime, interval_s: float = 1.0) -> None:
    """A small random walk, so the demo's marks stay fresh and its TWAPs mean something."""
    prices = dict(PRICES)
    rng = random.Random(7)
    while True:
        try:
            await publish(runtime, prices)
        except Exception:
            log.exception("demo feed failed")
        await asyncio.sleep(interval_s)
        for symbol in prices:
            prices[symbol] *= Decimal(str(1 + rng.gauss(0, 0.0002)))
