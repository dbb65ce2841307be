"""The ``MarginSummary`` of one subaccount in isolated, cross or portfolio mode (margin.md).

Per position (n,): ``N = |q|·k·m``, ``u = q·k·(m − e)``, ``IM_i = max(IM(N_i), N_i/leverage_i)``,
``MM_i = MM(N_i)`` (tiered, see ``tiers.py``). Per book: ``C = Σ balance·price·weight`` (a debt,
balance < 0, counts at weight 1), ``C_full = Σ balance·price``,
``next_funding = Σ_perpetuals −q·k·m·f``, ``gross_notional = Σ N_i``.

| mode      | equity E          | position IM | MM       | free collateral | withdrawable                     |
|-----------|-------------------|-------------|----------|-----------------|----------------------------------|
| isolated  | C + Σ (A_i + u_i) | Σ IM_i      | Σ MM_i   | C − R           | max(0, C − R)                    |
| cross     | C + Σ u_i         | Σ IM_i      | Σ MM_i   | E − IM          | max(0, E − max(IM, w·Σ N_i))     |
| portfolio | C_full + Σ u_i    | IM_pm       | MM_pm    | E − IM          | max(0, E − max(IM, w·Σ N_i))     |

where R = ``reserved_initial_margin`` (IM of active reservations, computed by the caller),
``initial_margin`` IM = position IM + R, w = ``withdrawal_floor``; ``maintenance_margin`` excludes
R. Ratios ``IM/E``, ``MM/E``, ``Σ N_i / E`` are None when E ≤ 0. ``collateral_value`` is C
(C_full in portfolio mode). ``standard_initial_margin`` = Σ IM_i and ``portfolio_initial_margin``
= IM_pm are reported in every mode, without R.

Options (margin.md "Options"; rows marked by ``OptionTerms.is_option``, values from
``options.option_values``): an option counts in equity at its value ``q·k·m`` in place of
``u_i`` (``unrealized_pnl`` still reports its ``q·k·(m − e)``); its notional is delta-adjusted,
``N = |q·k·Δ|·S``; its standard ``IM_i`` / ``MM_i`` are the short option margins (0 for a long;
tiers and chosen leverage do not apply); it pays no funding; withdrawable subtracts the value
of the long options from E; the portfolio model is ``option_portfolio_charges``. A book without
options gets exactly the numbers of the table above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.engine.arrays import FloatArray
from app.engine.liquidation import (
    cross_liquidation_prices,
    isolated_liquidation_prices,
    option_liquidation_prices,
    portfolio_liquidation_prices,
    portfolio_option_book_liquidation_prices,
)
from app.engine.option_portfolio import OptionPortfolioCharges, option_portfolio_charges
from app.engine.options import OptionTerms, OptionValues, option_values
from app.engine.parameters import RiskArrays
from app.engine.portfolio import PortfolioCharges, charges_from_legs, legs
from app.engine.tiers import position_margins
from app.engine.types import Collateral, MarginMode, MarginSummary, PositionMargins, Positions


@dataclass(frozen=True, slots=True)
class BookValues:
    """Everything the three modes share, for one book at current marks.

    Per position (n,): ``notional``, ``unrealized_pnl``, ``initial_margin`` / ``maintenance_margin``
    (standard model). Scalars: ``gross_notional``, ``unrealized_pnl_total``, ``isolated_margin_total``
    (Σ A_i), ``standard_initial_margin`` (Σ IM_i), ``standard_maintenance_margin`` (Σ MM_i),
    ``next_funding``, ``collateral_weighted`` (C), ``collateral_full`` (C_full), and the portfolio
    model's ``charges``. With options: ``position_equity_total`` (Σ u_i of the delta-one rows +
    Σ q·k·m of the options: what positions add to equity; Σ u_i without options),
    ``long_option_value`` (Σ of the long options' values, not withdrawable) and ``options``
    (the option rows' values and greeks; None for a book without options).
    """

    notional: FloatArray
    unrealized_pnl: FloatArray
    initial_margin: FloatArray
    maintenance_margin: FloatArray
    gross_notional: float
    unrealized_pnl_total: float
    isolated_margin_total: float
    standard_initial_margin: float
    standard_maintenance_margin: float
    next_funding: float
    collateral_weighted: float
    collateral_full: float
    charges: PortfolioCharges | OptionPortfolioCharges
    position_equity_total: float
    long_option_value: float = 0.0
    options: OptionValues | None = None


def collateral_values(collateral: Collateral) -> tuple[float, float]:
    """``(C, C_full)``: ``Σ balance·price·weight`` (debts at weight 1) and ``Σ balance·price``."""
    value = collateral.balance * collateral.price
    weight = np.where(collateral.balance < 0, 1.0, collateral.weight)
    return float(np.dot(value, weight)), float(value.sum())


def book_values(
    positions: Positions,
    collateral: Collateral,
    risk: RiskArrays,
    options: OptionTerms | None = None,
) -> BookValues:
    """Evaluate the mode-independent quantities of one book (formulas in the module docstring).
    ``options``: which rows are options, and their terms (None or no option row: none)."""
    qk = positions.size * positions.contract_size
    delta = qk * positions.mark
    upnl = positions.mark - positions.entry_price
    upnl *= qk
    upnl_total = float(upnl.sum())
    funding_rate = np.where(positions.is_perpetual, positions.funding_rate, 0.0)
    if options is None or not bool(options.is_option.any()):
        notional = np.abs(delta)
        im, mm = position_margins(notional, positions.leverage, positions.tiers)
        gross = float(notional.sum())
        long, short = legs(
            delta,
            positions.underlying,
            collateral.balance * collateral.price,
            collateral.underlying,
            risk.n_underlyings,
        )
        charges: PortfolioCharges | OptionPortfolioCharges = charges_from_legs(
            long, short, gross, risk
        )
        values, equity_total, long_value = None, upnl_total, 0.0
    else:
        # The option rows (module docstring, Options): their own notional, margin and value.
        is_option = options.is_option
        values = option_values(positions, options, risk)
        delta = np.where(is_option, 0.0, delta)
        funding_rate = np.where(is_option, 0.0, funding_rate)
        im, mm = position_margins(np.abs(delta), positions.leverage, positions.tiers)
        notional = np.where(is_option, values.notional, np.abs(delta))
        im = np.where(is_option, values.initial_margin, im)
        mm = np.where(is_option, values.maintenance_margin, mm)
        gross = float(notional.sum())
        charges = option_portfolio_charges(positions, collateral, risk, options)
        equity_total = float(np.where(is_option, values.value, upnl).sum())
        long_value = float(np.maximum(values.value, 0.0).sum())
    c_weighted, c_full = collateral_values(collateral)
    return BookValues(
        notional=notional,
        unrealized_pnl=upnl,
        initial_margin=im,
        maintenance_margin=mm,
        gross_notional=gross,
        unrealized_pnl_total=upnl_total,
        isolated_margin_total=float(positions.isolated_margin.sum()),
        standard_initial_margin=float(im.sum()),
        standard_maintenance_margin=float(mm.sum()),
        next_funding=0.0 - float(np.dot(delta, funding_rate)),
        collateral_weighted=c_weighted,
        collateral_full=c_full,
        charges=charges,
        position_equity_total=equity_total,
        long_option_value=long_value,
        options=values,
    )


def _ratio(numerator: float, equity: float) -> float | None:
    return numerator / equity if equity > 0 else None


def margin_summary(
    positions: Positions,
    collateral: Collateral,
    risk: RiskArrays,
    mode: MarginMode | str,
    reserved_initial_margin: float = 0.0,
    *,
    liquidation_prices: bool = True,
    options: OptionTerms | None = None,
) -> MarginSummary:
    """The ``MarginSummary`` of one subaccount in ``mode`` (table in the module docstring).

    Shapes: positions (n,), collateral (a,); ``reserved_initial_margin`` a scalar (settlement
    asset). With ``liquidation_prices=False`` the per-position prices are left nan (cheaper, e.g.
    for a max-size search). ``options``: which rows are options and their terms (module
    docstring, Options); options are held in cross and portfolio subaccounts only.
    """
    mode = MarginMode(mode)
    book = book_values(positions, collateral, risk, options)
    reserved = float(reserved_initial_margin)
    charges = book.charges
    position_equity: FloatArray | None = None
    if mode is MarginMode.PORTFOLIO:
        collateral_value = book.collateral_full
        equity = collateral_value + book.position_equity_total
        position_im = float(charges.initial_margin)
        maintenance = float(charges.maintenance_margin)
    else:
        collateral_value = book.collateral_weighted
        equity = collateral_value + book.position_equity_total
        position_im = book.standard_initial_margin
        maintenance = book.standard_maintenance_margin
        if mode is MarginMode.ISOLATED:
            equity += book.isolated_margin_total
            position_equity = positions.isolated_margin + book.unrealized_pnl
    initial = position_im + reserved
    if mode is MarginMode.ISOLATED:
        free = collateral_value - reserved
        withdrawable = max(0.0, free)
    else:
        free = equity - initial
        floor = risk.withdrawal_floor * book.gross_notional
        withdrawable = max(0.0, equity - book.long_option_value - max(initial, floor))

    if not liquidation_prices:
        liq = np.full(positions.n, np.nan)
    elif mode is MarginMode.ISOLATED:
        liq = isolated_liquidation_prices(positions)
    elif mode is MarginMode.CROSS:
        liq = cross_liquidation_prices(positions, equity, maintenance, book.maintenance_margin)
        if options is not None and book.options is not None:
            liq = np.where(
                options.is_option,
                option_liquidation_prices(positions, equity, maintenance),
                liq,
            )
    elif isinstance(charges, OptionPortfolioCharges):
        assert options is not None
        liq = portfolio_option_book_liquidation_prices(positions, charges, options, equity, risk)
    else:
        liq = portfolio_liquidation_prices(positions, charges, equity, risk)

    return MarginSummary(
        equity=equity,
        collateral_value=collateral_value,
        unrealized_pnl=book.unrealized_pnl_total,
        initial_margin=initial,
        maintenance_margin=maintenance,
        reserved_initial_margin=reserved,
        free_collateral=free,
        withdrawable=withdrawable,
        initial_margin_ratio=_ratio(initial, equity),
        maintenance_margin_ratio=_ratio(maintenance, equity),
        leverage=_ratio(book.gross_notional, equity),
        gross_notional=book.gross_notional,
        next_funding=book.next_funding,
        standard_initial_margin=book.standard_initial_margin,
        portfolio_initial_margin=float(charges.initial_margin),
        long_option_value=book.long_option_value,
        positions=PositionMargins(
            notional=book.notional,
            unrealized_pnl=book.unrealized_pnl,
            initial_margin=book.initial_margin,
            maintenance_margin=book.maintenance_margin,
            liquidation_price=liq,
            equity=position_equity,
            options=book.options,
        ),
    )
