"""Margin on the read path: loads a subaccount's state, converts it once, asks the engine."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Subaccount


async def check_withdrawal(
    session: AsyncSession, subaccount: Subaccount, asset: str, amount: Decimal
) -> None:
    raise NotImplementedError


async def check_mode_change(session: AsyncSession, subaccount: Subaccount, mode: str) -> None:
    raise NotImplementedError
