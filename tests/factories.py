"""A small desk built through the API, for tests that need reference data and an account."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

BTC_PERP: dict[str, Any] = {
    "kind": "perpetual",
    "underlying": "BTC",
    "contract_size": "1",
    "tick_size": "0.5",
    "lot_size": "0.001",
    "margin_tiers": [{"notional_floor": "0", "initial_margin_fraction": "0.1"}],
    "taker_fee_rate": "0.0005",
    "maker_fee_rate": "0.0002",
    "price_band": "0.05",
    "funding_interval_s": 3600,
}
ETH_PERP: dict[str, Any] = {
    **BTC_PERP,
    "underlying": "ETH",
    "tick_size": "0.01",
    "lot_size": "0.01",
}


async def desk(api: Api, *, modes: tuple[str, ...] = ("cross",)) -> None:
    """USDC (settlement), BTC (weight 0.9), BTC-PERP and ETH-PERP (10% IM, 5% MM), account
    ``acct-1`` with one subaccount per mode, named ``sub-<mode>``, and ``acct-2`` with
    ``other-sub`` (cross)."""
    await api.ok("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
    await api.ok("PUT", "/v1/assets/BTC", json={"collateral_weight": "0.9", "underlying": "BTC"})
    await api.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP)
    await api.ok("PUT", "/v1/instruments/ETH-PERP", json=ETH_PERP)
    await api.ok("POST", "/v1/accounts", json={"account_id": "acct-1", "name": "Fund One"})
    await api.ok("POST", "/v1/accounts", json={"account_id": "acct-2", "name": "Fund Two"})
    for mode in modes:
        await api.ok(
            "POST",
            "/v1/subaccounts",
            json={"subaccount_id": f"sub-{mode}", "account_id": "acct-1", "margin_mode": mode},
        )
    await api.ok(
        "POST",
        "/v1/subaccounts",
        json={"subaccount_id": "other-sub", "account_id": "acct-2", "margin_mode": "cross"},
    )


async def deposit(api: Api, subaccount_id: str, amount: str, asset: str = "USDC") -> None:
    await api.ok(
        "POST",
        f"/v1/subaccounts/{subaccount_id}/transfers",
        json={
            "transfer_id": f"dep-{subaccount_id}-{asset}-{amount}",
            "asset": asset,
            "amount": amount,
            "kind": "deposit",
        },
    )


def fill(
    fill_id: str,
    side: str,
    size: str,
    price: str,
    *,
    subaccount_id: str = "sub-cross",
    instrument: str = "BTC-PERP",
    fee: str = "0",
    ts: str = "2026-01-01T00:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "fill_id": fill_id,
        "subaccount_id": subaccount_id,
        "instrument": instrument,
        "side": side,
        "size": size,
        "price": price,
        "fee": fee,
        "ts": ts,
        **extra,
    }


async def marks(api: Api, prices: dict[str, str], **extra: Any) -> None:
    """Fresh marks from two agreeing sources for each symbol."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    await api.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                {
                    "symbol": symbol,
                    "price": price,
                    "source": source,
                    "ts": now,
                    **extra.get(symbol, {}),
                }
                for symbol, price in prices.items()
                for source in ("venue", "oracle")
            ]
        },
    )
