"""The status page in headless Chromium (Debian's, driven by Playwright) against a real daemon."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from late_monitor.simulator import Simulator
from tests.support.process import daemon, free_port
from tests.support.sink import Sink

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "page-admin-t0ken-1234"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


def _about(sink: Sink, account_id: str) -> int:
    return sum(1 for m in sink.received if account_id in m["message"])


async def test_the_page_shows_a_failing_account_and_its_silence_form_stops_the_reminders(
    sim: Simulator,
    sink: Sink,
    browser: object,
    daemon_config: Callable[..., Path],
    base_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim.break_account("acc_00001", issue="Token expired")
    sim.set("acc_00003", status="warning", issues=["Rate limited by the platform"])
    config = daemon_config(
        monitor={"detail": "never", "remind_every": "2s"},
        http={"listen": f"127.0.0.1:{port}", "admin_token": TOKEN},
    )
    async with daemon(config, base_env, tmp_path) as running:
        await running.until(lambda: _about(sink, "acc_00001") >= 2, limit=20)  # alert + reminder

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(base + "/")
        row = page.locator('tr[data-account="acc_00001"]')
        await expect(row).to_be_visible()
        await expect(row).to_contain_text("error")
        await expect(row).to_contain_text("needs reconnect")
        await expect(page.locator("#group-error")).to_have_text("Error (1)")

        # a wrong token is refused, and gives no session
        await page.fill('input[name="token"]', "not-the-token")
        async with page.expect_response(base + "/login") as refused:
            await page.click("text=Log in")
        assert (await refused.value).status == 403
        await expect(page.locator("body")).to_contain_text("wrong admin token")
        assert await page.context.cookies() == []
        await expect(page.locator('button[name="silence"]')).to_have_count(0)

        await page.goto(base + "/")
        await page.fill('input[name="token"]', TOKEN)
        await page.click("text=Log in")
        await expect(page.locator("[role=status]")).to_have_text("logged in")
        await page.fill('[aria-label="silence reason for acc_00001"]', "client re-links Monday")
        await row.locator('button[name="silence"]').click()
        await expect(page.locator("[role=status]")).to_contain_text("silence #1 added")
        await expect(row).to_contain_text("silenced #1")

        told = _about(sink, "acc_00001")
        silenced_before = running.count("event_silenced")
        await running.until(lambda: running.count("event_silenced") >= silenced_before + 2)
        assert _about(sink, "acc_00001") == told  # reminders recorded, none sent

        if shot := os.environ.get("LATE_MONITOR_SCREENSHOT"):
            await page.goto(base + "/")
            await page.screenshot(path=shot, full_page=True)
        await page.close()
