"""Fill arithmetic worked by hand, and idempotent replays."""

from __future__ import annotations

from tests.conftest import Api
from tests.factories import deposit, desk, fill


async def _position(api: Api, instrument: str = "BTC-PERP") -> dict[str, str] | None:
    body = await api.ok("GET", "/v1/subaccounts/sub-cross/positions")
    return next((p for p in body["positions"] if p["instrument"] == instrument), None)


async def _usdc(api: Api) -> str:
    return (await api.ok("GET", "/v1/subaccounts/sub-cross/balances"))["balances"]["USDC"]


async def test_grow_reduce_flip_and_fees_worked_by_hand(admin: Api) -> None:
    await desk(admin)
    await deposit(admin, "sub-cross", "100000")

    # Buy 2 @ 60,000 (fee 12): long 2 @ 60,000; USDC 100,000 − 12 = 99,988.
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f1", "buy", "2", "60000", fee="12")]})
    # Buy 1 @ 63,000 (fee 6): weighted entry (2·60,000 + 1·63,000) / 3 = 61,000; USDC 99,982.
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f2", "buy", "1", "63000", fee="6")]})
    position = await _position(admin)
    assert position is not None
    assert (position["size"], position["entry_price"]) == ("3", "61000")
    assert await _usdc(admin) == "99982"

    # Sell 1 @ 64,000 (fee 4): partial reduce keeps the entry; realised 1·(64,000 − 61,000) =
    # 3,000; USDC 99,982 + 3,000 − 4 = 102,978.
    body = await admin.ok(
        "POST", "/v1/fills", json={"fills": [fill("f3", "sell", "1", "64000", fee="4")]}
    )
    assert body["fills"][0]["realized_pnl"] == "3000"
    position = await _position(admin)
    assert position is not None
    assert (position["size"], position["entry_price"], position["realized_pnl"]) == (
        "2",
        "61000",
        "3000",
    )
    assert await _usdc(admin) == "102978"

    # Sell 5 @ 59,000 (fee 10): closes 2 realising 2·(59,000 − 61,000) = −4,000, then opens
    # short 3 at the fill price 59,000; USDC 102,978 − 4,000 − 10 = 98,968.
    await admin.ok(
        "POST", "/v1/fills", json={"fills": [fill("f4", "sell", "5", "59000", fee="10")]}
    )
    position = await _position(admin)
    assert position is not None
    assert (position["size"], position["entry_price"], position["realized_pnl"]) == (
        "-3",
        "59000",
        "-1000",
    )
    assert await _usdc(admin) == "98968"

    # Buy 3 @ 58,000: closes the short exactly, realising 3·(58,000 − 59,000)·(−1) = +3,000.
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("f5", "buy", "3", "58000")]})
    assert await _position(admin) is None
    assert await _usdc(admin) == "101968"


async def test_short_grows_with_weighted_entry_and_a_rebate_credits(admin: Api) -> None:
    await desk(admin)
    # Sell 1 @ 100 then 3 @ 104: short 4 @ (100 + 312) / 4 = 103. A negative fee is a rebate.
    fills = [fill("s1", "sell", "1", "100", fee="-0.5"), fill("s2", "sell", "3", "104")]
    await admin.ok("POST", "/v1/fills", json={"fills": fills})
    position = await _position(admin)
    assert position is not None
    assert (position["size"], position["entry_price"]) == ("-4", "103")
    assert await _usdc(admin) == "0.5"


async def test_replayed_fill_answers_the_first_result_and_changes_nothing(admin: Api) -> None:
    await desk(admin)
    batch = {"fills": [fill("r1", "buy", "1", "50000", fee="5")]}
    first = await admin.ok("POST", "/v1/fills", json=batch)
    again = await admin.ok("POST", "/v1/fills", json=batch)
    assert again == first
    position = await _position(admin)
    assert position is not None and position["size"] == "1"
    assert await _usdc(admin) == "-5"


async def test_same_fill_id_with_other_content_is_a_conflict_and_the_batch_writes_nothing(
    admin: Api,
) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/fills", json={"fills": [fill("c1", "buy", "1", "50000")]})
    response = await admin.post(
        "/v1/fills",
        json={"fills": [fill("c2", "buy", "7", "50000"), fill("c1", "buy", "2", "50000")]},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"
    assert "fills[1].fill_id" in response.json()["detail"]
    position = await _position(admin)
    assert position is not None and position["size"] == "1"  # c2 was not applied either


async def test_a_batch_with_one_bad_fill_applies_none(admin: Api) -> None:
    await desk(admin)
    response = await admin.post(
        "/v1/fills",
        json={
            "fills": [
                fill("b1", "buy", "1", "50000"),
                fill("b2", "buy", "1", "50000", instrument="NOPE-PERP"),
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "fills[1].instrument"
    assert await _position(admin) is None


async def test_balance_keeps_every_digit_of_a_realised_pnl(admin: Api) -> None:
    """Regression, found by the replay above: balances are exact (api.md, Conventions), so a
    large balance must keep every digit of a realised PnL, not round to 28 significant digits.

    Deposit 100,000,000 USDC. Buy 1 BTC-PERP @ 60,000, buy 2 @ 60,001: the weighted entry
    180,002 / 3 = 60,000.666… does not terminate and rounds up for a long at 18 places to
    60,000.666666666666666667. Sell 0.001 @ 60,000.5 realises
    0.001 · (60,000.5 − 60,000.666666666666666667) = −0.000166666666666666667, so the balance is
    100,000,000 − 0.000166666666666666667 = 99,999,999.999833333333333333333 (30 digits)."""
    await desk(admin)
    await deposit(admin, "sub-cross", "100000000")
    buys = [fill("e1", "buy", "1", "60000"), fill("e2", "buy", "2", "60001")]
    await admin.ok("POST", "/v1/fills", json={"fills": buys})
    body = await admin.ok(
        "POST", "/v1/fills", json={"fills": [fill("e3", "sell", "0.001", "60000.5")]}
    )
    assert body["fills"][0]["entry_price"] == "60000.666666666666666667"
    assert body["fills"][0]["realized_pnl"] == "-0.000166666666666666667"
    balances = await admin.ok("GET", "/v1/subaccounts/sub-cross/balances")
    assert balances["balances"]["USDC"] == "99999999.999833333333333333333"
