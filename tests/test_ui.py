"""The risk page (``/ui``) in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright against a real server process, with the data set up through the API.

By hand (BTC-PERP: IM 10 %, MM 5 %, taker fee 0.0005; no book, so a limit order fills at its
limit price):

- long 1 at 60,000 with 4,000 deposited: MM 3,000, ratio 0.75, under the 0.8 warning level;
  the mark to 59,000: equity 3,000, MM 2,950, ratio 0.983 — a warning margin call.
- buy 1 at 60,000 with 1,000 deposited: IM 6,000 + fee 30 against equity 1,000 — rejected for
  INSUFFICIENT_MARGIN.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.factories import deposit, desk, fill, marks
from tests.servers import ADMIN_KEY, ServerProcess, server_env, serving

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM) and os.environ.get("CI") == "true":
    pytest.fail(f"{CHROMIUM} is absent: .ci/run installs Debian's chromium before the tests")
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium) to run "
        "the risk page's browser tests (CI does)",
        allow_module_level=True,
    )

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

TIMEOUT_MS = 10_000
"""How long an expectation waits for the page (it polls every 2 s)."""
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def server(postgres_url: str, redis_url: str) -> Iterator[ServerProcess]:
    with serving(server_env(postgres_url, redis_url)) as process:
        yield process


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def api(clean: None, server: ServerProcess) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield Api(client, ADMIN_KEY)


@pytest.fixture
async def page(browser: Browser, server: ServerProcess) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1400, "height": 1000}
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    try:
        yield page
    finally:
        await context.close()
    # A script error or a Content-Security-Policy violation is a failure of the page; the
    # browser's own line for an answer a test provokes (401, 503) is not.
    expected = ("status of 401 (Unauthorized)", "status of 503 (Service Unavailable)")
    assert not [e for e in errors if not e.endswith(expected)], errors


async def use_key(page: Page, key: str) -> None:
    await page.fill("#key", key)
    await page.click("#key-form button[type=submit]")


async def open_page(page: Page, key: str = ADMIN_KEY) -> None:
    await page.goto("/ui")
    await use_key(page, key)
    await expect(page.locator("#status")).to_have_text("live")


async def position(api: Api, subaccount_id: str, fill_id: str) -> None:
    """Long 1 BTC-PERP at 60,000."""
    body = {"fills": [fill(fill_id, "buy", "1", "60000", subaccount_id=subaccount_id)]}
    await api.ok("POST", "/v1/fills", json=body)


async def test_the_page_loads_with_a_key(api: Api, page: Page) -> None:
    await desk(api)
    await deposit(api, "sub-cross", "10000")
    await marks(api, {"BTC-PERP": "60000"})

    await page.goto("/")
    assert page.url.endswith("/ui"), page.url
    await expect(page.locator("#status")).to_have_text("no key")

    await use_key(page, "pf_not_a_key")
    await expect(page.locator("#status")).to_have_text("key refused (401)")

    await use_key(page, ADMIN_KEY)
    await expect(page.locator("#status")).to_have_text("live")
    await expect(page.locator("#refreshed")).to_contain_text("last refreshed")
    rows = page.locator("#overview tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator('#overview tr[data-subaccount="sub-cross"] td').nth(3)).to_have_text(
        "10,000.00"
    )
    await expect(page.locator('#marks tr[data-symbol="BTC-PERP"]')).to_have_attribute(
        "data-status", "fresh"
    )
    await expect(page.locator("#audit")).to_have_attribute("data-ok", "true")
    await expect(page.locator("#calls-panel .empty")).to_be_visible()
    # The key lives in this tab's session only, never in the page's markup or local storage.
    stored = await page.evaluate("[sessionStorage.getItem('preflight.key'), localStorage.length]")
    assert stored == [ADMIN_KEY, 0]
    assert ADMIN_KEY not in await page.content()


async def test_an_unavailable_service_shows_and_the_page_retries(api: Api, page: Page) -> None:
    await desk(api)
    await open_page(page)
    unavailable = {"type": "about:blank", "title": "Service unavailable", "status": 503,
                   "code": "UNAVAILABLE", "detail": "the database is unavailable"}  # fmt: skip
    await page.route(
        "**/v1/risk/overview*",
        lambda route: route.fulfill(
            status=503,
            json=unavailable,
            headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
        ),
    )
    await expect(page.locator("#status")).to_have_text("service unavailable, retrying")
    await page.unroute("**/v1/risk/overview*")
    await expect(page.locator("#status")).to_have_text("live")


async def test_the_most_at_risk_subaccount_is_first(api: Api, page: Page) -> None:
    """other-sub: long 1 with 3,500 (ratio 3,000 / 3,500 = 0.857, past the warning level);
    sub-cross: long 1 with 10,000 (0.3); sub-portfolio: cash only (no requirement)."""
    await desk(api, modes=("cross", "portfolio"))
    await deposit(api, "sub-cross", "10000")
    await deposit(api, "other-sub", "3500")
    await deposit(api, "sub-portfolio", "500")
    await position(api, "sub-cross", "f-cross")
    await position(api, "other-sub", "f-other")
    await marks(api, {"BTC-PERP": "60000"})

    await open_page(page)
    rows = page.locator("#overview tbody tr")
    await expect(rows).to_have_count(3)
    order = [await row.get_attribute("data-subaccount") for row in await rows.all()]
    overview = await api.ok("GET", "/v1/risk/overview")
    assert order == [row["subaccount_id"] for row in overview["subaccounts"]]
    assert order[:2] == ["other-sub", "sub-cross"]
    levels = [await row.get_attribute("data-level") for row in await rows.all()]
    assert levels[:2] == ["warning", "ok"]
    await expect(rows.first.locator(".bar .label")).to_have_text("85.7 %")
    await expect(rows.first.locator(".bar .fill")).to_have_class("fill level-warning")


async def test_a_mark_move_raises_a_margin_call_on_the_page(api: Api, page: Page) -> None:
    await desk(api)
    await deposit(api, "sub-cross", "4000")
    await position(api, "sub-cross", "f-1")
    await marks(api, {"BTC-PERP": "60000"})

    await open_page(page)
    await expect(page.locator('#overview tr[data-subaccount="sub-cross"]')).to_have_attribute(
        "data-level", "ok"
    )
    await expect(page.locator("#calls-panel .empty")).to_be_visible()

    await marks(api, {"BTC-PERP": "59000"})
    call = page.locator('#margin-calls tr[data-subaccount="sub-cross"]')
    await expect(call).to_have_count(1)
    await expect(call).to_have_attribute("data-level", "warning")
    await expect(call.locator("td").nth(3)).to_have_text("98.3 %")
    await expect(page.locator('#overview tr[data-subaccount="sub-cross"]')).to_have_attribute(
        "data-level", "warning"
    )

    call_id = await call.get_attribute("data-call-id")
    await call.locator("button.ack").click()
    await expect(call).to_have_count(0)
    acknowledged = await api.ok("GET", "/v1/margin-calls?status=acknowledged")
    assert [c["id"] for c in acknowledged["margin_calls"]] == [call_id]


async def test_a_what_if_check_shows_a_reject_with_its_reasons(api: Api, page: Page) -> None:
    await desk(api)
    await deposit(api, "sub-cross", "1000")
    await marks(api, {"BTC-PERP": "60000"})
    order: dict[str, Any] = {"instrument": "BTC-PERP", "side": "buy", "type": "limit",
                             "limit_price": "60000"}  # fmt: skip

    await open_page(page)
    form = page.locator("#whatif-form")
    await expect(form.locator("select[name=subaccount_id] option")).to_have_count(2)
    await expect(form.locator("select[name=instrument] option")).to_have_count(2)
    await form.locator("select[name=subaccount_id]").select_option("sub-cross")
    await form.locator("select[name=instrument]").select_option("BTC-PERP")
    await form.locator("select[name=type]").select_option("limit")
    await form.locator("input[name=size]").fill("1")
    await form.locator("input[name=limit_price]").fill("60000")
    await form.locator("button[value=check]").click()

    result = page.locator("#whatif-result")
    await expect(result.locator(".decision")).to_have_attribute("data-decision", "reject")
    # The same check through the API: the page shows every reason with the numbers it gives.
    check = await api.ok(
        "POST",
        "/v1/pretrade/check",
        json={"subaccount_id": "sub-cross", "orders": [{**order, "size": "1"}]},
    )
    assert check["decision"] == "reject"
    shown = result.locator(".reasons li")
    await expect(shown).to_have_count(len(check["reasons"]))
    for reason in check["reasons"]:
        item = result.locator(f'.reasons li[data-code="{reason["code"]}"]')
        await expect(item).to_contain_text(reason["message"])
        for name in ("value", "limit", "shortfall"):
            if reason[name] is not None:
                number = item.locator(f'.numbers[data-field="{name}"]')
                await expect(number).to_have_attribute("data-value", str(reason[name]))
    margin = result.locator('.reasons li[data-code="INSUFFICIENT_MARGIN"]')
    await expect(margin.locator('.numbers[data-field="shortfall"]')).to_have_count(1)
    for field in ("equity", "initial_margin", "free_collateral"):
        row = result.locator(f'.before-after tr[data-field="{field}"] td')
        await expect(row.nth(1)).to_have_attribute("data-value", check["before"][field])
        await expect(row.nth(3)).to_have_attribute("data-value", check["after"][field])
    await expect(result.locator(".executions tbody tr td").nth(5)).to_have_text(
        "30"
    )  # fee 0.0005 · 60,000

    await form.locator("button[value=max-size]").click()
    largest = await api.ok(
        "POST", "/v1/pretrade/max-size", json={"subaccount_id": "sub-cross", **order}
    )
    await expect(result.locator(".decision")).to_have_attribute("data-max-size", largest["size"])
    await expect(result.locator(".reasons li")).to_have_count(len(largest["reasons"]))
