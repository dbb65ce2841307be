"""Margin engine benchmark: `.venv/bin/python bench/engine.py` prints a table.

One subaccount of 10 / 100 / 1,000 / 10,000 positions in each mode (summary including
liquidation prices; median µs per call over many runs), the default stress grid (82 scenarios)
of the 1,000-position book, and a batch of 10,000 subaccounts × 10 positions (summary and one stress scenario).
Options (issue 12): a 1,000-position book of which 200 options, its ``margin_summary`` with
``options`` in portfolio mode (greeks, standard margin, the 7 × 3 grid, and every liquidation
price: the options' in closed form, the 800 delta-one rows' by bracketing and regula falsi) and
in cross mode, with ``option_values`` and ``option_portfolio_charges`` alone as parts.
Targets (2 vCPU): 1,000-position summary ≤ 1 ms; the 10,000 × 10 batch ≤ 1 s; the summary of
1,000 positions with 200 options ≤ 2 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine import (
    BatchBook,
    Collateral,
    MarginMode,
    OptionTerms,
    Positions,
    RiskParameters,
    TierTable,
    batch_stress,
    batch_summary,
    black76_value,
    default_scenarios,
    margin_summary,
    option_portfolio_charges,
    option_values,
    shock_matrix,
    stress,
)

UNIVERSE = ("BTC", "ETH", "SOL", "DOGE", "AVAX", "DOT", "ARB", "BCH", "LTC", "OP")
PRICES = np.array([65_000, 3_500, 150, 0.15, 25, 7, 1.2, 300, 90, 2.0])
TIERS = TierTable.from_rows(
    [
        [(0.0, 0.02, None), (1e6, 0.05, None), (5e6, 0.10, None), (2e7, 0.20, None)],
        [(0.0, 0.05, None), (2e5, 0.10, None), (1e6, 0.25, None)],
    ]
)


def book(n: int, rng: np.random.Generator) -> tuple[Positions, Collateral]:
    """A random book: n positions over 10 underlyings, USDC and BTC collateral."""
    und = rng.integers(0, len(UNIVERSE), n)
    mark = PRICES[und] * rng.uniform(0.9, 1.1, n)
    size = rng.choice([-1.0, 1.0], n) * rng.lognormal(10, 1, n) / mark
    positions = Positions.create(
        size=size,
        entry_price=mark * rng.uniform(0.95, 1.05, n),
        mark=mark,
        tiers=TIERS.take(rng.integers(0, 2, n)),
        underlying=und,
        tick_size=PRICES[und] * 1e-5,
        isolated_margin=np.abs(size) * mark * 0.2,
        leverage=rng.choice([np.nan, 5.0, 20.0], n),
        funding_rate=rng.normal(0, 1e-4, n),
        is_perpetual=rng.random(n) < 0.7,
    )
    collateral = Collateral.create(
        balance=[n * 5_000.0, n * 0.05],
        price=[1.0, PRICES[0]],
        weight=[1.0, 0.9],
        underlying=[-1, 0],
    )
    return positions, collateral


def option_book(
    n: int, n_options: int, rng: np.random.Generator
) -> tuple[Positions, Collateral, OptionTerms]:
    """``book(n − n_options)`` plus n_options options (calls and puts, long and short, strikes
    ±30% of the index, 1–180 days, σ 0.3–1.0) on the same underlyings, marked at Black-76."""
    futures, collateral = book(n - n_options, rng)
    und = rng.integers(0, len(UNIVERSE), n_options)
    spot = PRICES[und]
    is_call = rng.random(n_options) < 0.5
    strike = spot * rng.uniform(0.7, 1.3, n_options)
    years = rng.uniform(1, 180, n_options) / 365
    sigma = rng.uniform(0.3, 1.0, n_options)
    # Positions wants a mark > 0: a worthless option is quoted at a tick.
    premium = np.maximum(black76_value(is_call, spot, strike, sigma, years), spot * 1e-5)
    options = Positions.create(
        size=rng.choice([-1.0, 1.0], n_options) * rng.lognormal(10, 1, n_options) / spot,
        entry_price=premium * rng.uniform(0.9, 1.1, n_options),
        mark=premium,
        tiers=TierTable.uniform([(0.0, 0.0, 0.0)], n_options),
        underlying=und,
        tick_size=spot * 1e-5,
    )
    terms = OptionTerms.create(
        is_option=np.arange(n) >= n - n_options,
        is_call=np.concatenate([np.zeros(n - n_options, dtype=bool), is_call]),
        strike=np.concatenate([np.ones(n - n_options), strike]),
        time_to_expiry=np.concatenate([np.zeros(n - n_options), years]),
        volatility=np.concatenate([np.zeros(n - n_options), sigma]),
        underlying_price=np.concatenate([np.ones(n - n_options), spot]),
    )
    return Positions.concat([futures, options]), collateral, terms


def median_us(call: Callable[[], object], budget_s: float = 0.5) -> float:
    """Median wall time of ``call`` in µs over as many runs as fit in ``budget_s`` (5–2,000)."""
    call()
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    runs = int(min(2_000, max(5, budget_s / max(once, 1e-7))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    params = RiskParameters()
    risk = params.arrays(UNIVERSE)
    rng = np.random.default_rng(7)
    rows: list[tuple[str, str, float, str]] = []
    for n in (10, 100, 1_000, 10_000):
        positions, collateral = book(n, rng)
        for mode in MarginMode:
            us = median_us(lambda p=positions, c=collateral, m=mode: margin_summary(p, c, risk, m))
            target = "≤ 1,000" if n == 1_000 else ""
            rows.append((f"summary + liquidation, {n:,} positions", mode.value, us, target))
    positions, collateral = book(1_000, rng)
    for mode in MarginMode:
        us = median_us(
            lambda m=mode: margin_summary(positions, collateral, risk, m, liquidation_prices=False)
        )
        rows.append(("summary only, 1,000 positions", mode.value, us, ""))
    scenarios = shock_matrix(default_scenarios(UNIVERSE, params), UNIVERSE)
    for mode in MarginMode:
        us = median_us(lambda m=mode: stress(positions, collateral, risk, m, scenarios))
        rows.append((f"stress, 1,000 positions × {len(scenarios)} scenarios", mode.value, us, ""))

    with_options, option_collateral, terms = option_book(1_000, 200, rng)

    case = "summary + liquidation, 1,000 positions of which 200 options"
    for mode, target in ((MarginMode.PORTFOLIO, "≤ 2,000"), (MarginMode.CROSS, "")):
        us = median_us(
            lambda m=mode: margin_summary(with_options, option_collateral, risk, m, options=terms)
        )
        rows.append((case, mode.value, us, target))
    us = median_us(lambda: option_values(with_options, terms, risk))
    rows.append(("  of which option_values (greeks, standard margin)", "", us, ""))
    us = median_us(lambda: option_portfolio_charges(with_options, option_collateral, risk, terms))
    rows.append(("  of which option_portfolio_charges (7 × 3 grid)", "", us, ""))

    books = [book(10, rng) for _ in range(10_000)]
    modes = list(MarginMode)
    batch = BatchBook.from_books([(p, c, modes[i % 3], 0.0) for i, (p, c) in enumerate(books)])
    us = median_us(lambda: batch_summary(batch, risk), budget_s=3.0)
    rows.append(("batch summary, 10,000 subaccounts × 10", "mixed", us, "≤ 1,000,000"))
    crash = -risk.scan_range
    us = median_us(lambda: batch_stress(batch, risk, crash), budget_s=3.0)
    rows.append(("batch stress (crash), 10,000 × 10", "mixed", us, ""))

    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'mode':<9}  {'µs/call':>12}  target µs")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 12}  ---------")
    for case, mode, us, target in rows:
        print(f"{case:<{width}}  {mode:<9}  {us:>12,.0f}  {target}")


if __name__ == "__main__":
    main()
