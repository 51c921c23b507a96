"""Regenerate the README's example messages and docs/email.png.

    PYTHONPATH=. python3 docs/make_examples.py

Runs two real cycles (`run_cycle`, the daemon's wiring) against the bundled simulator, with
json:// sinks that ask for Markdown and HTML, then renders the HTML in headless Chromium.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import re
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from late_monitor.config import load_settings
from late_monitor.cycle import run_cycle
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.store import Store
from late_monitor.wiring import client_from, deps_from
from tests.support.sink import Sink

HERE = Path(__file__).parent


async def main() -> None:
    sim = Simulator(make_accounts(12))
    await sim.start()
    sink = Sink()
    await sink.start()
    tmp = Path(tempfile.mkdtemp())
    config = tmp / "late-monitor.toml"
    config.write_text(
        f"""[late]
base_url = "{sim.base_url}"
api_key = "{DEFAULT_KEY}"
[monitor]
detail_every = "0"
[state]
path = "{tmp / "state.db"}"
[notify]
urls = ["json://127.0.0.1:{sink.port}/markdown?format=markdown",
        "json://127.0.0.1:{sink.port}/html?format=html"]
[http]
public_url = "https://monitor.example.com"
"""
    )
    loaded = load_settings(str(config), environ={})
    store = Store.open(tmp / "state.db")
    async with client_from(loaded) as client:
        deps = deps_from(loaded, client=client, store=store)
        await deps.notifier.load()
        # the Markdown sink stands in for Slack (no real Slack from here): Slack's escaping
        for key, destination in list(deps.notifier._destinations.items()):
            if "/markdown" in destination.label:
                deps.notifier._destinations[key] = replace(destination, style="slack")
        await run_cycle(deps)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        sim.set("acc_00001", display_name="Acme <b>Shop</b> @everyone", username="")
        sim.break_account("acc_00001", "Instagram access token expired")
        sim.set("acc_00001", recommendations=["Reconnect the account in Late"])
        for hours in (2.25, 9, 30, 51):
            sim.add_post("acc_00001", now + timedelta(hours=hours))
        sim.set("acc_00009", status="warning", issues=["Session expires soon"])  # bluesky
        sim.add_post("acc_00009", now + timedelta(minutes=50))
        await run_cycle(deps)
    store.close()
    by_kind = {m["path"].strip("/"): m for m in sink.received}
    markdown, html = by_kind["markdown"], by_kind["html"]
    for message in (markdown, html):  # the simulator's address, shown as Late's
        message["message"] = re.sub(
            r"http://127\.0\.0\.1:\d+", "https://zernio.com", message["message"]
        )
    import apprise

    from late_monitor import plugins

    plugins.prepare(["slack://T1234567/B7654321/XXXXYYYYZZZZ"])
    slack = apprise.Apprise()
    slack.add("slack://T1234567/B7654321/XXXXYYYYZZZZ")
    mrkdwn = slack[0].dialect_convert(markdown["message"], apprise.NotifyFormat.MARKDOWN)
    (HERE / "slack-message.md").write_text(
        f"title: {markdown['title']}\n\n{markdown['message']}\n\n--- as Slack mrkdwn:\n\n{mrkdwn}\n"
    )
    page = (
        "<!doctype html><meta charset=utf-8><body style='font-family:sans-serif;max-width:760px;"
        "margin:16px'><div style='border-bottom:1px solid #ccc;padding-bottom:8px;color:#444'>"
        f"<b>Subject:</b> {html['title']}<br><b>From:</b> late-monitor</div>"
        f"{html['message']}</body>"
    )
    (HERE / "email.html").write_text(page)
    subprocess.run(
        [
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=800,420",
            f"--screenshot={HERE / 'email.png'}",
            (HERE / "email.html").as_uri(),
        ],
        check=True,
        capture_output=True,
    )
    await sink.stop()
    await sim.stop()
    print(HERE / "slack-message.md", HERE / "email.png", file=sys.stderr)


asyncio.run(main())
