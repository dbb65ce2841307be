"""Take docs/risk-page.png: the risk page in headless Chromium against the demo desk.

    .venv/bin/python docs/screenshots.py [--history-s 60]

Starts ``preflight serve --demo`` on a throwaway SQLite database and a free port, adds one
subaccount near the margin-call warning level (so the page has a call to show; the demo feed
moves its ratio), lets the page poll for ``--history-s`` seconds so the chart has a history,
runs a what-if check that is rejected, and saves the whole page. Needs Debian's chromium at
/usr/bin/chromium and the ``playwright`` package (the dev extra); downloads no browser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "risk-page.png"
CHROMIUM = "/usr/bin/chromium"
KEY = "pf_demo_screenshot_key_0123456789"

# Long 6 BTC-PERP near 97,000 (MM 1.25 % of ~582,000 ≈ 7,275) on 8,500 of USDC: a ratio
# of about 0.86, past the demo's 0.8 warning level.
NEAR_CALL = {
    "balances": {"USDC": "8500"},
    "positions": [{"instrument": "BTC-PERP", "size": "6", "entry_price": "97000"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo(database: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFLIGHT_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PREFLIGHT_ADMIN_KEY": KEY,
        "PREFLIGHT_LOG_LEVEL": "WARNING",
    }
    preflight = Path(sys.executable).with_name("preflight")
    argv = [str(preflight), "serve", "--demo", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                sys.exit(f"the demo server exited with {server.returncode}")
            try:
                if client.get("/healthz").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    server.terminate()
    sys.exit("the demo server did not come up within 60 s")


def add_risky_subaccount(base: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        sub = {"subaccount_id": "fund-a.momentum", "account_id": "fund-a", "margin_mode": "cross"}
        client.post("/v1/subaccounts", json=sub).raise_for_status()
        client.put("/v1/subaccounts/fund-a.momentum/snapshot", json=NEAR_CALL).raise_for_status()


async def shoot(base: str, history_s: float) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(f"{base}/ui")
        await page.fill("#key", KEY)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#status")).to_have_text("live", timeout=15_000)
        await expect(page.locator("#margin-calls tbody tr").first).to_be_visible(timeout=15_000)
        await page.wait_for_timeout(history_s * 1000)
        form = page.locator("#whatif-form")
        await form.locator("select[name=subaccount_id]").select_option("fund-a.momentum")
        await form.locator("select[name=instrument]").select_option("BTC-PERP")
        await form.locator("input[name=size]").fill("2")
        await form.locator("button[value=check]").click()
        await expect(page.locator("#whatif-result .decision")).to_be_visible(timeout=15_000)
        await page.screenshot(path=str(OUTPUT), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history-s", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preflight-screenshots-") as tmp:
        port = free_port()
        server = start_demo(Path(tmp) / "demo.db", port)
        try:
            base = f"http://127.0.0.1:{port}"
            add_risky_subaccount(base)
            asyncio.run(shoot(base, args.history_s))
        finally:
            server.terminate()
            server.wait(15)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
