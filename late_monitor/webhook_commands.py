"""`late-monitor webhooks setup` and `webhooks status`: our webhook as Late keeps it."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig, insecure_base_url, mask_url
from late_monitor.errors import ConfigError, StateError
from late_monitor.intake import WATCH_KEY
from late_monitor.web import WEBHOOK_PATH
from late_monitor.webhooks import SUBSCRIBED, LateWebhook
from late_monitor.wiring import client_from


def setup_webhook(loaded: LoadedConfig, *, url: str, out: TextIO = sys.stdout) -> int:
    """Create or update (matched by `webhooks.name`) the webhook Late sends our events to,
    with our secret: running it twice changes nothing the second time."""
    loaded.require_api_key()
    if loaded.webhook_secret is None:
        raise ConfigError(
            f"{loaded.path or 'configuration'}: webhooks.secret: not set; set it (or "
            "webhooks.secret_file, LATE_MONITOR_WEBHOOKS__SECRET or the credential "
            "late-webhook-secret) first: Late signs with it and the daemon checks with it"
        )
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"--url: {mask_url(url)!r} is not an http(s) URL with a valid host")
    if "@" in parts.netloc:
        raise ConfigError(
            "--url: holds credentials (user:password@); Late would store and show them, and "
            "the signature already proves who sends"
        )
    if not parts.path.endswith(WEBHOOK_PATH):
        out.write(f"note: the daemon takes webhooks at {WEBHOOK_PATH}; {url} ends otherwise\n")
    if insecure_base_url(url):
        out.write("note: plain http:// to another host: put the endpoint behind TLS\n")
    action, hook = asyncio.run(subscribe(loaded, url=url))
    out.write(
        f"{action} webhook {hook.name!r} ({hook.id}): {hook.url}\n"
        f"events: {', '.join(hook.events)}; active: {'yes' if hook.is_active else 'no'}\n"
    )
    return 0


async def subscribe(loaded: LoadedConfig, *, url: str) -> tuple[str, LateWebhook]:
    """Create Late's webhook for our events with our secret, or update the one named
    `webhooks.name`: "created" or "updated", and the webhook as Late now holds it."""
    secret = loaded.webhook_secret
    assert secret is not None  # the caller has said so in a line of its own
    name = loaded.settings.webhooks.name
    async with client_from(loaded) as client:
        existing = next((h for h in await client.webhooks() if h.name == name), None)
        settings: dict[str, object] = {
            "name": name,
            "url": url,
            "secret": secret.get_secret_value(),
            "events": list(SUBSCRIBED),
            "isActive": True,
        }
        if existing is not None:
            settings["_id"] = existing.id
        return ("updated" if existing else "created"), await client.save_webhook(settings)


def webhook_status(loaded: LoadedConfig, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Late's view of our webhook, and the last deliveries the state file has received."""
    loaded.require_api_key()
    name = loaded.settings.webhooks.name

    async def fetch() -> list[LateWebhook]:
        async with client_from(loaded) as client:
            return await client.webhooks()

    hooks = asyncio.run(fetch())
    ours = next((h for h in hooks if h.name == name), None)
    received: list[dict[str, Any]] = []
    watched: Any = None
    try:
        store = open_store(loaded, create=False)
    except StateError:
        store = None
    if store is not None:
        try:
            received = store.recent_webhooks(10)
            watched = store.read_meta(WATCH_KEY)
        finally:
            store.close()
    report = {
        "name": name,
        "late": ours.shown() if ours else None,
        "others": len(hooks) - (ours is not None),
        "secret_configured": loaded.webhook_secret is not None,
        "received": received,
        "last_watch": watched,
    }
    if as_json:
        out.write(json.dumps(report, indent=2) + "\n")
        return 0 if ours is not None else 1
    out.write(_render(report, ours))
    return 0 if ours is not None else 1


def _render(report: dict[str, Any], ours: LateWebhook | None) -> str:
    lines = []
    if ours is None:
        lines.append(
            f"Late has no webhook named {report['name']!r} ({report['others']} others): run "
            "`late-monitor webhooks setup --url https://HOST/webhooks/late`"
        )
    else:
        lines += [
            f"webhook {ours.name!r} ({ours.id}) in Late:",
            f"  url: {ours.url}",
            f"  isActive: {'yes' if ours.is_active else 'NO (Late disabled it: polling only)'}",
            f"  failureCount: {ours.failure_count}"
            + ("  (Late disables a webhook at 10)" if ours.failure_count else ""),
            f"  lastFiredAt: {ours.last_fired_at or '-'}",
            f"  events: {', '.join(ours.events) or '-'}",
        ]
    if not report["secret_configured"]:
        lines.append("webhooks.secret is not set here: the daemon's endpoint is off")
    lines.append("\nlast deliveries received:")
    for row in report["received"]:
        when = datetime.fromtimestamp(row["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"  {when} UTC  {row['event']:<22} {row['outcome'] or 'pending'}  {row['id']}")
    if not report["received"]:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"
