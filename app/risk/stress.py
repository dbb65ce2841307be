"""Stress (margin.md, Stress): a subaccount under scenarios, or one scenario over the book."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine import RiskArrays, batch_stress, default_scenarios, stress
from app.engine.rounding import equity_to_decimal, requirement_to_decimal
from app.risk import resident, service
from app.risk.batch import load_batch
from app.risk.book import engine_inputs, load_book
from app.risk.schemas import (
    BookStressOut,
    LiquidatedOut,
    ScenarioIn,
    ScenarioOut,
    StressOut,
)


def _shocks(
    scenarios: Sequence[ScenarioIn], risk: RiskArrays, *, volatility: bool = False
) -> np.ndarray:
    """(S, U) moves of prices (of implied volatility with ``volatility``); underlyings the
    book has no exposure to cannot move it."""
    return np.array(
        [
            [((s.vol_shocks or {}) if volatility else s.shocks).get(u, 0.0) for u in risk.universe]
            for s in scenarios
        ],
        dtype=np.float64,
    ).reshape(len(scenarios), risk.n_underlyings)


def _ratio(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


async def subaccount_stress(
    session: AsyncSession,
    runtime: Runtime,
    accounts: frozenset[str] | None,
    subaccount_id: str,
    scenarios: Sequence[ScenarioIn] | None,
) -> StressOut:
    subaccount = await service.visible_subaccount(session, accounts, subaccount_id)
    parameters = await service.parameters(session)
    inputs = engine_inputs(await load_book(session, runtime, subaccount), parameters)
    if scenarios is None:
        scenarios = [
            ScenarioIn(name=s.name, shocks=dict(s.shocks))
            for s in default_scenarios(inputs.risk.universe, parameters)
        ]
    result = stress(
        inputs.positions,
        inputs.collateral,
        inputs.risk,
        subaccount.margin_mode,
        _shocks(scenarios, inputs.risk),
        options=inputs.options,
        vol_shocks=_shocks(scenarios, inputs.risk, volatility=True),
    )
    decimals = parameters.settlement_decimals
    return StressOut(
        subaccount_id=subaccount.subaccount_id,
        margin_mode=subaccount.margin_mode,
        as_of=utcnow(),
        scenarios=[
            ScenarioOut(
                name=scenario.name,
                shocks=scenario.shocks,
                vol_shocks=scenario.vol_shocks or {},
                equity=equity_to_decimal(float(result.equity[i]), decimals),
                maintenance_margin=requirement_to_decimal(
                    float(result.maintenance_margin[i]), decimals
                ),
                maintenance_margin_ratio=_ratio(float(result.maintenance_margin_ratio[i])),
                shortfall=requirement_to_decimal(float(result.shortfall[i]), decimals),
                deficit=requirement_to_decimal(float(result.deficit[i]), decimals),
                liquidatable=bool(result.liquidatable[i]),
            )
            for i, scenario in enumerate(scenarios)
        ],
    )


async def book_stress(
    session: AsyncSession,
    runtime: Runtime,
    accounts: frozenset[str] | None,
    scenario: ScenarioIn,
) -> BookStressOut:
    """One scenario over every subaccount the key sees, in one batch call: who would be
    liquidated and the total shortfall and deficit."""
    view = await resident.current_view(session, runtime)
    subaccounts = (
        view.subaccounts(None, accounts)
        if view is not None
        else await accounts_repository.list_subaccounts(session, None, accounts)
    )
    parameters = await service.parameters(session)

    decimals = parameters.settlement_decimals
    liquidated, total_shortfall, total_deficit = [], equity_to_decimal(0.0), equity_to_decimal(0.0)
    if subaccounts:
        batch, risk, _, option_owners = await load_batch(
            session, runtime, subaccounts, parameters, everyone=accounts is None, view=view
        )
        result = batch_stress(batch, risk, _shocks([scenario], risk)[0])
        for owner in option_owners:
            # A book with options is revalued on its own (Black-76 under the moves).
            inputs = engine_inputs(
                await load_book(session, runtime, subaccounts[owner]), parameters
            )
            alone = stress(
                inputs.positions,
                inputs.collateral,
                inputs.risk,
                subaccounts[owner].margin_mode,
                _shocks([scenario], inputs.risk),
                options=inputs.options,
                vol_shocks=_shocks([scenario], inputs.risk, volatility=True),
            )
            for name in ("equity", "maintenance_margin", "shortfall", "deficit", "liquidatable"):
                getattr(result, name)[owner] = getattr(alone, name)[0]
        for i in np.flatnonzero(result.liquidatable | (result.deficit > 0)):
            book = subaccounts[int(i)]
            shortfall = requirement_to_decimal(float(result.shortfall[i]), decimals)
            deficit = requirement_to_decimal(float(result.deficit[i]), decimals)
            total_shortfall += shortfall
            total_deficit += deficit
            liquidated.append(
                LiquidatedOut(
                    subaccount_id=book.subaccount_id,
                    account_id=book.account_id,
                    margin_mode=book.margin_mode,
                    equity=equity_to_decimal(float(result.equity[i]), decimals),
                    maintenance_margin=requirement_to_decimal(
                        float(result.maintenance_margin[i]), decimals
                    ),
                    shortfall=shortfall,
                    deficit=deficit,
                )
            )
    liquidated.sort(key=lambda row: (-row.shortfall, row.subaccount_id))
    return BookStressOut(
        name=scenario.name,
        shocks=scenario.shocks,
        as_of=utcnow(),
        subaccounts=len(subaccounts),
        liquidated=liquidated,
        total_shortfall=total_shortfall,
        total_deficit=total_deficit,
    )
