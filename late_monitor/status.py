"""The state file's view, as data: every account, the outbox, the last cycles (no secrets)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from late_monitor.store import Store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _iso_epoch(value: float) -> str:
    """The store keeps epoch seconds; people and scripts reading the report get ISO 8601."""
    return datetime.fromtimestamp(value, UTC).isoformat()


def status_report(store: Store, *, cycles: int = 10) -> dict[str, Any]:
    """A stable, JSON-ready description of what the monitor knows."""
    states = sorted(store.load_states().values(), key=lambda s: (s.platform, s.account_id))
    api = store.load_api_health()
    return {
        "accounts": [
            {
                "account_id": s.account_id,
                "platform": s.platform,
                "username": s.username,
                "status": s.status,
                "needs_reconnect": s.needs_reconnect,
                "can_post": s.can_post,
                "since": _iso(s.since),
                "token_expires_at": _iso(s.token_expires_at),
                "last_notice_at": _iso(s.last_notice_at),
                "issues": list(s.issues),
                "missing_scopes": list(s.missing_scopes),
                "scheduled_posts": s.scheduled_posts,  # None: not looked up, or unknown
                "next_post_at": _iso(s.next_post_at),
                "impact_at": _iso(s.impact_at),
            }
            for s in states
        ],
        "api": {
            "consecutive_failures": api.consecutive_failures,
            "unreachable_alerted": api.unreachable_alerted,
            "auth_alerted": api.auth_alerted,
            "last_error": api.last_error or None,
        },
        "outbox": [
            {
                "message_id": row["message_id"],
                "destination": row["label"],
                "type": row["notify_type"],
                "title": row["title"],
                "attempts": row["attempts"],
                "next_attempt_at": _iso_epoch(row["next_attempt_at"]),
                "last_error": row["last_error"],
            }
            for row in store.outbox_rows()
        ],
        "cycles": [
            {
                **cycle,
                "started_at": _iso_epoch(cycle["started_at"]),
                "finished_at": _iso_epoch(cycle["finished_at"]),
            }
            for cycle in store.recent_cycles(cycles)
        ],
    }
