"""Marks: median of fresh sources, staleness, TWAP deviation, and the PostgreSQL fallback."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from app.core.config import Settings
from app.marketdata.marks import (
    NEVER_US,
    TWAP_QUANTUM,
    SourceMark,
    Sources,
    TwapState,
    deviation_status,
    judge,
    microseconds,
    verdict,
)
from tests.conftest import Api, flush_redis
from tests.factories import desk


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def mark(price: str, source: str, seconds_ago: float = 0, **extra: Any) -> dict[str, Any]:
    return {"symbol": "BTC-PERP", "price": price, "source": source, "ts": ago(seconds_ago), **extra}


async def test_mark_is_the_median_of_fresh_sources(admin: Api) -> None:
    await desk(admin)
    marks = [mark("100", "a"), mark("103", "b"), mark("101", "c"), mark("99", "old", 30)]
    await admin.ok("POST", "/v1/marks", json={"marks": marks})
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    # Fresh: 100, 101, 103 → median 101; the 30 s old source is past stale_after (5 s), else
    # the median of 99, 100, 101, 103 would be 100.5.
    assert body["price"] == "101"
    assert body["status"] == "fresh"
    fresh = {s["source"]: s["fresh"] for s in body["sources"]}
    assert fresh == {"a": True, "b": True, "c": True, "old": False}
    old = next(s for s in body["sources"] if s["source"] == "old")
    assert 29_000 <= old["age_ms"] <= 40_000


async def test_even_number_of_sources_takes_the_mean_of_the_middle_two(admin: Api) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a"), mark("101", "b")]})
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["price"] == "100.5"


async def test_no_fresh_source_is_stale(admin: Api) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a", 6), mark("102", "b", 9)]})
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    assert body["status"] == "stale"
    assert body["price"] == "101"  # the median of the last values, shown but not trusted


async def test_stale_after_is_per_instrument(admin: Api) -> None:
    await desk(admin)
    instrument = await admin.ok("GET", "/v1/instruments/BTC-PERP")
    assert instrument["stale_after_s"] == "5"
    slow = {
        k: v for k, v in instrument.items() if k not in ("symbol", "updated_at", "max_leverage")
    }
    slow["stale_after_s"] = "60"
    await admin.ok("PUT", "/v1/instruments/BTC-PERP", json=slow)
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a", 30)]})
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["status"] == "fresh"


async def _post(api: Api, *marks: dict[str, Any]) -> None:
    await api.ok("POST", "/v1/marks", json={"marks": list(marks)})


async def test_a_jump_away_from_the_twap_is_deviating(admin: Api) -> None:
    await desk(admin)
    # 100 for 0.5 s, then 110: the TWAP is 100 over those 0.5 s, 110 only for the moments
    # since, so about 100; |110 − 100| / 100 = 10 % > 5 % (deviating while the TWAP < 104.76).
    await _post(admin, mark("100", "a"))
    await asyncio.sleep(0.5)
    await _post(admin, mark("110", "a"))
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    assert body["status"] == "deviating"
    assert 100 <= float(body["twap"]) < 104


async def test_a_move_within_the_deviation_band_stays_fresh(admin: Api) -> None:
    await desk(admin)
    # 100 for 0.5 s then 104: at most 4 % from the TWAP (100 ≤ TWAP ≤ 104), inside the band.
    await _post(admin, mark("100", "a"))
    await asyncio.sleep(0.5)
    await _post(admin, mark("104", "a"))
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["status"] == "fresh"


async def test_a_late_tick_never_rewrites_the_twap(admin: Api) -> None:
    """Two fresh sources at 100 and 102, then a third source's tick at 200 dated two minutes
    back: the mark is 101 (the late tick is stale), and the TWAP stays between 100 and 102 —
    the late tick is not history, so it cannot drag the TWAP to ~200 and fail checks closed."""
    await desk(admin)
    await _post(admin, mark("100", "a"), mark("102", "b"))
    await _post(admin, mark("200", "c", 120))
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    assert (body["price"], body["status"]) == ("101", "fresh")
    assert 100 <= float(body["twap"]) <= 102


async def test_a_cache_that_restarted_empty_still_judges_a_jump(
    admin: Api, settings: Settings
) -> None:
    """The TWAP state is kept in PostgreSQL too: 100 for 0.5 s, the cache emptied (a restart
    without persistence), then 110 — deviating from the first post after it."""
    await desk(admin)
    await _post(admin, mark("100", "a"))
    await asyncio.sleep(0.5)
    await flush_redis(settings)
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["twap"] == "100"  # from PostgreSQL
    await _post(admin, mark("110", "a"))
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    assert body["status"] == "deviating"
    assert 100 <= float(body["twap"]) < 104


def test_the_twap_extends_by_hand() -> None:
    """100 from t = 0, 110 from t = 1 s: at t = 2 s the TWAP is (100 · 1 + 110 · 1) / 2 = 105.
    Past a 300 s window: 100 from 0, 110 from 400 s; at 550 s the window [250, 550] holds
    100 for 150 s and 110 for 150 s: 105 again."""
    state = TwapState.first(0, 100.0).extended(1_000, 110.0, 300_000)
    assert state.at(2_000, 300_000) == 105
    late = TwapState.first(0, 100.0).extended(400_000, 110.0, 300_000)
    assert late.at(550_000, 300_000) == 105
    assert late.at(700_000, 300_000) == 110  # the whole window at 110
    # A point dated before the last is taken at the last's time: history is never rewritten.
    assert state.extended(500, 90.0, 300_000).at_ms == 1_000


async def test_an_older_mark_from_the_same_source_is_ignored(admin: Api) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a", 1)]})
    body = await admin.ok("POST", "/v1/marks", json={"marks": [mark("90", "a", 3)]})
    assert body == {"accepted": 0, "superseded": 1}
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["price"] == "100"


async def test_future_dated_and_non_positive_marks_are_refused(admin: Api) -> None:
    await desk(admin)
    future = mark("100", "a", -30)
    response = await admin.post("/v1/marks", json={"marks": [mark("100", "b"), future]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "marks[1].ts"
    response = await admin.post("/v1/marks", json={"marks": [mark("0", "a")]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "marks[0].price"
    assert (await admin.get("/v1/marks/BTC-PERP")).status_code == 404  # nothing was stored


async def test_a_post_naming_an_unknown_symbol_stores_and_audits_nothing(admin: Api) -> None:
    await desk(admin)
    unknown = {**mark("5", "a"), "symbol": "NOPE"}
    response = await admin.post("/v1/marks", json={"marks": [mark("100", "a"), unknown]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "marks[1].symbol"
    assert (await admin.get("/v1/marks/BTC-PERP")).status_code == 404
    audited = await admin.ok("GET", "/v1/audit", params={"kind": "marks", "limit": 10})
    assert audited["entries"] == []
    # The same post without it is stored, audited once, and judged.
    body = await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a")]})
    assert body == {"accepted": 1, "superseded": 0}
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["price"] == "100"
    audited = await admin.ok("GET", "/v1/audit", params={"kind": "marks", "limit": 10})
    assert [e["payload"]["marks"][0]["price"] for e in audited["entries"]] == ["100"]


async def test_a_feeder_key_revoked_since_its_last_post_is_refused(admin: Api) -> None:
    """The mark post admits its key from the process's copy and confirms it in the post's own
    transaction: a key revoked after it posted is refused on its next post, which stores
    nothing; a trader key may not post; a key scoped to accounts may not either."""
    await desk(admin)
    created = await admin.ok("POST", "/v1/api-keys", json={"role": "feeder", "label": "feed"})
    feeder = admin.as_(created["key"])
    await feeder.ok("POST", "/v1/marks", json={"marks": [mark("60000", "venue")]})
    await admin.ok("DELETE", f"/v1/api-keys/{created['key_id']}")
    refused = await feeder.post("/v1/marks", json={"marks": [mark("61000", "venue")]})
    assert refused.status_code == 401
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["price"] == "60000"

    trader = await admin.ok("POST", "/v1/api-keys", json={"role": "trader"})
    scoped = await admin.ok("POST", "/v1/api-keys", json={"role": "feeder", "accounts": ["acct-1"]})
    for key in (trader["key"], scoped["key"]):
        answer = await admin.as_(key).post("/v1/marks", json={"marks": [mark("62000", "venue")]})
        assert answer.status_code == 403


async def test_latest_funding_rate_is_reported(admin: Api) -> None:
    await desk(admin)
    await admin.ok(
        "POST",
        "/v1/marks",
        json={
            "marks": [
                mark("100", "a", 2, funding_rate="0.0001"),
                mark("100", "b", 1, funding_rate="-0.0002"),
            ]
        },
    )
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["funding_rate"] == "-0.0002"


async def test_marks_survive_an_emptied_cache(admin: Api, settings: Settings) -> None:
    await desk(admin)
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("100", "a"), mark("102", "b")]})
    await flush_redis(settings)  # what a Redis restart without persistence looks like
    body = await admin.ok("GET", "/v1/marks/BTC-PERP")
    assert (body["price"], body["status"]) == ("101", "fresh")
    # The next post refills the cache with every source, not only the one that posted.
    await admin.ok("POST", "/v1/marks", json={"marks": [mark("104", "a")]})
    assert (await admin.ok("GET", "/v1/marks/BTC-PERP"))["price"] == "103"


async def test_books_round_trip_with_status(admin: Api) -> None:
    await desk(admin)
    book = {"bids": [["99.5", "1"], ["99", "2"]], "asks": [["100.5", "1.5"]], "ts": ago(0)}
    await admin.ok("PUT", "/v1/books/BTC-PERP", json=book)
    body = await admin.ok("GET", "/v1/books/BTC-PERP")
    assert body["bids"] == [["99.5", "1"], ["99", "2"]]
    assert body["asks"] == [["100.5", "1.5"]]
    assert body["status"] == "fresh"
    # A late book (an older ts) replaces nothing, in PostgreSQL or in the cache: the answer to
    # it, and every read after it, is the newer book. (The cache used to take the late one.)
    late = {"bids": [["98", "7"]], "asks": [["101", "7"]], "ts": ago(10)}
    answer = await admin.ok("PUT", "/v1/books/BTC-PERP", json=late)
    assert answer["bids"] == [["99.5", "1"], ["99", "2"]] and answer["status"] == "fresh"
    assert (await admin.ok("GET", "/v1/books/BTC-PERP"))["bids"] == [["99.5", "1"], ["99", "2"]]


async def test_a_book_of_an_unknown_instrument_is_refused_and_writes_nothing(admin: Api) -> None:
    await desk(admin)
    before = (await admin.ok("GET", "/v1/audit", params={"limit": 1000}))["entries"]
    book = {"bids": [["99", "1"]], "asks": [["100", "1"]], "ts": ago(0)}
    response = await admin.request("PUT", "/v1/books/NOPE-PERP", json=book)
    assert response.status_code == 404 and "NOPE-PERP" in response.json()["detail"]
    assert (await admin.ok("GET", "/v1/audit", params={"limit": 1000}))["entries"] == before
    answer = await admin.ok("PUT", "/v1/books/BTC-PERP", json=book)
    assert answer["status"] == "fresh" and answer["asks"] == [["100", "1"]]
    entries = (await admin.ok("GET", "/v1/audit", params={"limit": 1000}))["entries"]
    assert [e["kind"] for e in entries if e not in before] == ["book"]


def test_a_source_half_a_millisecond_past_stale_after_is_stale() -> None:
    """Freshness is judged to the microsecond: a whole-millisecond age (3,000 for 3,000.5 ms)
    passed a value past its limit, and an adding check on it was accepted."""
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
    limit = Decimal(3)
    at_limit = SourceMark("venue", Decimal(60000), now - timedelta(seconds=3), None)
    past_it = SourceMark("venue", Decimal(60000), now - timedelta(microseconds=3_000_500), None)
    assert (
        judge("BTC-PERP", Sources.of([at_limit]), None, now, limit, Decimal("0.05")).status
        == "fresh"
    )
    assert (
        judge("BTC-PERP", Sources.of([past_it]), None, now, limit, Decimal("0.05")).status
        == "stale"
    )


@examples(max_examples=400, deadline=None)
@given(
    price=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**7), places=4),
    limit=st.sampled_from([Decimal("0.05"), Decimal("0.01"), Decimal("0.2")]),
    side=st.sampled_from([-1, 1]),
    nudge=st.integers(min_value=-3, max_value=3),
)
def test_deviation_is_judged_as_the_exact_rule_says_even_at_the_limit(
    price: Decimal, limit: Decimal, side: int, nudge: int
) -> None:
    """The float shortcut of the deviation test never decides differently from the decimal
    rule: a TWAP placed exactly at the limit's edge, or a few ulps either side of it."""
    edge = float(price / (1 + side * limit))
    recorded = math.nextafter(edge, math.inf if nudge > 0 else -math.inf) if nudge else edge
    for _ in range(abs(nudge) - 1):
        recorded = math.nextafter(recorded, math.inf if nudge > 0 else -math.inf)
    average = Decimal(repr(recorded)).quantize(TWAP_QUANTUM)
    exact = "deviating" if average > 0 and abs(price - average) / average > limit else "fresh"
    assert deviation_status(price, recorded, limit) == exact


@examples(max_examples=400, deadline=None)
@given(
    price=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**7), places=4),
    offset=st.floats(min_value=-0.5, max_value=0.5),
)
def test_deviation_far_from_the_limit_is_judged_as_the_exact_rule_says(
    price: Decimal, offset: float
) -> None:
    recorded = float(price) * (1 + offset)
    limit = Decimal("0.05")
    average = Decimal(repr(recorded)).quantize(TWAP_QUANTUM)
    exact = "deviating" if average > 0 and abs(price - average) / average > limit else "fresh"
    assert deviation_status(price, recorded, limit) == exact


# --- verdicts kept between checks (marks.verdict) ----------------------------------------------

_T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
_T0_US = microseconds(_T0)
_WINDOW_MS = 300_000.0


def _sources(*seconds_ago: float, price: str = "60000") -> Sources:
    return Sources.of(
        [
            SourceMark(f"s{i}", Decimal(price), _T0 - timedelta(seconds=s), None)
            for i, s in enumerate(seconds_ago)
        ]
    )


def test_a_fresh_verdict_holds_until_its_oldest_source_goes_stale_and_not_a_microsecond_more() -> (
    None
):
    sources = _sources(1, 2)  # stale_after 5 s: the older goes stale 3 s from now
    twap = TwapState(_T0_US / 1000 - 2000, 60000.0, 59000.0, 60_000)
    judged, until = verdict(sources, twap, _WINDOW_MS, _T0_US, Decimal(5), Decimal("0.05"))
    assert judged.status == "fresh" and until == _T0_US + 3_000_000
    assert judged.age_ms(_T0_US + 250) == 1000  # the newest source's age, at the check's time
    later, _ = verdict(sources, twap, _WINDOW_MS, until + 1, Decimal(5), Decimal("0.05"))
    assert later.status == "fresh"  # the newer source alone is fresh: the median of it
    all_stale, forever = verdict(
        sources, twap, _WINDOW_MS, _T0_US + 4_000_001, Decimal(5), Decimal("0.05")
    )
    assert all_stale.status == "stale" and forever == NEVER_US


def test_a_deviating_verdict_and_one_off_the_twaps_last_point_hold_for_their_instant_only() -> None:
    twap = TwapState(_T0_US / 1000, 50000.0, 50000.0, 60_000)
    jumped = _sources(0, price="60000")  # 20 % from a TWAP of 50,000
    judged, until = verdict(jumped, twap, _WINDOW_MS, _T0_US, Decimal(5), Decimal("0.05"))
    assert judged.status == "deviating" and until == _T0_US
    # Fresh, but its price is not the point the TWAP moves toward: it may drift away from it.
    off = TwapState(_T0_US / 1000, 60100.0, 60000.0, 60_000)
    judged, until = verdict(_sources(0), off, _WINDOW_MS, _T0_US, Decimal(5), Decimal("0.05"))
    assert judged.status == "fresh" and until == _T0_US


@examples(max_examples=300, deadline=None)
@given(
    last=st.floats(min_value=1, max_value=1e6),
    average_ratio=st.floats(min_value=0.5, max_value=1.5),
    span_ms=st.floats(min_value=0, max_value=_WINDOW_MS),
    elapsed_ms=st.integers(min_value=0, max_value=4_000),
    later_ms=st.integers(min_value=0, max_value=1_000),
)
def test_a_kept_fresh_verdict_is_what_judging_again_would_say(
    last: float, average_ratio: float, span_ms: float, elapsed_ms: int, later_ms: int
) -> None:
    """The reason a verdict is kept: while the sources stay fresh, the TWAP only moves toward
    its last point, so a mark at that point judged fresh is fresh at every later instant."""
    price = Decimal(repr(last))
    sources = Sources.of([SourceMark("venue", price, _T0, None)])
    twap = TwapState(_T0_US / 1000, float(price), last * average_ratio, span_ms)
    now_us = _T0_US + elapsed_ms * 1000
    judged, until = verdict(sources, twap, _WINDOW_MS, now_us, Decimal(5), Decimal("0.05"))
    again_at = min(until, now_us + later_ms * 1000)
    again, _ = verdict(sources, twap, _WINDOW_MS, again_at, Decimal(5), Decimal("0.05"))
    if until > now_us:
        assert judged.status == "fresh" and again.status == "fresh"
