"""Benchmark of the whole-book views on PostgreSQL and Redis: prints a table.

    .venv/bin/python bench/risk.py [--subaccounts 10000] [--positions 10] [--symbols 100] [--runs 5]

Seeds a fresh database in bulk (100 perpetuals, N subaccounts × P positions, cross mode), posts
fresh marks, then times, in process through the HTTP app (so parsing, the batch engine call and
serialisation all count):

- ``GET /v1/risk/overview?limit=100`` over every subaccount (issue 11: ≤ 0.25 s at 10,000 × 10);
- ``POST /v1/marks`` of one mark for each of 100 symbols, a post every 0.25 s as a feeder would
  (issue 11: ≤ 20 ms whatever the size of the book; the margin calls it causes are raised by the
  sweeper off the request, which runs meanwhile in the same process);
- ``POST /v1/risk/stress`` of one scenario over the whole book (issue 11: ≤ 0.25 s).

Verdicts are on the median of the runs; the slowest is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.accounts.models import Account, Balance, Position, Subaccount
from app.core.config import Settings
from app.core.db import create_engine
from app.core.migrations import upgrade
from app.instruments.models import Asset, Instrument
from app.main import create_app
from tests import services

KEY = "bench-admin-key-0123456789abcdef"


async def seed(url: str, subaccounts: int, positions: int, symbols: int) -> dict[str, Decimal]:
    now = datetime.now(UTC)
    rng = random.Random(1)
    prices = {f"S{i:03d}-PERP": Decimal(rng.randint(10, 100_000)) for i in range(symbols)}
    engine = create_engine(url, 2)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Asset),
                [
                    {
                        "symbol": "USDC",
                        "collateral_weight": Decimal(1),
                        "underlying": None,
                        "is_settlement": True,
                        "updated_at": now,
                    }
                ],
            )
            await connection.execute(
                insert(Instrument),
                [
                    {
                        "symbol": symbol,
                        "kind": "perpetual",
                        "underlying": f"S{i:03d}",
                        "contract_size": Decimal(1),
                        "tick_size": Decimal("0.01"),
                        "lot_size": Decimal("0.001"),
                        "margin_tiers": [
                            {
                                "notional_floor": "0",
                                "initial_margin_fraction": "0.05",
                                "maintenance_margin_fraction": "0.025",
                            },
                            {
                                "notional_floor": "1000000",
                                "initial_margin_fraction": "0.1",
                                "maintenance_margin_fraction": "0.05",
                            },
                        ],
                        "taker_fee_rate": Decimal("0.0005"),
                        "maker_fee_rate": Decimal("0.0002"),
                        "price_band": None,
                        "max_order_notional": None,
                        "expiry": None,
                        "funding_interval_s": 3600,
                        "stale_after_s": Decimal(60),
                        "max_twap_deviation": None,
                        "updated_at": now,
                    }
                    for i, symbol in enumerate(prices)
                ],
            )
            await connection.execute(
                insert(Account),
                [{"account_id": "fund", "name": "Fund", "limits": {}, "created_at": now}],
            )
            ids = [f"sub-{i:05d}" for i in range(subaccounts)]
            await connection.execute(
                insert(Subaccount),
                [
                    {
                        "subaccount_id": sid,
                        "account_id": "fund",
                        "margin_mode": "cross",
                        "strategy": None,
                        "limits": {},
                        "created_at": now,
                    }
                    for sid in ids
                ],
            )
            names = list(prices)
            rows, balances = [], []
            for sid in ids:
                for symbol in rng.sample(names, positions):
                    size = Decimal(rng.choice((-1, 1)) * rng.randint(1, 1000)) / 100
                    rows.append(
                        {
                            "subaccount_id": sid,
                            "instrument": symbol,
                            "size": size,
                            "entry_price": prices[symbol],
                            "isolated_margin": Decimal(0),
                            "realized_pnl": Decimal(0),
                            "updated_at": now,
                        }
                    )
                balances.append(
                    {
                        "subaccount_id": sid,
                        "asset": "USDC",
                        "amount": Decimal(rng.randint(1_000, 2_000_000)),
                    }
                )
            for start in range(0, len(rows), 20_000):
                await connection.execute(insert(Position), rows[start : start + 20_000])
            await connection.execute(insert(Balance), balances)
    finally:
        await engine.dispose()
    return prices


def marks_body(prices: dict[str, Decimal], move: float) -> dict[str, object]:
    ts = datetime.now(UTC).isoformat()
    return {
        "marks": [
            {
                "symbol": s,
                "price": str((p * Decimal(repr(1 + move))).quantize(Decimal("0.01"))),
                "source": "bench",
                "ts": ts,
            }
            for s, p in prices.items()
        ]
    }


TARGETS_S = {"overview": 0.25, "marks": 0.020, "stress": 0.25}


async def timed(
    client: httpx.AsyncClient, runs: int, method: str, url: str, **kwargs: object
) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        out.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subaccounts", type=int, default=10_000)
    parser.add_argument("--positions", type=int, default=10)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    server = services.postgres_server_url()
    name = f"preflight_bench_risk_{os.getpid()}"
    url = services.create_database(server, name)
    try:
        await asyncio.to_thread(upgrade, url)
        started = time.perf_counter()
        prices = await seed(url, args.subaccounts, args.positions, args.symbols)
        print(
            f"seeded {args.subaccounts} × {args.positions} positions over {args.symbols} "
            f"symbols in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        redis_url = services.redis_server_url().rsplit("/", 1)[0] + "/14"
        settings = Settings(
            database_url=url,
            redis_url=redis_url,
            admin_key=KEY,  # type: ignore[arg-type]
            log_level="WARNING",
            db_pool_size=4,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers, timeout=120
            ) as client:
                await client.post("/v1/marks", json=marks_body(prices, 0.0))  # warm up
                marks_times = []
                for i in range(4 * args.runs):
                    body = marks_body(prices, 0.001 * (i % 5 + 1))
                    marks_times += await timed(client, 1, "POST", "/v1/marks", json=body)
                    await asyncio.sleep(0.25)  # a feeder's cadence; the sweeper runs meanwhile
                results = {
                    "overview": await timed(
                        client, args.runs, "GET", "/v1/risk/overview", params={"limit": 100}
                    ),
                    "marks": marks_times,
                    "stress": await timed(
                        client,
                        args.runs,
                        "POST",
                        "/v1/risk/stress",
                        json={
                            "scenario": {
                                "name": "crash",
                                "shocks": {f"S{i:03d}": -0.2 for i in range(args.symbols)},
                            }
                        },
                    ),
                }
        print(
            f"\n{args.subaccounts:,} subaccounts × {args.positions} positions, {args.runs} runs each"
        )
        labels = {
            "overview": "GET /v1/risk/overview?limit=100",
            "marks": f"POST /v1/marks ({args.symbols} symbols), every 0.25 s",
            "stress": "POST /v1/risk/stress (one scenario, whole book)",
        }
        print(
            f"{'operation':<50} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}"
            f" {'target':>8}  verdict"
        )
        for key, values in results.items():
            median = statistics.median(values)
            verdict = "PASS" if median <= TARGETS_S[key] else "FAIL"
            print(
                f"{labels[key]:<50} {len(values):>4} {median:>9.3f} {min(values):>8.3f}"
                f" {max(values):>8.3f} {TARGETS_S[key]:>8.3f}  {verdict}"
            )
    finally:
        services.drop_database(server, name)


if __name__ == "__main__":
    asyncio.run(main())
