"""The dashboard view: every subaccount's summary from one batch engine call, most at risk
first, cursor-paged."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository as accounts_repository
from app.core.errors import InvalidInput
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.engine.rounding import summary_to_decimals
from app.risk import resident, service
from app.risk.batch import evaluate_subaccounts, risk_order
from app.risk.schemas import OverviewOut, OverviewRow

SortKey = Literal[
    "maintenance_margin_ratio", "initial_margin_ratio", "leverage", "free_collateral", "equity"
]


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        offset = int(value)
    except ValueError:
        raise InvalidInput("cursor", "not a cursor this endpoint gave out") from None
    if kind != "o" or offset < 0:
        raise InvalidInput("cursor", "not a cursor this endpoint gave out")
    return offset


async def overview(
    session: AsyncSession,
    runtime: Runtime,
    accounts: frozenset[str] | None,
    *,
    sort: SortKey,
    limit: int,
    cursor: str | None,
    account_id: str | None,
    margin_mode: str | None,
    min_ratio: float | None,
) -> OverviewOut:
    """Sorted most at risk first: ratios and leverage descending (equity ≤ 0 on top), free
    collateral and equity ascending; ties by subaccount id."""
    offset = _offset(cursor)
    view = await resident.current_view(session, runtime)
    subaccounts = [
        s
        for s in (
            view.subaccounts(account_id, accounts)
            if view is not None
            else await accounts_repository.list_subaccounts(session, account_id, accounts)
        )
        if margin_mode is None or s.margin_mode == margin_mode
    ]
    everyone = account_id is None and accounts is None and margin_mode is None
    parameters = await service.parameters(session)
    evaluation = (
        await evaluate_subaccounts(
            session, runtime, subaccounts, parameters, everyone=everyone, view=view
        )
        if subaccounts
        else None
    )
    order: list[int] = []
    if evaluation is not None:
        at_risk = risk_order(evaluation)
        keep = np.ones(len(subaccounts), dtype=bool) if min_ratio is None else at_risk >= min_ratio
        summary = evaluation.summary
        if sort == "maintenance_margin_ratio":
            key = -at_risk
        elif sort in ("initial_margin_ratio", "leverage"):
            ratios = np.array(getattr(summary, sort), dtype=np.float64)
            key = -np.where(np.isnan(ratios), np.inf, ratios)
        else:
            key = np.array(getattr(summary, sort), dtype=np.float64)
        ids = np.array([s.subaccount_id for s in subaccounts])
        ranked = np.lexsort((ids, key))
        order = [int(i) for i in ranked if keep[i]]
    page = order[offset : offset + limit]
    rows = []
    decimals = parameters.settlement_decimals
    for i in page:
        assert evaluation is not None
        book = subaccounts[i]
        values = summary_to_decimals(evaluation.summary.row(i), book.margin_mode, decimals)
        rows.append(
            OverviewRow.model_validate(
                {
                    **values,
                    "subaccount_id": book.subaccount_id,
                    "account_id": book.account_id,
                    "margin_mode": book.margin_mode,
                }
            )
        )
    more = offset + limit < len(order)
    return OverviewOut(
        as_of=utcnow(), subaccounts=rows, next_cursor=_cursor(offset + limit) if more else None
    )
