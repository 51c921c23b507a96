"""`late-monitor demo`: the real daemon against the bundled simulator, playing a short story.

Nothing is faked on the monitor's side: the config is a real TOML file, the cycles are the
daemon's, and every notification goes through Apprise to the `console://` destination.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from late_monitor.config import load_settings
from late_monitor.daemon import Daemon
from late_monitor.notify import CONSOLE_URL
from late_monitor.simulator.app import Fault, SimAccount, Simulator
from late_monitor.simulator.scenario import Change, Scenario
from late_monitor.store import Store
from late_monitor.web import WEBHOOK_PATH
from late_monitor.webhook_commands import subscribe
from late_monitor.wiring import setup_logging

_ACCOUNTS = [
    ("acc_tw_acme", "twitter", "@acme"),
    ("acc_ig_acme", "instagram", "acme.shop"),
    ("acc_li_acme", "linkedin", "acme-corp"),
    ("acc_fb_acme", "facebook", "AcmeOfficial"),
    ("acc_tt_acme", "tiktok", "@acme"),
    ("acc_yt_acme", "youtube", "AcmeTV"),
    ("acc_th_acme", "threads", "@acme"),
    ("acc_bs_acme", "bluesky", "acme.bsky.social"),
    ("acc_tw_bolt", "twitter", "@boltcoffee"),
    ("acc_ig_bolt", "instagram", "boltcoffee"),
    ("acc_pi_bolt", "pinterest", "boltcoffee"),
    ("acc_gb_bolt", "googlebusiness", "Bolt Coffee Soho"),
]


def story() -> Scenario:
    """A dozen accounts; a token expires, a warning, an expiring token, API trouble, recovery."""
    now = datetime.now(UTC).replace(microsecond=0)
    accounts = [
        SimAccount(
            account_id=i,
            platform=p,
            username=u,
            profile_id="prof_acme" if "acme" in i else "prof_bolt",
            token_expires_at=now + timedelta(days=60),
        )
        for i, p, u in _ACCOUNTS
    ]
    changes = [
        Change(at=0, label="12 healthy accounts; the first poll records them silently"),
        Change(
            at=4,
            account="acc_tw_acme",
            label="Twitter @acme: the token expires (Late also announces it by webhook)",
            fields={
                "status": "error",
                "needs_reconnect": True,
                "can_post": False,
                "token_valid": False,
                "issues": ["Token expired"],
            },
        ),
        Change(
            at=8,
            account="acc_ig_acme",
            label="Instagram acme.shop drops to warning",
            fields={
                "status": "warning",
                "issues": ["Instagram limited API access for this account"],
            },
        ),
        Change(
            at=12,
            account="acc_li_acme",
            label="LinkedIn acme-corp: token now expires within 7 days",
            fields={"token_expires_in": 6 * 86400.0 + 3600},
        ),
        Change(
            at=15,
            label="the Late API answers 500 for a while",
            fault=Fault(status=500, count=12, path="/accounts/health"),
        ),
        Change(
            at=23,
            label="... then 429 with Retry-After (the client waits it out: nothing to report)",
            fault=Fault(
                status=429,
                body='{"error": "Rate limit exceeded"}',
                headers={"Retry-After": "1"},
                count=2,
                path="/accounts/health",
            ),
        ),
        Change(
            at=26,
            account="acc_tw_acme",
            label="everything recovers",
            fields={
                "status": "healthy",
                "needs_reconnect": False,
                "can_post": True,
                "token_valid": True,
                "issues": [],
            },
        ),
        Change(at=26, account="acc_ig_acme", fields={"status": "healthy", "issues": []}),
        Change(at=26, account="acc_li_acme", fields={"token_expires_in": 60 * 86400.0}),
        Change(at=31, label="end of the story"),
    ]
    return Scenario(accounts=accounts, changes=changes)


def _config(
    directory: Path, base_url: str, api_key: str, extra_urls: list[str], *, listen: str
) -> Path:
    urls = ", ".join(f'"{url}"' for url in [CONSOLE_URL, *extra_urls])
    path = directory / "demo.toml"
    path.write_text(
        f"""[http]
listen = "{listen}"
[webhooks]
secret = "{secrets.token_hex(32)}"
[late]
base_url = "{base_url}"
api_key = "{api_key}"
timeout = "5s"
max_requests_per_minute = 600
[monitor]
interval = "1s"
detail = "changed"
detail_every = "0"
api_failure_after = 3
[state]
path = "{directory / "state.db"}"
[notify]
urls = [{urls}]
[log]
level = "error"
format = "console"
"""
    )
    return path


async def _play(notify: list[str]) -> int:
    scenario = story()
    sim = scenario.simulator()
    base_url = await sim.start()
    started = time.monotonic()
    changed_at: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="late-monitor-demo-") as tmp:
        listen = f"127.0.0.1:{_free_port()}"
        config = _config(Path(tmp), base_url, sim.api_key, notify, listen=listen)
        loaded = load_settings(str(config), environ={})
        setup_logging(loaded, stream=sys.stderr)
        print(
            f"late-monitor demo: the real monitor against the bundled Late simulator at "
            f"{base_url}, polling every second and taking Late's webhooks at "
            f"http://{listen}{WEBHOOK_PATH}; notifications are printed as they arrive.",
            flush=True,
        )
        await subscribe(loaded, url=f"http://{listen}{WEBHOOK_PATH}")  # as `webhooks setup`
        daemon = Daemon(loaded, config_arg=str(config), environ={})
        running = asyncio.create_task(daemon.run())

        def progress(change: Change) -> None:
            changed_at.setdefault(change.account, time.time())
            if change.label:
                print(f"\n--- [{time.monotonic() - started:4.1f}s] {change.label}", flush=True)

        try:
            await scenario.play(sim, on_change=progress)
            await asyncio.sleep(2.0)  # the last change's poll and message
        finally:
            daemon.request_stop()
            await running
            await sim.stop()
        summary = _summary(Path(tmp) / "state.db", sim, changed_at.get("acc_tw_acme"))
    print(summary, flush=True)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _summary(state: Path, sim: Simulator, webhook_change: float | None) -> str:
    store = Store.open(state, create=False)
    try:
        cycles = store.recent_cycles(10_000)
        rows = store.outbox_rows(states=("pending", "delivered", "dropped"))
    finally:
        store.close()
    polls = [c for c in cycles if c["outcome"] in ("ok", "api_failed", "auth_failed")]
    outcomes = Counter(c["outcome"] for c in polls)
    types = Counter(r["notify_type"] for r in rows)
    told = min(
        (c for c in cycles if c["messages"] and c["outcome"] in ("webhook", "ok")),
        key=lambda c: c["finished_at"],
        default=None,
    )
    if told is not None and told["outcome"] == "webhook" and webhook_change is not None:
        path = (
            f"Twitter @acme's news came through Late's webhook, told "
            f"{told['finished_at'] - webhook_change:.2f} s after the change; the polls that "
            "saw the same afterwards said nothing more."
        )
    else:
        path = "Twitter @acme's news came through a poll; the webhook after it was known news."
    return (
        f"\n=== demo finished: {len(polls)} polls ({outcomes['ok']} ok, "
        f"{len(polls) - outcomes['ok']} failed), {sim.count()} API requests, "
        f"{len(rows)} messages ({', '.join(f'{n} {t}' for t, n in sorted(types.items()))}).\n"
        f"{path}\n"
        "Next: `late-monitor simulate` to point your own config at the simulator, or set\n"
        "LATE_API_KEY and notify.urls (see config.example.toml) and run `late-monitor run --once`."
    )


def run_demo(*, notify: list[str]) -> int:
    return asyncio.run(_play(notify))
