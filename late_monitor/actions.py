"""The operator's commands: `silence add | list | expire` and `ack` (the CLI's side of control.py).

They write the state file directly, so every process sharing it (the daemon, cron's `run
--once`) sees the change at its next cycle.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig, parse_duration
from late_monitor.control import Refused, add_ack, add_silence, expire_silence
from late_monitor.status import status_report
from late_monitor.storage import StateStore as Store

SILENCE_EXAMPLE = """examples:
  late-monitor silence add --account acc_123 --for 2h --reason "migrating the page"
  late-monitor silence add --platform tiktok --kind reminder --until 2026-12-01T09:00 \\
      --reason "TikTok outage, vendor ticket 4711"
  late-monitor silence list
  late-monitor silence expire 3
matchers combine with AND; a matcher given twice matches either value. Recoveries and
api_*/auth_failed events are silenced only by a silence that names their --kind."""

ACK_EXAMPLE = """example:
  late-monitor ack acc_123 --reason "client is re-linking the page on Monday"
no reminders for the account until its condition changes (worse, better or recovered);
then the ack clears itself"""


def author(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def parse_until(text: str, *, now: datetime) -> datetime:
    """An ISO 8601 time (`2026-12-01T09:00`, `...+01:00`) or `HH:MM` (the next one); a time
    without a zone is this machine's local time."""
    text = text.strip()
    if len(text) <= 5 and ":" in text:
        hours, _, minutes = text.partition(":")
        local = now.astimezone()
        when = local.replace(hour=int(hours), minute=int(minutes), second=0, microsecond=0)
        return (when if when > local else when + timedelta(days=1)).astimezone(UTC)
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.astimezone()).astimezone(UTC)


def _length(seconds: float) -> str:
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return " ".join(p for p in parts if p) or "under a minute"


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def render_silences(report: dict[str, Any]) -> str:
    rows = [("ID", "STATE", "MATCHERS", "ENDS (UTC)", "BY", "SUPPRESSED", "REASON")]
    for s in report["silences"]:
        matchers = " ".join(f"{k}={','.join(v)}" for k, v in s["matchers"].items())
        state = s["state"] + (" (by hand)" if s["expired_by_hand"] else "")
        rows.append(
            (
                f"#{s['id']}",
                state,
                matchers,
                _when(s["ends_at"]),
                s["created_by"],
                str(s["suppressed"]),
                s["reason"],
            )
        )
    if len(rows) == 1:
        return "no silences (expired ones are kept 7 days)"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


def _open(loaded: LoadedConfig, *, create: bool = False) -> Store:
    return open_store(loaded, create=create)


def _refused(what: str, exc: Exception, err: TextIO) -> int:
    err.write(f"late-monitor: {what}: {exc}\n")
    return 2


def silence_add(
    loaded: LoadedConfig,
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    now = clock()
    if (args.duration is None) == (args.until is None):
        return _refused("silence add", ValueError("give one of --for or --until"), err)
    try:
        if args.duration is not None:
            seconds = parse_duration(args.duration)
            if seconds <= 0:
                raise ValueError("--for must be longer than 0")
            ends_at = now + timedelta(seconds=seconds)
        else:
            ends_at = parse_until(args.until, now=now)
    except ValueError as exc:
        return _refused("silence add", exc, err)
    matchers = {
        "account": args.account or [],
        "platform": args.platform or [],
        "profile": args.profile or [],
        "kind": args.kind or [],
    }
    store = _open(loaded, create=True)
    try:
        silence = add_silence(
            store,
            matchers=matchers,
            ends_at=ends_at,
            reason=args.reason,
            created_by=author(args.by),
            now=now,
        )
    except Refused as exc:
        return _refused("silence add", exc, err)
    finally:
        store.close()
    length = _length((silence.ends - now).total_seconds())
    out.write(
        f"silence #{silence.id} added: {silence.describe()} until "
        f"{silence.ends:%Y-%m-%d %H:%M} UTC ({length})\n"
    )
    return 0


def silence_list(
    loaded: LoadedConfig, args: argparse.Namespace, *, out: TextIO = sys.stdout
) -> int:
    store = _open(loaded)
    try:
        report = status_report(store, cycles=0)
    finally:
        store.close()
    if args.json:
        out.write(json.dumps(report["silences"], indent=2) + "\n")
    else:
        out.write(render_silences(report) + "\n")
    return 0


def silence_expire(
    loaded: LoadedConfig,
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    store = _open(loaded)
    try:
        silence = expire_silence(store, args.id, now=datetime.now(UTC))
    except Refused as exc:
        return _refused("silence expire", exc, err)
    finally:
        store.close()
    out.write(
        f"silence #{silence.id} ({silence.describe()}) expired; accounts it held back that "
        "are still unhealthy are announced at the next cycle\n"
    )
    return 0


def ack(
    loaded: LoadedConfig,
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    view = loaded.workspace_named(getattr(args, "workspace", None))
    store = _open(loaded)
    try:
        made = add_ack(
            store.scoped(view.workspace),
            args.account_id,
            reason=args.reason or "",
            created_by=author(args.by),
            now=datetime.now(UTC),
        )
    except Refused as exc:
        return _refused("ack", exc, err)
    finally:
        store.close()
    out.write(
        f"acknowledged {made.account_id} ({made.condition[0]}): no reminders until its "
        "condition changes\n"
    )
    return 0


def add_parsers(
    commands: Any,
    *,
    config_option: Callable[[argparse.ArgumentParser], None],
    run: Callable[[Callable[..., int]], Callable[[argparse.Namespace], int]],
) -> None:
    """The `silence` and `ack` subcommands; `run(f)` makes the CLI function that loads the
    settings and calls `f(loaded, args)`."""
    silence = commands.add_parser(
        "silence",
        help="mute matching notifications for a while (add, list, expire)",
        epilog=SILENCE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = silence.add_subparsers(dest="silence_command", metavar="add|list|expire")
    add = actions.add_parser(
        "add",
        help="add a silence",
        epilog=SILENCE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(add)
    for flag, what in (
        ("--account", "account id"),
        ("--platform", "platform (tiktok, instagram, ...)"),
        ("--profile", "Late profile id"),
        ("--kind", "event kind (degraded, reminder, token_expiring, recovered, ...)"),
    ):
        add.add_argument(flag, action="append", metavar=flag[2:].upper(), help=f"match this {what}")
    add.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h, 7d")
    add.add_argument("--until", metavar="TIME", help="ISO 8601 time or HH:MM (local time)")
    add.add_argument("--reason", required=True, help="why (shown in list and on the page)")
    add.add_argument("--by", help="author (default: $USER)")
    add.set_defaults(func=run(silence_add))
    listing = actions.add_parser(
        "list",
        help="active, pending and recently expired silences",
        epilog="example:\n  late-monitor silence list --json "
        "| jq '.[] | select(.state == \"active\")'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(listing)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=run(silence_list))
    expire = actions.add_parser(
        "expire",
        help="end a silence now",
        epilog="example:\n  late-monitor silence expire 3   # its accounts, if still unhealthy, "
        "are announced at the next poll",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(expire)
    expire.add_argument("id", type=int, help="the silence's number (see silence list)")
    expire.set_defaults(func=run(silence_expire))

    acknowledge = commands.add_parser(
        "ack",
        help="acknowledge an unhealthy account: no reminders until its condition changes",
        epilog=ACK_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(acknowledge)
    acknowledge.add_argument("account_id")
    acknowledge.add_argument("--reason", help="why (shown in status and on the page)")
    acknowledge.add_argument("--by", help="author (default: $USER)")
    acknowledge.add_argument(
        "-w", "--workspace", metavar="NAME", help="the account's workspace ([[workspaces]] name)"
    )
    acknowledge.set_defaults(func=run(ack))
