"""Marks of options and of underlyings' indices (api.md, Market data; margin.md, Options): each
source of an option posts a price and an ``iv``; the mark is the median price and the median
``iv`` of the same (fresh) sources. ``iv`` is required on an option and refused elsewhere; an
underlying that is neither an instrument nor an asset (the index an option is priced from) is
marked like an asset.

By hand (stale_after 5 s, the default): sources a, b, c at 100 / 110 / 130 with iv 0.50 / 0.60 /
0.90, all fresh → price 110, iv 0.60; with c 30 s old → price (100 + 110) / 2 = 105, iv
(0.50 + 0.60) / 2 = 0.55; all three stale → the median of every last value, 110 and 0.60.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.core.migrations import upgrade
from app.core.runtime import Runtime
from app.core.types import utcnow
from app.main import create_app
from app.marketdata import service
from app.marketdata.marks import SourceMark, Sources, judge, microseconds, verdict
from tests.conftest import Api, flush_redis
from tests.factories import BTC_PERP

CALL = "BTC-20270326-100000-C"
PUT = "BTC-20270326-90000-P"


def _option(option_type: str, strike: str) -> dict[str, Any]:
    expiry = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    return {
        "kind": "option",
        "underlying": "BTC",
        "option_type": option_type,
        "strike": strike,
        "expiry": expiry,
        "contract_size": "1",
        "tick_size": "0.5",
        "lot_size": "0.01",
    }


async def _reference(api: Api) -> None:
    """USDC, BTC-PERP and two options on BTC — and no asset BTC: ``BTC`` is only the
    underlying of the instruments."""
    await api.ok("PUT", "/v1/assets/USDC", json={"collateral_weight": "1", "is_settlement": True})
    await api.ok("PUT", "/v1/instruments/BTC-PERP", json=BTC_PERP)
    await api.ok("PUT", f"/v1/instruments/{CALL}", json=_option("call", "100000"))
    await api.ok("PUT", f"/v1/instruments/{PUT}", json=_option("put", "90000"))
    assert (await api.get("/v1/assets/BTC")).status_code == 404


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def _mark(
    symbol: str, price: str, source: str, seconds_ago: float = 0, **extra: Any
) -> dict[str, Any]:
    return {"symbol": symbol, "price": price, "source": source, "ts": _ago(seconds_ago), **extra}


async def _refused(api: Api, *marks: dict[str, Any]) -> str:
    """The field a refused post names."""
    response = await api.post("/v1/marks", json={"marks": list(marks)})
    assert response.status_code == 422, response.text
    field: str = response.json()["errors"][0]["field"]
    return field


async def test_an_options_iv_is_the_median_iv_of_its_fresh_sources(admin: Api) -> None:
    await _reference(admin)
    await admin.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                _mark(CALL, "100", "a", iv="0.50"),
                _mark(CALL, "110", "b", iv="0.60"),
                _mark(CALL, "130", "c", iv="0.90"),
                # The put: c is 30 s old, past stale_after (5 s): the fresh a and b decide.
                _mark(PUT, "100", "a", iv="0.50"),
                _mark(PUT, "110", "b", iv="0.60"),
                _mark(PUT, "130", "c", 30, iv="0.90"),
            ]
        },
    )
    call = await admin.ok("GET", f"/v1/marks/{CALL}")
    assert (call["price"], call["iv"], call["status"]) == ("110", "0.6", "fresh")
    assert {s["source"]: s["iv"] for s in call["sources"]} == {"a": "0.5", "b": "0.6", "c": "0.9"}

    put = await admin.ok("GET", f"/v1/marks/{PUT}")
    assert (put["price"], put["iv"], put["status"]) == ("105", "0.55", "fresh")
    assert {s["source"]: (s["fresh"], s["iv"]) for s in put["sources"]} == {
        "a": (True, "0.5"),
        "b": (True, "0.6"),
        "c": (False, "0.9"),
    }
    # The list answers the same, and null on a symbol without iv.
    await admin.ok("POST", "/v1/marks", json={"marks": [_mark("BTC-PERP", "60000", "a")]})
    listed = {m["symbol"]: m for m in (await admin.ok("GET", "/v1/marks"))["marks"]}
    assert (listed[CALL]["iv"], listed[PUT]["iv"]) == ("0.6", "0.55")
    assert listed["BTC-PERP"]["iv"] is None
    assert [s["iv"] for s in listed["BTC-PERP"]["sources"]] == [None]


async def test_a_stale_option_shows_the_median_iv_of_every_source(admin: Api) -> None:
    await _reference(admin)
    stale = [
        _mark(CALL, p, s, 20 + i, iv=v)
        for i, (p, s, v) in enumerate(
            [("100", "a", "0.5"), ("110", "b", "0.6"), ("130", "c", "0.9")]
        )
    ]
    await admin.ok("POST", "/v1/marks", json={"marks": stale})
    body = await admin.ok("GET", f"/v1/marks/{CALL}")
    assert (body["price"], body["iv"], body["status"]) == ("110", "0.6", "stale")


async def test_iv_is_required_on_an_option_and_refused_on_any_other_symbol(admin: Api) -> None:
    await _reference(admin)
    await admin.ok("PUT", "/v1/assets/ETH", json={"collateral_weight": "0.8"})
    ok = _mark(CALL, "100", "a", iv="0.5")
    assert await _refused(admin, _mark(CALL, "100", "a")) == "marks[0].iv"
    assert await _refused(admin, ok, _mark(CALL, "100", "b", iv=None)) == "marks[1].iv"
    assert await _refused(admin, ok, _mark("BTC-PERP", "60000", "a", iv="0.5")) == "marks[1].iv"
    assert await _refused(admin, _mark("ETH", "3000", "a", iv="0.5")) == "marks[0].iv"  # an asset
    assert await _refused(admin, _mark("BTC", "60000", "a", iv="0.5")) == "marks[0].iv"  # an index
    # Bounded: more than 0, at most 10 (1,000 % a year).
    for bad in ("0", "-0.1", "10.01", "nope"):
        assert await _refused(admin, _mark(CALL, "100", "a", iv=bad)) == "marks[0].iv", bad
    # Nothing of the refused posts was stored; the bounds themselves are accepted.
    assert (await admin.get(f"/v1/marks/{CALL}")).status_code == 404
    assert (await admin.get("/v1/marks/BTC-PERP")).status_code == 404
    await admin.ok(
        "POST",
        "/v1/marks",
        json={"marks": [_mark(CALL, "100", "a", iv="10"), _mark(PUT, "100", "a", iv="0.0001")]},
    )
    assert (await admin.ok("GET", f"/v1/marks/{CALL}"))["iv"] == "10"
    assert (await admin.ok("GET", f"/v1/marks/{PUT}"))["iv"] == "0.0001"


async def test_an_underlying_that_is_neither_instrument_nor_asset_is_marked(admin: Api) -> None:
    await _reference(admin)
    # Not an instrument, an asset or an underlying: refused as before.
    assert await _refused(admin, _mark("SOL", "200", "a")) == "marks[0].symbol"
    answer = await admin.ok(
        "POST",
        "/v1/marks",
        json={"marks": [_mark("BTC", "60000", "a"), _mark("BTC", "60010", "b"),
                        _mark("BTC", "59000", "c", 6)]},
    )  # fmt: skip
    assert answer == {"accepted": 3, "superseded": 0}
    body = await admin.ok("GET", "/v1/marks/BTC")
    # The default stale_after (5 s), as for an asset: c, 6 s old, is stale.
    assert (body["price"], body["status"], body["iv"]) == ("60005", "fresh", None)
    assert {s["source"]: s["fresh"] for s in body["sources"]} == {"a": True, "b": True, "c": False}
    listed = {m["symbol"] for m in (await admin.ok("GET", "/v1/marks"))["marks"]}
    assert "BTC" in listed


async def test_an_options_iv_survives_an_emptied_cache(admin: Api, settings: Settings) -> None:
    await _reference(admin)
    await admin.ok(
        "POST",
        "/v1/marks",
        json={"marks": [_mark(CALL, "100", "a", iv="0.5"), _mark(CALL, "110", "b", iv="0.6")]},
    )
    await flush_redis(settings)  # what a Redis restart without persistence looks like
    body = await admin.ok("GET", f"/v1/marks/{CALL}")  # from PostgreSQL's copy
    assert (body["price"], body["iv"]) == ("105", "0.55")
    assert {s["source"]: s["iv"] for s in body["sources"]} == {"a": "0.5", "b": "0.6"}
    # The next post refills the cache with every source, the ivs read back from PostgreSQL
    # included: c's 0.9 with a's and b's gives 0.6.
    await admin.ok("POST", "/v1/marks", json={"marks": [_mark(CALL, "130", "c", iv="0.9")]})
    await flush_redis(settings)
    await admin.ok("POST", "/v1/marks", json={"marks": [_mark(PUT, "100", "a", iv="0.7")]})
    # (PUT's post refills only PUT's key: CALL is read from PostgreSQL again, and agrees.)
    body = await admin.ok("GET", f"/v1/marks/{CALL}")
    assert (body["price"], body["iv"]) == ("110", "0.6")
    await admin.ok("POST", "/v1/marks", json={"marks": [_mark(CALL, "111", "b", iv="0.65")]})
    body = await admin.ok("GET", f"/v1/marks/{CALL}")  # from the refilled cache
    assert (body["price"], body["iv"]) == ("111", "0.65")
    assert {s["source"]: s["iv"] for s in body["sources"]} == {"a": "0.5", "b": "0.65", "c": "0.9"}


async def test_the_checks_verdict_carries_the_iv_from_the_cache_and_from_postgresql(
    admin: Api, app: FastAPI, settings: Settings
) -> None:
    """``read_for_check``, the check's one read of marks: the option's ``Verdict.iv`` is the
    median iv of its fresh sources whether Redis answers or, emptied, PostgreSQL does; a
    symbol without iv has None."""
    await _reference(admin)
    await admin.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                _mark(CALL, "100", "a", iv="0.5"),
                _mark(CALL, "110", "b", iv="0.6"),
                _mark(CALL, "130", "c", 30, iv="0.9"),
                _mark("BTC", "60000", "a"),
                _mark("BTC-PERP", "60000", "a"),
            ]
        },
    )
    runtime: Runtime = app.state.runtime
    symbols = sorted([CALL, "BTC", "BTC-PERP"])

    async def read() -> dict[str, tuple[Decimal, Decimal | None]]:
        async with runtime.hot.connect() as db:
            market = await service.read_for_check(db, runtime, symbols, [], None, {}, utcnow())
        return {s: (v.price, v.iv) for s, v in market.marks.items()}

    expected = {
        CALL: (Decimal(105), Decimal("0.55")),
        "BTC": (Decimal(60000), None),
        "BTC-PERP": (Decimal(60000), None),
    }
    assert await read() == expected
    await flush_redis(settings)
    assert await read() == expected


async def test_option_and_index_marks_on_the_embedded_default(tmp_path: Path) -> None:
    """SQLite and the in-process cache: the same rules, and a second process (an empty cache)
    reads the ivs back from the database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'options.db'}"
    await asyncio.to_thread(upgrade, url)
    for process in ("writer", "reader"):
        app = create_app(Settings(database_url=url, redis_url=None, admin_key="k" * 32))  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://pf") as client:
                api = Api(client, "k" * 32)
                if process == "writer":
                    await _reference(api)
                    assert await _refused(api, _mark(CALL, "100", "a")) == "marks[0].iv"
                    assert await _refused(api, _mark("BTC", "1", "a", iv="0.5")) == "marks[0].iv"
                    assert await _refused(api, _mark("SOL", "1", "a")) == "marks[0].symbol"
                    marks = [
                        _mark(CALL, "100", "a", iv="0.5"),
                        _mark(CALL, "110", "b", iv="0.6"),
                        _mark(CALL, "130", "c", 30, iv="0.9"),
                        _mark("BTC", "60000", "a"),
                    ]
                    await api.ok("POST", "/v1/marks", json={"marks": marks})
                call = await api.ok("GET", f"/v1/marks/{CALL}")
                assert (call["price"], call["iv"]) == ("105", "0.55"), process
                assert [s["iv"] for s in call["sources"]] == ["0.5", "0.6", "0.9"], process
                index = await api.ok("GET", "/v1/marks/BTC")
                assert (index["price"], index["iv"]) == ("60000", None), process


# --- judged by hand (marks.judge, marks.verdict) ------------------------------------------------

_T0 = datetime(2026, 12, 11, 12, 0, 0, tzinfo=UTC)


def _sources(*rows: tuple[str, float, str | None]) -> Sources:
    """(price, seconds ago, iv) per source, named s0, s1, …"""
    return Sources.of(
        [
            SourceMark(
                f"s{i}",
                Decimal(price),
                _T0 - timedelta(seconds=ago),
                None,
                None if iv is None else Decimal(iv),
            )
            for i, (price, ago, iv) in enumerate(rows)
        ]
    )


def test_the_iv_is_taken_over_the_same_sources_as_the_price() -> None:
    limit, band = Decimal(5), Decimal("0.05")
    every = _sources(("100", 1, "0.5"), ("110", 2, "0.6"), ("130", 3, "0.9"))
    one_stale = _sources(("100", 1, "0.5"), ("110", 2, "0.6"), ("130", 30, "0.9"))
    none = _sources(("100", 10, "0.5"), ("110", 20, "0.6"), ("130", 30, "0.9"))
    cases = [(every, "110", "0.6", "fresh"), (one_stale, "105", "0.55", "fresh"),
             (none, "110", "0.6", "stale")]  # fmt: skip
    for sources, price, iv, status in cases:
        mark = judge(CALL, sources, None, _T0, limit, band)
        assert (mark.price, mark.iv, mark.status) == (Decimal(price), Decimal(iv), status)
        judged, _ = verdict(sources, None, 300_000.0, microseconds(_T0), limit, band)
        assert (judged.price, judged.iv, judged.status) == (Decimal(price), Decimal(iv), status)
    # A fresh TWAP far from the price (deviating) leaves the iv as it is.
    deviating = judge(CALL, every, 50.0, _T0, limit, band)
    assert (deviating.status, deviating.iv) == ("deviating", Decimal("0.6"))
    # Without iv (every other symbol) there is none, whichever sources are fresh.
    plain = _sources(("100", 1, None), ("110", 30, None))
    assert judge("BTC", plain, None, _T0, limit, band).iv is None
    assert verdict(plain, None, 300_000.0, microseconds(_T0), limit, band)[0].iv is None
