"""The status page: the `/status` report rendered as one small HTML page (no JavaScript
framework, no assets to fetch, so it works offline from the installed package).

Pure rendering: it takes the report and what the viewer may do, and returns HTML; every value
from the report is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

REFRESH_SECONDS = 30
# Reload on a timer unless the viewer is typing in a form (a plain meta refresh would lose it).
REFRESH_SCRIPT = (
    "setTimeout(function(){var busy=Array.prototype.some.call("
    "document.querySelectorAll('input[type=text],input[type=password]'),"
    "function(i){return i.value||i===document.activeElement});"
    f"if(!busy)location.reload();}},{REFRESH_SECONDS * 1000});"
)
SCRIPT_HASH = (
    "sha256-" + base64.b64encode(hashlib.sha256(REFRESH_SCRIPT.encode()).digest()).decode()
)
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src '{SCRIPT_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_GROUPS = (("error", "Error"), ("warning", "Warning"), ("healthy", "Healthy"))
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;text-align:left;
vertical-align:top;border-bottom:1px solid #ddd}th{background:#f4f4f4;font-weight:600}
.error{border-left:6px solid #c62828}.warning{border-left:6px solid #ef8f00}
.healthy{border-left:6px solid #2e7d32}.badge{display:inline-block;padding:0 .4em;
border-radius:3px;font-size:.85em;margin-right:.3em}.b-error{background:#fde0e0;color:#8e0000}
.b-warning{background:#fff0d0;color:#7a4a00}.b-healthy{background:#e0f2e0;color:#1b5e20}
.b-muted{background:#e8e8f4;color:#303080}.muted{color:#666}.msg{padding:.5em;
background:#eef6ff;border:1px solid #9cc3f0}.err{background:#fdecea;border-color:#e99}
form.inline{display:inline}input[type=text]{width:11em}details{margin:.2em 0}
.summary span{margin-right:1em}
"""


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the page offers: actions off (no admin token), a login form, or the actions."""

    actions_enabled: bool = False
    logged_in: bool = False
    csrf: str = ""
    message: str = ""
    error: bool = False
    workspace: str = ""  # the workspace shown, when [[workspaces]] are configured
    workspaces: tuple[str, ...] = ()


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _group_of(account: Mapping[str, Any]) -> str:
    status = account["status"]
    if status == "error" or account["needs_reconnect"] or not account["can_post"]:
        return "error"
    return "healthy" if status == "healthy" else "warning"


def _csrf(viewer: Viewer) -> str:
    """The fields every action form carries: its CSRF token and the workspace shown."""
    field = f'<input type="hidden" name="csrf" value="{_e(viewer.csrf)}">'
    if viewer.workspace:
        field += f'<input type="hidden" name="workspace" value="{_e(viewer.workspace)}">'
    return field


def _workspace_nav(viewer: Viewer) -> str:
    if not viewer.workspaces:
        return ""
    links = " · ".join(
        f"<b>{_e(name)}</b>"
        if name == viewer.workspace
        else f"<a href='/?workspace={quote(name)}'>{_e(name)}</a>"
        for name in viewer.workspaces
    )
    return f"<p class='summary'>Workspaces: {links}</p>"


def _account_row(a: Mapping[str, Any], viewer: Viewer, group: str) -> str:
    name = a["username"] or a["account_id"]
    flags = []
    if a["needs_reconnect"]:
        flags.append('<span class="badge b-error">needs reconnect</span>')
    if not a["can_post"]:
        flags.append('<span class="badge b-error">cannot post</span>')
    for silence_id in a.get("silenced_by", []):
        flags.append(f'<span class="badge b-muted">silenced #{_e(silence_id)}</span>')
    if a.get("acked"):
        flags.append('<span class="badge b-muted">acknowledged</span>')
    issues = _e("; ".join(a["issues"]) or "-")
    if a["missing_scopes"]:
        issues += "<br>missing: " + _e(", ".join(a["missing_scopes"]))
    at_risk = a.get("scheduled_posts")  # issue 13's impact: None when not looked up
    risk = '<span class="muted">-</span>'
    if at_risk is not None:
        risk = _e(
            f"{at_risk}" + (f", next {_when(a['next_post_at'])}" if a.get("next_post_at") else "")
        )
    actions = ""
    if viewer.logged_in and group != "healthy":
        account = _e(a["account_id"])
        actions = (
            f'<form class="inline" method="post" action="/actions/silence">{_csrf(viewer)}'
            f'<input type="hidden" name="account" value="{account}">'
            f'<input type="text" name="reason" placeholder="reason" required '
            f'aria-label="silence reason for {account}">'
            '<select name="duration" aria-label="for how long">'
            "<option>1h</option><option selected>2h</option><option>8h</option>"
            "<option>24h</option><option>7d</option></select>"
            f'<button type="submit" name="silence" value="{account}">Silence</button></form> '
        )
        if not a.get("acked"):
            actions += (
                f'<form class="inline" method="post" action="/actions/ack">{_csrf(viewer)}'
                f'<input type="hidden" name="account_id" value="{account}">'
                f'<button type="submit" name="ack" value="{account}">Ack</button></form>'
            )
    return (
        f'<tr class="{group}" data-account="{_e(a["account_id"])}">'
        f'<td><span class="badge b-{group}">{_e(a["status"])}</span></td>'
        f"<td>{_e(a['platform'])}</td><td>{_e(name)}<br>"
        f'<span class="muted">{_e(a["account_id"])}</span></td>'
        f"<td>{_e(_when(a['since']))}</td><td>{''.join(flags)}{issues}</td>"
        f"<td>{risk}</td>" + (f"<td>{actions}</td>" if viewer.logged_in else "") + "</tr>"
    )


def _accounts(accounts: Sequence[Mapping[str, Any]], viewer: Viewer) -> str:
    parts = []
    for group, title in _GROUPS:
        rows = [a for a in accounts if _group_of(a) == group]
        if not rows:
            continue
        head = "<th>Status</th><th>Platform</th><th>Account</th><th>Since</th>"
        head += "<th>Issues</th><th>Posts at risk</th>"
        head += "<th>Actions</th>" if viewer.logged_in else ""
        body = "".join(_account_row(a, viewer, group) for a in rows)
        parts.append(
            f'<h2 id="group-{group}">{title} ({len(rows)})</h2>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return "".join(parts) or "<p>No accounts recorded yet.</p>"


def _silences(silences: Sequence[Mapping[str, Any]], viewer: Viewer) -> str:
    if not silences:
        return "<p class='muted'>No silences.</p>"
    rows = []
    for s in silences:
        matchers = " ".join(f"{k}={','.join(v)}" for k, v in s["matchers"].items())
        action = ""
        if viewer.logged_in and s["state"] != "expired":
            action = (
                f'<form class="inline" method="post" action="/actions/expire">{_csrf(viewer)}'
                f'<input type="hidden" name="id" value="{_e(s["id"])}">'
                f'<button type="submit">Expire #{_e(s["id"])}</button></form>'
            )
        rows.append(
            f"<tr><td>#{_e(s['id'])}</td><td>{_e(s['state'])}</td><td>{_e(matchers)}</td>"
            f"<td>{_e(_when(s['ends_at']))}</td><td>{_e(s['created_by'])}</td>"
            f"<td>{_e(s['suppressed'])}</td><td>{_e(s['reason'])}</td>"
            + (f"<td>{action}</td>" if viewer.logged_in else "")
            + "</tr>"
        )
    head = "<th>#</th><th>State</th><th>Matchers</th><th>Ends</th><th>By</th>"
    head += "<th>Held back</th><th>Reason</th>" + ("<th></th>" if viewer.logged_in else "")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _simple_table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f"<p class='muted'>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _controls(viewer: Viewer) -> str:
    if not viewer.actions_enabled:
        return (
            "<p class='muted'>Actions are off: set <code>[http] admin_token</code> to silence "
            "and acknowledge from this page.</p>"
        )
    if not viewer.logged_in:
        return (
            '<form method="post" action="/login"><label>Admin token '
            '<input type="password" name="token" autocomplete="current-password" required>'
            '</label> <button type="submit">Log in</button></form>'
        )
    kinds = "degraded reminder token_expiring reconnect_needed posting_blocked recovered"
    return (
        '<details><summary>New silence</summary><form method="post" '
        f'action="/actions/silence">{_csrf(viewer)}'
        '<label>account <input type="text" name="account"></label> '
        '<label>platform <input type="text" name="platform"></label> '
        '<label>profile <input type="text" name="profile"></label> '
        f'<label>kind <input type="text" name="kind" title="{kinds}"></label> '
        '<label>for <input type="text" name="duration" value="2h" style="width:4em"></label> '
        '<label>reason <input type="text" name="reason" required></label> '
        '<button type="submit">Add silence</button></form></details>'
        f'<form class="inline" method="post" action="/logout">{_csrf(viewer)}'
        '<button type="submit">Log out</button></form>'
    )


def render_page(report: Mapping[str, Any], viewer: Viewer) -> str:
    accounts = report["accounts"]
    counts = {g: sum(1 for a in accounts if _group_of(a) == g) for g, _ in _GROUPS}
    api = report["api"]
    api_line = (
        f"<p class='msg err'>Late API: {_e(api['consecutive_failures'])} failed polls in a "
        f"row; last error: {_e(api['last_error'])}</p>"
        if api["consecutive_failures"] or api["auth_alerted"]
        else ""
    )
    message = (
        f"<p class='msg{' err' if viewer.error else ''}' role='status'>{_e(viewer.message)}</p>"
        if viewer.message
        else ""
    )
    acks = _simple_table(
        ("Account", "Status", "By", "Since", "Reason"),
        [
            (a["account_id"], a["status"], a["created_by"], _when(a["created_at"]), a["reason"])
            for a in report["acks"]
        ],
        "No acknowledgements.",
    )
    held = _simple_table(
        ("Message", "Destination", "Type", "Title", "Until"),
        [
            (f"#{h['message_id']}", h["destination"], h["type"], h["title"], _when(h["until"]))
            for h in report["held"]
        ],
        "Nothing held by quiet hours.",
    )
    outbox = _simple_table(
        ("Message", "Destination", "Type", "Title", "Attempts", "Next", "Last error"),
        [
            (
                f"#{o['message_id']}",
                o["destination"],
                o["type"],
                o["title"],
                o["attempts"],
                _when(o["next_attempt_at"]),
                o["last_error"] or "",
            )
            for o in report["outbox"]
        ],
        "Outbox empty: every message was delivered.",
    )
    cycles = _simple_table(
        ("Started", "Outcome", "Accounts", "Events", "Messages", "Requests", "Error"),
        [
            (
                _when(c["started_at"]),
                c["outcome"],
                c["accounts"],
                c["events"],
                c["messages"],
                c["requests"],
                c["error"] or "",
            )
            for c in report["cycles"]
        ],
        "No cycle yet.",
    )
    summary = "".join(
        f'<span class="badge b-{g}">{counts[g]} {t.lower()}</span>' for g, t in _GROUPS
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>late-monitor: {counts['error']} error, {counts['warning']} warning</title>"
        f"<noscript><meta http-equiv='refresh' content='{REFRESH_SECONDS}'></noscript>"
        f"<style>{_STYLE}</style><script>{REFRESH_SCRIPT}</script></head><body>"
        f"<h1>late-monitor{' / ' + _e(viewer.workspace) if viewer.workspace else ''}</h1>"
        f"{_workspace_nav(viewer)}<p class='summary'>{summary}"
        f"<span class='muted'>as of {_e(_when(report.get('generated_at')))}; refreshes "
        f"every {REFRESH_SECONDS} s</span></p>{message}{api_line}{_controls(viewer)}"
        f"{_accounts(accounts, viewer)}"
        f"<h2>Silences</h2>{_silences(report['silences'], viewer)}"
        f"<h2>Acknowledgements</h2>{acks}<h2>Held by quiet hours</h2>{held}"
        f"<h2>Outbox</h2>{outbox}<h2>Last cycles</h2>{cycles}"
        "<p class='muted'>The same data as <a href='/status'>/status</a> and "
        "<code>late-monitor status --json</code>.</p></body></html>"
    )
