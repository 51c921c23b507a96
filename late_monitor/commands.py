"""The operator commands behind `status`, `test-notify` and `config check` (the CLI parses
their arguments; these do the work)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig, format_duration
from late_monitor.errors import ConfigError
from late_monitor.logs import REDACTOR
from late_monitor.status import status_report
from late_monitor.web import parse_listen
from late_monitor.wiring import check_destinations, notifier_from

_COLOURS = {"healthy": "\033[32m", "warning": "\033[33m", "error": "\033[31m"}
_RESET = "\033[0m"
SECRET_KEYS = {"late.api_key", "notify.urls", "webhooks.secret"}
SECRET_SETTINGS = {"http.admin_token", "heartbeat.url", "heartbeat.fail_url"}


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _muted(account: dict[str, Any]) -> str:
    """Why this account's notices are held back, if they are: silences and an ack."""
    marks = [f"silenced #{i}" for i in account.get("silenced_by", [])]
    return ", ".join(marks + (["acked"] if account.get("acked") else []))


def _control_lines(report: dict[str, Any]) -> list[str]:
    active = [s for s in report.get("silences", []) if s["state"] == "active"]
    lines = [f"\nSilences: {len(active)} active (late-monitor silence list)"] if active else []
    held = report.get("held", [])
    if held:
        lines.append(f"\nHeld by quiet hours: {len(held)} until {_when(held[0]['until'])}")
    return lines


def render_status(report: dict[str, Any], *, colour: bool) -> str:
    """A readable table of accounts, then the outbox and the last cycles."""
    rows = [
        (
            "PLATFORM",
            "USERNAME",
            "STATUS",
            "RECONNECT",
            "SINCE",
            "TOKEN EXPIRES",
            "LAST NOTICE",
            "MUTED",
        )
    ]
    statuses = []
    for a in report["accounts"]:
        rows.append(
            (
                a["platform"],
                a["username"] or a["account_id"],
                a["status"],
                "yes" if a["needs_reconnect"] else "no",
                _when(a["since"]),
                _when(a["token_expires_at"]),
                _when(a["last_notice_at"]),
                _muted(a),
            )
        )
        statuses.append(a["status"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        if colour and index > 0 and (code := _COLOURS.get(statuses[index - 1])):
            cells[2] = f"{code}{cells[2]}{_RESET}"
        lines.append("  ".join(cells).rstrip())
    if not report["accounts"]:
        lines.append("(no accounts recorded yet)")
    api = report["api"]
    if api["consecutive_failures"] or api["auth_alerted"]:
        lines.append(
            f"\nLate API: {api['consecutive_failures']} failed polls in a row; "
            f"last error: {api['last_error']}"
        )
    lines.append(f"\nOutbox: {len(report['outbox'])} pending")
    for row in report["outbox"]:
        lines.append(
            f"  #{row['message_id']} -> {row['destination']}: {row['title']} "
            f"(attempts {row['attempts']}, next {_when(row['next_attempt_at'])}"
            + (f", last error: {row['last_error']}" if row["last_error"] else "")
            + ")"
        )
    lines += _control_lines(report)
    lines.append("\nLast cycles:")
    for cycle in report["cycles"][:5]:
        lines.append(
            f"  {_when(cycle['started_at'])}  {cycle['outcome']:<11} "
            f"{cycle['accounts']} accounts, {cycle['events']} events, "
            f"{cycle['messages']} messages, {cycle['requests']} requests"
            + (f"  ({cycle['error']})" if cycle["error"] else "")
        )
    return "\n".join(lines)


def print_status(
    loaded: LoadedConfig,
    *,
    as_json: bool,
    out: TextIO = sys.stdout,
    workspace: str | None = None,
) -> int:
    """The state file's view: of the one workspace, or with [[workspaces]] of each (JSON:
    `{"workspaces": {name: report}}`), or of the one named with -w."""
    views = [loaded.workspace_named(workspace)] if workspace else list(loaded.workspaces)
    store = open_store(loaded, create=False)
    try:
        reports = {v.workspace: status_report(store.scoped(v.workspace)) for v in views}
    finally:
        store.close()
    if not loaded.named:
        report: dict[str, Any] = reports[loaded.workspace]
    elif workspace:
        report = {"workspace": views[0].workspace, **reports[views[0].workspace]}
    else:
        report = {"workspaces": reports}
    if as_json:
        out.write(REDACTOR.redact(json.dumps(report, indent=2, sort_keys=True)) + "\n")
        return 0
    parts = []
    for name, one in reports.items():
        table = render_status(one, colour=out.isatty())
        parts.append(f"== workspace {name} ==\n{table}" if loaded.named else table)
    out.write(REDACTOR.redact("\n\n".join(parts)) + "\n")
    return 0


def print_reconnect(loaded: LoadedConfig, account_id: str, *, out: TextIO = sys.stdout) -> int:
    """A fresh authUrl for one account, from Late (it expires within minutes)."""
    from late_monitor.errors import LateApiError
    from late_monitor.reconnect import CREDENTIAL_PLATFORMS, dashboard_url
    from late_monitor.wiring import client_from

    store = open_store(loaded, create=False)
    try:
        state = store.scoped(loaded.workspace).load_states().get(account_id)
    finally:
        store.close()
    if state is None:
        raise ConfigError(f"reconnect: no account {account_id!r} in {loaded.state_path}")
    base_url = loaded.settings.late.base_url
    if state.platform in CREDENTIAL_PLATFORMS:
        out.write(
            f"{state.platform} accounts reconnect with credentials or a code, not a link; "
            f"open Late's dashboard:\n{dashboard_url(base_url, state.profile_id)}\n"
        )
        return 0
    if not state.profile_id:
        raise ConfigError(f"reconnect: Late did not say which profile {account_id!r} is in")

    async def fetch() -> str:
        async with client_from(loaded) as client:
            return await client.connect_url(state.platform, state.profile_id or "")

    try:
        url = asyncio.run(fetch())
    except LateApiError as exc:
        sys.stderr.write(REDACTOR.redact(f"late-monitor: reconnect: {exc}") + "\n")
        return 1
    out.write(
        f"Open within a few minutes to reconnect {state.platform} "
        f"{state.username or account_id}:\n{url}\n"
    )
    return 0


def send_test_notification(
    loaded: LoadedConfig, *, tag: str | None, out: TextIO = sys.stdout
) -> int:
    """Send a test message to every destination (or the tagged ones); one line each."""
    notifier = notifier_from(loaded)
    if not notifier.configured:
        raise ConfigError(
            "notify.urls: no destinations configured (set notify.urls or notify.config)"
        )

    async def send() -> list[tuple[str, str | None]]:
        await notifier.load()
        destinations = notifier.tagged(tag) if tag else notifier.destinations
        if not destinations:
            raise ConfigError(f"--tag {tag}: no destination has this tag")
        named = f" [{loaded.label}]" if loaded.label else ""  # a shared channel: which one
        title = f"Late monitor{named}: test notification"
        body = (
            "This is a test from late-monitor. If you can read this, this destination "
            "will receive account-health alerts."
        )
        results = await asyncio.gather(
            *(
                notifier.send(d.key, title=title, body=body, notify_type="info")
                for d in destinations
            )
        )
        return [(d.label, error) for d, error in zip(destinations, results, strict=True)]

    failed = 0
    for label, error in asyncio.run(send()):
        if error is None:
            out.write(f"ok      {label}\n")
        else:
            failed += 1
            out.write(f"failed  {label}: {error}\n")
    return 1 if failed else 0


def _shown(key: str, value: Any, loaded: LoadedConfig) -> str:
    if key == "late.api_key":
        return "(set, hidden)" if loaded.api_key is not None else "(not set)"
    if key == "webhooks.secret":
        return "(set, hidden)" if loaded.webhook_secret is not None else "(not set: webhooks off)"
    if key == "notify.urls":
        return "[" + ", ".join(f'"{u}"' for u in value) + "]"
    if key in SECRET_SETTINGS:
        return "(set, hidden)" if value is not None and value.get_secret_value() else "(not set)"
    if key in {
        "monitor.interval",
        "monitor.detail_every",
        "monitor.remind_every",
        "late.timeout",
        "notify.retry_for",
        "http.link_expiry",
        "http.recheck_after",
        "impact.horizon",
        "impact.escalate_within",
        "heartbeat.timeout",
        "webhooks.watch_every",
        "webhooks.poll_grace",
    }:
        return f'"{format_duration(value)}"'
    if key == "monitor.quiet_hours":
        return json.dumps([window.model_dump() for window in value])
    if key == "monitor.token_expiry_warn":
        return "[" + ", ".join(f'"{format_duration(v)}"' for v in value) + "]"
    return json.dumps(value)


def config_check(
    loaded: LoadedConfig, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Validate everything that can be checked offline, then print the effective settings."""
    problems = []
    try:
        loaded.require_api_key()
    except ConfigError as exc:
        problems += exc.problems
    if loaded.settings.http.listen:
        try:
            parse_listen(loaded.settings.http.listen)
        except ConfigError as exc:
            problems += exc.problems
    labels: list[str] = []
    by_workspace: dict[str, list[str]] = {}
    for view in loaded.workspaces:
        notifier = notifier_from(view)
        try:
            asyncio.run(check_destinations(view, notifier))
            by_workspace[view.workspace] = [d.label for d in notifier.destinations]
        except ConfigError as exc:
            problems += exc.problems
    labels = by_workspace.get(loaded.workspace, [])
    top = loaded.settings.notify
    for view in loaded.views:  # [notify] as loaded by a workspace that falls back to it
        if (view.settings.notify.urls, view.settings.notify.config) == (top.urls, top.config):
            labels = by_workspace.get(view.workspace, labels)
            break
    for warning in loaded.warnings:
        err.write(REDACTOR.redact(f"late-monitor: warning: {warning.text}") + "\n")
    if problems:
        raise ConfigError(problems)
    lines = [
        f"config file: {loaded.path or '(none: defaults and environment only)'}",
        f"state file:  {loaded.state_path}",
    ]
    for section, model in loaded.settings:
        if section == "workspaces":
            continue
        lines.append(f"\n[{section}]")
        for key, value in model:
            name = f"{section}.{key}"
            shown = _shown(name, labels if name == "notify.urls" else value, loaded)
            lines.append(f"{key} = {shown}    # from {loaded.sources.get(name, 'default')}")
    for view in loaded.views:
        late = view.settings.late
        key = "(set, hidden)" if view.api_key is not None else "(not set)"
        lines += [
            f"\n[[workspaces]] {view.workspace}",
            f"api_key = {key}    # from {view.api_key_source}",
            f"base_url = {late.base_url}",
            f"profile_id = {late.profile_id!r}, platforms = {late.platforms}",
            f"interval = {view.settings.monitor.interval:g}s, "
            f"max_requests_per_minute = {late.max_requests_per_minute}",
            f"destinations = {by_workspace.get(view.workspace, [])}",
        ]
    lines.append("\nconfiguration OK")
    out.write(REDACTOR.redact("\n".join(lines)) + "\n")
    return 0
