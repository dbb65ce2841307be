"""Margin on the read path, and the margin checks behind withdrawals and mode changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.accounts import reservations
from app.accounts.models import Subaccount
from app.audit import service as audit
from app.core.errors import Conflict, InsufficientMargin, InvalidInput, NotFound
from app.core.runtime import Runtime
from app.core.types import format_decimal, utcnow
from app.engine import (
    RATIO_FIELDS,
    SUMMARY_FIELDS,
    MarginSummary,
    RiskParameters,
    margin_summary,
)
from app.engine.rounding import (
    Direction,
    liquidation_price_text,
    requirement_to_decimal,
    summary_to_decimals,
    to_decimal_text,
)
from app.risk import breaker, repository
from app.risk.book import Book, EngineInputs, Holding, MarkUsed, engine_inputs, load_book
from app.risk.schemas import (
    AccountMarginOut,
    MarginSummaryOut,
    MarkUsedOut,
    PositionMarginOut,
    SubaccountMarginOut,
    SubaccountTotalOut,
)

# --- parameters ----------------------------------------------------------------------------


async def parameters(session: AsyncSession) -> RiskParameters:
    row = await repository.get_parameters(session)
    return RiskParameters() if row is None else RiskParameters.from_dict(row.parameters)


async def put_parameters(
    session: AsyncSession, actor: audit.Actor, body: dict[str, Any]
) -> RiskParameters:
    try:
        parsed = RiskParameters.from_dict(body)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise InvalidInput(message.split(" ", 1)[0].rstrip(":"), message) from None
    now = utcnow()
    row = await repository.parameters_for_update(session, now)
    row.parameters = parsed.to_dict()
    row.updated_at = now
    await session.flush()
    await audit.record(session, "risk_parameters", actor, parsed.to_dict())
    if parsed.auto_reduce_only is None:
        # Off: nothing would ever release the automatic states still held.
        await breaker.release_all(session)
    return parsed


# --- evaluating a book --------------------------------------------------------------------------


_PositionKey = tuple[int, Decimal, float, float, float, float, int]
_POSITION_TEXT: dict[_PositionKey, tuple[Holding, dict[str, str | None]]] = {}
"""A position's figures as text, by the holding object and the engine's floats: in a check
only the basket's positions and the liquidation prices change, so the rest is converted once,
not once per check (the holding is kept beside its text, so its id is never reused)."""


def _position_text(
    holding: Holding,
    mark: MarkUsed,
    notional: float,
    unrealized: float,
    initial: float,
    maintenance: float,
    decimals: int,
) -> dict[str, str | None]:
    key = (id(holding), mark.price, notional, unrealized, initial, maintenance, decimals)
    kept = _POSITION_TEXT.get(key)
    if kept is not None and kept[0] is holding:
        return kept[1]
    text: dict[str, str | None] = {
        "instrument": holding.instrument,
        "size": format_decimal(holding.size),
        "entry_price": format_decimal(holding.entry_price),
        "mark": format_decimal(mark.price),
        "notional": to_decimal_text(notional, Direction.UP, decimals),
        "unrealized_pnl": to_decimal_text(unrealized, Direction.DOWN, decimals),
        "initial_margin": to_decimal_text(initial, Direction.UP, decimals),
        "maintenance_margin": to_decimal_text(maintenance, Direction.UP, decimals),
        "isolated_margin": format_decimal(holding.isolated_margin),
    }
    if len(_POSITION_TEXT) >= 100_000:
        _POSITION_TEXT.clear()
    _POSITION_TEXT[key] = (holding, text)
    return text


@dataclass(frozen=True)
class Evaluation:
    book: Book
    summary: MarginSummary
    decimals: int
    reserved_initial_margin: Decimal = Decimal(0)
    """IM the active reservations add (they are applied to ``book`` as fills)."""
    inputs: EngineInputs | None = None
    """The engine's inputs for ``book``: a book that differs in a few rows patches them."""

    @cached_property
    def rounded(self) -> dict[str, Decimal | float | None]:
        """The summary in decimals, rounded once (requirements up, equity down)."""
        return summary_to_decimals(self.summary, self.book.margin_mode, self.decimals)

    def with_reserved(self, reserved_initial_margin: Decimal) -> Evaluation:
        """This evaluation with another ``reserved_initial_margin``: the summary in decimals
        does not depend on it (``values`` adds it), so it is carried over, not rounded again."""
        other = replace(self, reserved_initial_margin=reserved_initial_margin)
        if "rounded" in self.__dict__:  # cached_property keeps it in the instance's dict
            other.__dict__["rounded"] = self.__dict__["rounded"]
        return other

    def values(self) -> dict[str, Decimal | float | None]:
        return {**self.rounded, "reserved_initial_margin": self.reserved_initial_margin}

    def summary_out(self) -> MarginSummaryOut:
        return MarginSummaryOut.model_validate(self.values())

    @cached_property
    def summary_json(self) -> dict[str, str | float | None]:
        """``summary_out`` as the JSON object sent: decimals as plain strings (made once per
        evaluation: the book before a basket is shared by the checks until it changes)."""
        return {
            name: format_decimal(value) if isinstance(value, Decimal) else value
            for name, value in self.values().items()
        }

    def positions_json(self) -> list[dict[str, str | dict[str, str] | None]]:
        """api.md ``PositionMargin`` of every holding, as JSON objects, converted straight from
        the engine's floats (requirements up, PnL down, a liquidation price towards the mark)."""
        margins = self.summary.positions
        decimals = self.decimals
        notional = margins.notional.tolist()
        unrealized = margins.unrealized_pnl.tolist()
        initial = margins.initial_margin.tolist()
        maintenance = margins.maintenance_margin.tolist()
        liquidation = margins.liquidation_price.tolist()
        greeks = _greeks_text(self)
        out = []
        for i, holding in enumerate(self.book.holdings):
            mark = self.book.marks[holding.instrument]
            text = _position_text(
                holding, mark, notional[i], unrealized[i], initial[i], maintenance[i], decimals
            )
            liquidation_price = liquidation_price_text(liquidation[i], holding.size, decimals)
            out.append({**text, "liquidation_price": liquidation_price, "greeks": greeks[i]})
        return out

    def positions_out(self) -> list[PositionMarginOut]:
        return [PositionMarginOut.model_validate(p) for p in self.positions_json()]

    def marks_json(
        self, ages: Mapping[str, int] | None = None
    ) -> dict[str, dict[str, str | int | None]]:
        """api.md ``MarkUsed`` of every symbol valued; ``ages`` (by symbol, a check's own) stand
        in for the marks' (a symbol not in them was never marked: no age)."""
        return {
            symbol: {"price": mark.price_text, "status": mark.status,
                     "age_ms": mark.age_ms if ages is None else ages.get(symbol)}
            for symbol, mark in sorted(self.book.marks.items())
        }  # fmt: skip

    def marks_out(self) -> dict[str, MarkUsedOut]:
        return {
            symbol: MarkUsedOut.model_validate(mark) for symbol, mark in self.marks_json().items()
        }


_GREEK_DIGITS = 10
"""Significant digits of a greek as text: they inform, nothing is compared to them."""


def _greeks_text(evaluation: Evaluation) -> list[dict[str, str] | None]:
    """Per holding, its option greeks as decimal strings (api.md ``greeks``), None where the
    holding is not an option."""
    holdings = evaluation.book.holdings
    values = evaluation.summary.positions.options
    inputs = evaluation.inputs
    if values is None or inputs is None or inputs.options is None:
        return [None] * len(holdings)
    is_option = inputs.options.is_option.tolist()
    columns = (values.delta.tolist(), values.gamma.tolist(), values.vega.tolist())
    return [
        {
            name: format_decimal(Decimal(f"{column[i]:.{_GREEK_DIGITS}g}"))
            for name, column in zip(("delta", "gamma", "vega"), columns, strict=True)
        }
        if is_option[i]
        else None
        for i in range(len(holdings))
    ]


def evaluate(
    book: Book,
    risk_parameters: RiskParameters,
    *,
    liquidation: bool = True,
    like: Evaluation | None = None,
) -> Evaluation:
    """The engine's summary of ``book``; ``like`` (an evaluation of a book with the same rows,
    e.g. before a basket) lends its inputs, so only the rows that differ are converted."""
    inputs = engine_inputs(
        book,
        risk_parameters,
        None if like is None or like.inputs is None else (like.book, like.inputs),
    )
    summary = margin_summary(
        inputs.positions,
        inputs.collateral,
        inputs.risk,
        book.margin_mode,
        liquidation_prices=liquidation,
        options=inputs.options,
    )
    return Evaluation(book, summary, risk_parameters.settlement_decimals, inputs=inputs)


def reserved_margin(base: Evaluation, held: Evaluation) -> Decimal:
    """What reservations add to initial margin: ``IM(book + reservations) − IM(book)``, ≥ 0."""
    with_reservations = held.rounded
    without = base.rounded
    added = money(with_reservations["initial_margin"]) - money(without["initial_margin"])
    return max(Decimal(0), added)


def money(value: Decimal | float | None) -> Decimal:
    """A money figure of ``Evaluation.values()`` (those are Decimals; ratios are floats)."""
    assert isinstance(value, Decimal)
    return value


async def held_book(
    session: AsyncSession, runtime: Runtime, subaccount: Subaccount
) -> tuple[Book, Book]:
    """The subaccount's book as stored, and with its active reservations applied as fills
    (what every margin figure counts: reserved margin is not free)."""
    held = await accounts_repository.active_reservations(
        session, [subaccount.subaccount_id], utcnow()
    )
    pending = reservations.as_fills(held)
    base = await load_book(session, runtime, subaccount, [f.instrument for f in pending])
    return base, base.with_fills(pending) if pending else base


async def evaluate_held(
    session: AsyncSession,
    runtime: Runtime,
    subaccount: Subaccount,
    risk_parameters: RiskParameters,
    *,
    liquidation: bool = True,
) -> Evaluation:
    base, held = await held_book(session, runtime, subaccount)
    evaluation = evaluate(held, risk_parameters, liquidation=liquidation)
    if held is base:
        return evaluation
    reserved = reserved_margin(evaluate(base, risk_parameters, liquidation=False), evaluation)
    return evaluation.with_reserved(reserved)


async def visible_subaccount(
    session: AsyncSession, accounts: frozenset[str] | None, subaccount_id: str
) -> Subaccount:
    subaccount = await accounts_repository.get_subaccount(session, subaccount_id)
    if subaccount is None or (accounts is not None and subaccount.account_id not in accounts):
        raise NotFound(f"subaccount {subaccount_id!r} not found")
    return subaccount


async def subaccount_margin(
    session: AsyncSession, runtime: Runtime, accounts: frozenset[str] | None, subaccount_id: str
) -> SubaccountMarginOut:
    subaccount = await visible_subaccount(session, accounts, subaccount_id)
    evaluation = await evaluate_held(session, runtime, subaccount, await parameters(session))
    return SubaccountMarginOut(
        subaccount_id=subaccount.subaccount_id,
        margin_mode=subaccount.margin_mode,
        as_of=utcnow(),
        summary=evaluation.summary_out(),
        positions=evaluation.positions_out(),
        marks=evaluation.marks_out(),
    )


_SUMMED = [name for name in SUMMARY_FIELDS if name not in RATIO_FIELDS]
"""Money fields, which add up across subaccounts (ratios are recomputed from the sums)."""


def _total(summaries: list[MarginSummaryOut]) -> MarginSummaryOut:
    """Money sums; ratios of the sums (None when the summed equity is not positive)."""
    sums: dict[str, Any] = {
        name: sum((getattr(s, name) for s in summaries), Decimal(0)) for name in _SUMMED
    }
    equity = sums["equity"]
    positive = equity > 0
    sums["initial_margin_ratio"] = float(sums["initial_margin"] / equity) if positive else None
    sums["maintenance_margin_ratio"] = (
        float(sums["maintenance_margin"] / equity) if positive else None
    )
    sums["leverage"] = float(sums["gross_notional"] / equity) if positive else None
    return MarginSummaryOut.model_validate(sums)


async def account_margin(
    session: AsyncSession, runtime: Runtime, accounts: frozenset[str] | None, account_id: str
) -> AccountMarginOut:
    if (accounts is not None and account_id not in accounts) or (
        await accounts_repository.get_account(session, account_id) is None
    ):
        raise NotFound(f"account {account_id!r} not found")
    risk_parameters = await parameters(session)
    rows = []
    for subaccount in await accounts_repository.list_subaccounts(session, account_id, None):
        evaluation = await evaluate_held(
            session, runtime, subaccount, risk_parameters, liquidation=False
        )
        rows.append(
            SubaccountTotalOut(
                subaccount_id=subaccount.subaccount_id,
                margin_mode=subaccount.margin_mode,
                summary=evaluation.summary_out(),
            )
        )
    return AccountMarginOut(
        account_id=account_id,
        as_of=utcnow(),
        total=_total([row.summary for row in rows]),
        subaccounts=rows,
    )


# --- checks behind writes -------------------------------------------------------------------------


def _untrusted_marks(book: Book) -> list[str]:
    return sorted(symbol for symbol, mark in book.marks.items() if mark.status != "fresh")


async def check_withdrawal(
    session: AsyncSession,
    runtime: Runtime,
    subaccount: Subaccount,
    asset: str,
    amount: Decimal,
) -> None:
    """A withdrawal or outgoing transfer may take at most ``withdrawable``: afterwards the asset's
    balance stays ≥ 0, free collateral ≥ 0 and equity ≥ ``withdrawal_floor · Σ N``. It fails
    closed: with a mark that is not fresh, nothing leaves."""
    _, book = await held_book(session, runtime, subaccount)
    balance = book.balances.get(asset, Decimal(0))
    if amount > balance:
        raise InsufficientMargin(f"{asset} balance is {balance}; cannot withdraw {amount}")
    risk_parameters = await parameters(session)
    untrusted = _untrusted_marks(book)
    if untrusted and book.holdings:
        raise InsufficientMargin(
            f"marks not fresh ({', '.join(untrusted)}): withdrawals wait for fresh prices",
            code="STALE_MARK",
        )
    after = evaluate(book.with_balance(asset, balance - amount), risk_parameters, liquidation=False)
    values = summary_to_decimals(
        after.summary, book.margin_mode, risk_parameters.settlement_decimals
    )
    free = values["free_collateral"]
    equity = values["equity"]
    floor = Decimal(repr(risk_parameters.withdrawal_floor)) * Decimal(str(values["gross_notional"]))
    assert isinstance(free, Decimal) and isinstance(equity, Decimal)
    # The value of long options stays: it is not cash (margin.md "Options").
    held_value = requirement_to_decimal(
        after.summary.long_option_value, risk_parameters.settlement_decimals
    )
    free, equity = free - held_value, equity - held_value
    if free < 0 or (book.margin_mode != "isolated" and equity < floor):
        before = evaluate(book, risk_parameters, liquidation=False).summary_out()
        raise InsufficientMargin(
            f"withdrawing {amount} {asset} would leave the subaccount short of margin "
            f"(withdrawable now: {before.withdrawable} in the settlement asset)"
        )


async def check_mode_change(
    session: AsyncSession, runtime: Runtime, subaccount: Subaccount, mode: str
) -> None:
    """A mode change is refused (409) when, under the new mode, open positions would be under
    water: free collateral < 0, equity ≤ maintenance, or (isolated) a position whose own
    equity ``A_i + u_i`` is at or below its maintenance (reservations counted)."""
    _, book = await held_book(session, runtime, subaccount)
    if not book.holdings:
        return
    if mode == "isolated":
        options = [
            h.instrument for h in book.holdings if book.instruments[h.instrument].kind == "option"
        ]
        if options:
            raise Conflict(
                f"{subaccount.subaccount_id} holds options ({', '.join(options)}): options are "
                "not held in isolated mode"
            )
    risk_parameters = await parameters(session)
    after = evaluate(book.with_mode(mode), risk_parameters, liquidation=False)
    values = summary_to_decimals(after.summary, mode, risk_parameters.settlement_decimals)
    free, equity, maintenance = (
        values["free_collateral"],
        values["equity"],
        values["maintenance_margin"],
    )
    assert isinstance(free, Decimal) and isinstance(equity, Decimal)
    assert isinstance(maintenance, Decimal)
    under_water = free < 0 or equity <= maintenance
    if mode == "isolated":
        position_equity = after.summary.positions.equity
        assert position_equity is not None
        under_water = under_water or bool(
            (position_equity <= after.summary.positions.maintenance_margin).any()
        )
    if under_water:
        raise Conflict(
            f"switching to {mode} would put {subaccount.subaccount_id} under water "
            f"(free collateral {free}, equity {equity}, maintenance {maintenance})"
        )
