"""The pre-trade rules: one small function per reason code, each returning the reasons it
finds. A rejected basket lists every rule it breaks (api.md, Pre-trade check).

A basket that only reduces risk (no position grows or flips, and maintenance does not rise)
passes the margin, limit, loss and mark rules even under water; it still needs a tradable
instrument, valid sizes and prices, liquidity, and room in the order-rate and open-order caps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.accounts.limits import limit_value, symbol_limit
from app.instruments.models import Instrument
from app.pretrade.schemas import Reason, ReasonCode
from app.pretrade.simulate import Execution
from app.risk.book import MarkUsed

ZERO = Decimal(0)


EXPOSURE_LIMITS = (
    "max_position_notional",
    "max_underlying_notional",
    "max_gross_notional",
    "max_leverage",
    "max_daily_loss",
    "strategy_limits",
)
"""The limits judged on a book's exposure (``Totals``' notionals, equity and PnL); the rest
(order notional, open orders, order rate) need none of it."""


def caps_exposure(*limits: Mapping[str, Any]) -> bool:
    """Whether any of these limit sets caps exposure: if none does, no rule reads the exact
    notionals of the book, which are then not computed."""
    return any(each.get(name) for each in limits for name in EXPOSURE_LIMITS)


@dataclass(frozen=True)
class OrderView:
    """One leg as the rules see it."""

    index: int
    instrument: Instrument
    side: str
    size: Decimal
    limit_price: Decimal | None
    reduce_only: bool
    mark: MarkUsed
    execution: Execution
    adds_risk: bool
    """It grows or flips its instrument's position (legs applied in basket order)."""
    notional: Decimal
    """``size · k · price`` at its average fill (else limit, else mark) price."""
    index_mark: MarkUsed | None = None
    """An option's underlying index (its S); None for other instruments."""


@dataclass(frozen=True)
class Totals:
    """Exposure of a set of subaccounts: what account and strategy caps are summed over."""

    gross_notional: Decimal = ZERO
    equity: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    realized_today: Decimal = ZERO
    unrealized_at_start: Decimal = ZERO
    """Unrealised PnL when the day opened (its end-of-day capture)."""
    open_orders: int = 0
    """Legs of active reservations."""
    recent_orders: int = 0
    """Orders accepted in the last second (this subaccount's window)."""
    by_instrument: Mapping[str, Decimal] = field(default_factory=dict)
    """|q|·k·m per instrument."""
    by_underlying: Mapping[str, Decimal] = field(default_factory=dict)
    """Σ q·k·m per underlying (signed: long and short netted)."""

    def __add__(self, other: Totals) -> Totals:
        def merged(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> dict[str, Decimal]:
            return {k: a.get(k, ZERO) + b.get(k, ZERO) for k in {*a, *b}}

        return Totals(
            self.gross_notional + other.gross_notional,
            self.equity + other.equity,
            self.unrealized_pnl + other.unrealized_pnl,
            self.realized_today + other.realized_today,
            self.unrealized_at_start + other.unrealized_at_start,
            self.open_orders + other.open_orders,
            self.recent_orders + other.recent_orders,
            merged(self.by_instrument, other.by_instrument),
            merged(self.by_underlying, other.by_underlying),
        )


@dataclass(frozen=True)
class Basket:
    orders: Sequence[OrderView]
    reducing_only: bool
    free_collateral_after: Decimal
    margin_cover: Decimal
    """What covers the basket's margin: equity after (cross, portfolio), free collateral
    before the basket (isolated)."""
    before: Totals
    """This subaccount before the basket (its reservations counted as filled)."""
    after: Totals
    """This subaccount after the basket."""
    siblings: Totals
    """The account's other subaccounts (only loaded when the account has caps)."""
    strategy_siblings_gross: Decimal
    states: Mapping[str, str]
    """Non-active trading states by ``global`` / ``account`` / ``subaccount`` / ``instrument:X``."""
    subaccount_limits: Mapping[str, Any]
    account_limits: Mapping[str, Any]
    strategy: str | None
    collateral_marks: Mapping[str, MarkUsed]
    reserving: bool
    account_recent_orders: int
    """Orders the whole account had accepted in the last second."""


Rule = Callable[[Basket], list[Reason]]


Number = Decimal | int | float


def _reason(
    code: ReasonCode,
    index: int | None,
    message: str,
    value: Number | None = None,
    limit: Number | None = None,
    shortfall: Decimal | None = None,
) -> Reason:
    """A reason; a numeric rule gives ``value`` (what the basket would make its quantity) and
    ``limit`` (what it allows): money and sizes as decimals, ratios as floats, counts as ints."""
    return Reason(
        code=code, order_index=index, message=message, value=value, limit=limit, shortfall=shortfall
    )


def _state(basket: Basket, order: OrderView) -> str:
    scopes = ("global", "account", "subaccount", f"instrument:{order.instrument.symbol}")
    states = [basket.states.get(scope) for scope in scopes]
    if "halted" in states:
        return "halted"
    return "reduce_only" if "reduce_only" in states else "active"


def check_halted(basket: Basket) -> list[Reason]:
    return [
        _reason("HALTED", o.index, f"{o.instrument.symbol} is halted")
        for o in basket.orders
        if _state(basket, o) == "halted"
    ]


def check_reduce_only(basket: Basket) -> list[Reason]:
    reasons = []
    for o in basket.orders:
        if not o.adds_risk:
            continue
        if _state(basket, o) == "reduce_only":
            reasons.append(_reason("REDUCE_ONLY", o.index, "trading is reduce-only here"))
        elif o.reduce_only:
            reasons.append(
                _reason(
                    "REDUCE_ONLY", o.index, "a reduce-only order would grow or flip the position"
                )
            )
    return reasons


def check_lot_size(basket: Basket) -> list[Reason]:
    return [
        _reason(
            "LOT_SIZE",
            o.index,
            f"size {o.size} is not a multiple of {o.instrument.lot_size}",
            o.size,
            o.instrument.lot_size,
        )
        for o in basket.orders
        if o.size % o.instrument.lot_size != 0
    ]


def check_tick_size(basket: Basket) -> list[Reason]:
    return [
        _reason(
            "TICK_SIZE",
            o.index,
            f"limit_price {o.limit_price} is not a multiple of {o.instrument.tick_size}",
            o.limit_price,
            o.instrument.tick_size,
        )
        for o in basket.orders
        if o.limit_price is not None and o.limit_price % o.instrument.tick_size != 0
    ]


def check_price_band(basket: Basket) -> list[Reason]:
    reasons = []
    for o in basket.orders:
        band = o.instrument.price_band
        if band is None or o.limit_price is None or o.mark.price <= 0:
            continue
        distance = abs(o.limit_price - o.mark.price) / o.mark.price
        if distance > band:
            reasons.append(
                _reason(
                    "PRICE_BAND",
                    o.index,
                    f"limit_price is {distance:.2%} from the mark {o.mark.price}; the band is {band}",
                    float(distance),
                    float(band),
                )
            )
    return reasons


def check_liquidity(basket: Basket) -> list[Reason]:
    return [
        _reason(
            "INSUFFICIENT_LIQUIDITY",
            o.index,
            f"the visible book fills {o.execution.filled_size} of {o.size}",
            o.size,
            o.execution.filled_size,
        )
        for o in basket.orders
        if o.execution.short_of_liquidity
    ]


def check_marks(basket: Basket) -> list[Reason]:
    """Fail closed: risk-adding legs need a fresh mark, as does collateral backing them."""
    reasons = []
    for o in basket.orders:
        if not o.adds_risk:
            continue
        if o.mark.status in ("stale", "missing"):
            reasons.append(
                _reason("STALE_MARK", o.index, f"{o.instrument.symbol} mark is {o.mark.status}")
            )
        elif o.mark.status == "deviating":
            reasons.append(
                _reason(
                    "ORACLE_DEVIATION",
                    o.index,
                    f"{o.instrument.symbol} mark deviates from its TWAP",
                )
            )
        # An option is valued at its underlying's index as well as its own mark.
        index = o.index_mark
        if index is not None and index.status in ("stale", "missing"):
            reasons.append(
                _reason(
                    "STALE_MARK",
                    o.index,
                    f"{o.instrument.underlying} index mark is {index.status}",
                )
            )
        elif index is not None and index.status == "deviating":
            reasons.append(
                _reason(
                    "ORACLE_DEVIATION",
                    o.index,
                    f"{o.instrument.underlying} index mark deviates from its TWAP",
                )
            )
    if any(o.adds_risk for o in basket.orders):
        for symbol, mark in sorted(basket.collateral_marks.items()):
            if mark.status in ("stale", "missing"):
                reasons.append(
                    _reason("STALE_MARK", None, f"collateral {symbol} mark is {mark.status}")
                )
            elif mark.status == "deviating":
                reasons.append(
                    _reason(
                        "ORACLE_DEVIATION", None, f"collateral {symbol} mark deviates from its TWAP"
                    )
                )
    return reasons


def check_order_notional(basket: Basket) -> list[Reason]:
    reasons = []
    for o in basket.orders:
        caps: list[tuple[ReasonCode, Decimal | None, str]] = [
            ("MAX_ORDER_NOTIONAL", o.instrument.max_order_notional, "the instrument's"),
            (
                "MAX_ORDER_NOTIONAL",
                limit_value(basket.subaccount_limits, "max_order_notional"),
                "the subaccount's",
            ),
            (
                "ACCOUNT_LIMIT",
                limit_value(basket.account_limits, "max_order_notional"),
                "the account's",
            ),
        ]
        for code, cap, whose in caps:
            if cap is not None and o.notional > cap:
                reasons.append(
                    _reason(
                        code,
                        o.index,
                        f"order notional {o.notional} exceeds {whose} max_order_notional {cap}",
                        o.notional,
                        cap,
                    )
                )
    return reasons


def _growing(basket: Basket) -> list[OrderView]:
    return [o for o in basket.orders if o.adds_risk]


def check_position_notional(basket: Basket) -> list[Reason]:
    reasons = []
    for symbol in dict.fromkeys(o.instrument.symbol for o in _growing(basket)):
        sub_cap = symbol_limit(basket.subaccount_limits, "max_position_notional", symbol)
        account_cap = symbol_limit(basket.account_limits, "max_position_notional", symbol)
        index = next(o.index for o in basket.orders if o.instrument.symbol == symbol)
        notional = basket.after.by_instrument.get(symbol, ZERO)
        if sub_cap is not None and notional > sub_cap:
            reasons.append(
                _reason(
                    "MAX_POSITION_NOTIONAL",
                    index,
                    f"{symbol} position notional {notional} exceeds {sub_cap}",
                    notional,
                    sub_cap,
                )
            )
        total = notional + basket.siblings.by_instrument.get(symbol, ZERO)
        if account_cap is not None and total > account_cap:
            reasons.append(
                _reason(
                    "ACCOUNT_LIMIT",
                    index,
                    f"account {symbol} position notional {total} exceeds {account_cap}",
                    total,
                    account_cap,
                )
            )
    return reasons


def check_underlying_notional(basket: Basket) -> list[Reason]:
    reasons = []
    for underlying in dict.fromkeys(o.instrument.underlying for o in _growing(basket)):
        sub_cap = symbol_limit(basket.subaccount_limits, "max_underlying_notional", underlying)
        account_cap = symbol_limit(basket.account_limits, "max_underlying_notional", underlying)
        before = abs(basket.before.by_underlying.get(underlying, ZERO))
        after = abs(basket.after.by_underlying.get(underlying, ZERO))
        if after <= before:
            continue  # a hedge that nets the underlying down never breaks its cap
        if sub_cap is not None and after > sub_cap:
            reasons.append(
                _reason(
                    "MAX_UNDERLYING_NOTIONAL",
                    None,
                    f"net {underlying} notional {after} exceeds {sub_cap}",
                    after,
                    sub_cap,
                )
            )
        total = abs(
            basket.after.by_underlying.get(underlying, ZERO)
            + basket.siblings.by_underlying.get(underlying, ZERO)
        )
        if account_cap is not None and total > account_cap:
            reasons.append(
                _reason(
                    "ACCOUNT_LIMIT",
                    None,
                    f"account net {underlying} notional {total} exceeds {account_cap}",
                    total,
                    account_cap,
                )
            )
    return reasons


def check_gross_notional(basket: Basket) -> list[Reason]:
    if basket.reducing_only or basket.after.gross_notional <= basket.before.gross_notional:
        return []
    reasons = []
    gross = basket.after.gross_notional
    cap = limit_value(basket.subaccount_limits, "max_gross_notional")
    if cap is not None and gross > cap:
        reasons.append(
            _reason("MAX_GROSS_NOTIONAL", None, f"gross notional {gross} exceeds {cap}", gross, cap)
        )
    account_cap = limit_value(basket.account_limits, "max_gross_notional")
    total = gross + basket.siblings.gross_notional
    if account_cap is not None and total > account_cap:
        reasons.append(
            _reason(
                "ACCOUNT_LIMIT",
                None,
                f"account gross notional {total} exceeds {account_cap}",
                total,
                account_cap,
            )
        )
    strategies = basket.account_limits.get("strategy_limits") or {}
    if basket.strategy is not None and basket.strategy in strategies:
        strategy_cap = limit_value(strategies[basket.strategy], "max_gross_notional")
        strategy_total = gross + basket.strategy_siblings_gross
        if strategy_cap is not None and strategy_total > strategy_cap:
            reasons.append(
                _reason(
                    "STRATEGY_LIMIT",
                    None,
                    f"strategy {basket.strategy} gross notional {strategy_total} exceeds {strategy_cap}",
                    strategy_total,
                    strategy_cap,
                )
            )
    return reasons


def _leverage(gross: Decimal, equity: Decimal) -> Decimal | None:
    return gross / equity if equity > 0 else None


def check_leverage(basket: Basket) -> list[Reason]:
    if basket.reducing_only:
        return []
    reasons = []
    for code, cap, gross, equity, whose in (
        (
            "MAX_LEVERAGE",
            limit_value(basket.subaccount_limits, "max_leverage"),
            basket.after.gross_notional,
            basket.after.equity,
            "leverage",
        ),
        (
            "ACCOUNT_LIMIT",
            limit_value(basket.account_limits, "max_leverage"),
            basket.after.gross_notional + basket.siblings.gross_notional,
            basket.after.equity + basket.siblings.equity,
            "account leverage",
        ),
    ):
        if cap is None or gross == 0:
            continue
        leverage = _leverage(gross, equity)
        if leverage is None or leverage > cap:
            shown = "unbounded (equity ≤ 0)" if leverage is None else f"{leverage:.4f}"
            reasons.append(
                _reason(
                    code,  # type: ignore[arg-type]
                    None,
                    f"{whose} after would be {shown}; the cap is {cap}",
                    None if leverage is None else float(leverage),  # unbounded: no number
                    float(cap),
                )
            )
    return reasons


def _todays_pnl(totals: Totals) -> Decimal:
    return totals.realized_today + totals.unrealized_pnl - totals.unrealized_at_start


def check_loss_limit(basket: Basket) -> list[Reason]:
    """Today's loss = −(PnL realised since 00:00 UTC + the change of unrealised PnL since then:
    that of the book after, less that of the capture which opened the day). A position carried
    over midnight counts only its move since; one opened today, its whole unrealised PnL."""
    if basket.reducing_only:
        return []
    reasons = []
    loss = -_todays_pnl(basket.after)
    cap = limit_value(basket.subaccount_limits, "max_daily_loss")
    if cap is not None and loss > cap:
        reasons.append(_reason("LOSS_LIMIT", None, f"today's loss {loss} exceeds {cap}", loss, cap))
    account_cap = limit_value(basket.account_limits, "max_daily_loss")
    total = loss - _todays_pnl(basket.siblings)
    if account_cap is not None and total > account_cap:
        reasons.append(
            _reason(
                "ACCOUNT_LIMIT",
                None,
                f"account loss today {total} exceeds {account_cap}",
                total,
                account_cap,
            )
        )
    return reasons


def check_open_orders(basket: Basket) -> list[Reason]:
    if not basket.reserving:
        return []
    reasons = []
    new = len(basket.orders)
    cap = limit_value(basket.subaccount_limits, "max_open_orders")
    if cap is not None and basket.before.open_orders + new > cap:
        reasons.append(
            _reason(
                "MAX_OPEN_ORDERS",
                None,
                f"{basket.before.open_orders} open + {new} exceeds {cap}",
                basket.before.open_orders + new,
                int(cap),
            )
        )
    account_cap = limit_value(basket.account_limits, "max_open_orders")
    total = basket.before.open_orders + basket.siblings.open_orders + new
    if account_cap is not None and total > account_cap:
        reasons.append(
            _reason(
                "ACCOUNT_LIMIT",
                None,
                f"account open orders {total} exceed {account_cap}",
                total,
                int(account_cap),
            )
        )
    return reasons


def check_order_rate(basket: Basket) -> list[Reason]:
    reasons = []
    new = len(basket.orders)
    cap = limit_value(basket.subaccount_limits, "max_order_rate")
    if cap is not None and basket.before.recent_orders + new > cap:
        reasons.append(
            _reason(
                "ORDER_RATE",
                None,
                f"{basket.before.recent_orders} orders in the last second + {new} exceeds {cap}/s",
                basket.before.recent_orders + new,
                int(cap),
            )
        )
    account_cap = limit_value(basket.account_limits, "max_order_rate")
    total = basket.account_recent_orders + new
    if account_cap is not None and total > account_cap:
        reasons.append(
            _reason(
                "ACCOUNT_LIMIT",
                None,
                f"account order rate {total}/s exceeds {account_cap}/s",
                total,
                int(account_cap),
            )
        )
    return reasons


def check_margin(basket: Basket) -> list[Reason]:
    """``value`` is what the basket needs and ``limit`` what covers it (margin.md: cross and
    portfolio, initial margin after against equity after, fees paid; isolated, the allocation
    and fee against free collateral), so ``limit − value`` is the free collateral after; the
    ``shortfall`` is its opposite. A deposit of ``d`` of the settlement asset (price and weight
    1) raises free collateral by exactly ``d`` and moves no requirement, so depositing the
    shortfall passes and one unit of precision less does not."""
    free = basket.free_collateral_after
    if basket.reducing_only or free >= 0:
        return []
    return [
        _reason(
            "INSUFFICIENT_MARGIN",
            None,
            f"free collateral after the basket would be {free}",
            basket.margin_cover - free,
            basket.margin_cover,
            -free,
        )
    ]


RULES: tuple[Rule, ...] = (
    check_halted,
    check_reduce_only,
    check_lot_size,
    check_tick_size,
    check_price_band,
    check_liquidity,
    check_marks,
    check_order_notional,
    check_position_notional,
    check_underlying_notional,
    check_gross_notional,
    check_leverage,
    check_loss_limit,
    check_open_orders,
    check_order_rate,
    check_margin,
)


def judge(basket: Basket) -> list[Reason]:
    """Every reason the basket breaks, in rule order."""
    return [reason for rule in RULES for reason in rule(basket)]
