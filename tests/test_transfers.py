"""Transfers: deposits, moves between subaccounts, idempotent replays and conflicts."""

from __future__ import annotations

from tests.conftest import Api
from tests.factories import desk


async def _usdc(api: Api, subaccount_id: str) -> str | None:
    body = await api.ok("GET", f"/v1/subaccounts/{subaccount_id}/balances")
    balance: str | None = body["balances"].get("USDC")
    return balance


async def test_a_replayed_transfer_answers_the_first_result_and_moves_nothing(admin: Api) -> None:
    await desk(admin, modes=("cross", "isolated"))
    deposit = {"transfer_id": "t1", "asset": "USDC", "amount": "1000", "kind": "deposit"}
    first = await admin.post("/v1/subaccounts/sub-cross/transfers", json=deposit)
    again = await admin.post("/v1/subaccounts/sub-cross/transfers", json=deposit)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert await _usdc(admin, "sub-cross") == "1000"
    conflict = await admin.post(
        "/v1/subaccounts/sub-cross/transfers", json={**deposit, "amount": "2000"}
    )
    assert conflict.status_code == 409
    assert await _usdc(admin, "sub-cross") == "1000"


async def test_a_transfer_moves_between_subaccounts(admin: Api) -> None:
    await desk(admin, modes=("cross", "isolated"))
    await admin.ok(
        "POST",
        "/v1/subaccounts/sub-cross/transfers",
        json={"transfer_id": "d1", "asset": "USDC", "amount": "1000", "kind": "deposit"},
    )
    move = {
        "transfer_id": "m1",
        "asset": "USDC",
        "amount": "250.5",
        "kind": "transfer",
        "to_subaccount_id": "sub-isolated",
    }
    await admin.ok("POST", "/v1/subaccounts/sub-cross/transfers", json=move)
    # 1,000 − 250.5 = 749.5 stays; 250.5 arrives.
    assert (await _usdc(admin, "sub-cross"), await _usdc(admin, "sub-isolated")) == (
        "749.5",
        "250.5",
    )
    too_much = {**move, "transfer_id": "m2", "amount": "749.500001"}
    refused = await admin.post("/v1/subaccounts/sub-cross/transfers", json=too_much)
    assert (refused.status_code, refused.json()["code"]) == (409, "INSUFFICIENT_MARGIN")
    assert await _usdc(admin, "sub-isolated") == "250.5"
