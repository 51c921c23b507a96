"""The state file's view, as data: every account, the outbox, the last cycles, silences, acks
and held messages (no secrets). `status`, `/status` and the status page all show this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from late_monitor.silences import Silence, silenced_accounts
from late_monitor.storage import StateStore as Store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _iso_epoch(value: float) -> str:
    """The store keeps epoch seconds; people and scripts reading the report get ISO 8601."""
    return datetime.fromtimestamp(value, UTC).isoformat()


def _silence_state(silence: Silence, now: datetime) -> str:
    if silence.active(now):
        return "active"
    return "pending" if now < silence.created_at else "expired"


def status_report(store: Store, *, cycles: int = 10, now: datetime | None = None) -> dict[str, Any]:
    """A stable, JSON-ready description of what the monitor knows; `now` (default: the
    wall clock) decides which silences are active."""
    now = now or datetime.now(UTC)
    states = sorted(store.load_states().values(), key=lambda s: (s.platform, s.account_id))
    api = store.load_api_health()
    silences = store.load_silences()
    acks = store.load_acks()
    covered = silenced_accounts(states, silences, now)
    return {
        "generated_at": now.isoformat(),
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
                "silenced_by": covered.get(s.account_id, []),
                "acked": s.account_id in acks and acks[s.account_id].condition == s.condition,
            }
            for s in states
        ],
        "silences": [
            {
                "id": silence.id,
                "state": _silence_state(silence, now),
                "matchers": {key: list(values) for key, values in silence.matchers.items()},
                "reason": silence.reason,
                "created_by": silence.created_by,
                "created_at": _iso(silence.created_at),
                "ends_at": _iso(silence.ends),
                "expired_by_hand": silence.expired_at is not None
                and silence.expired_at < silence.ends_at,
                "suppressed": silence.suppressed,
                "accounts_silenced": list(silence.silenced),
            }
            for silence in sorted(silences, key=lambda s: s.id, reverse=True)
        ],
        "acks": [
            {
                "account_id": ack.account_id,
                "status": ack.condition[0],
                "reason": ack.reason,
                "created_by": ack.created_by,
                "created_at": _iso(ack.created_at),
            }
            for ack in sorted(acks.values(), key=lambda a: a.account_id)
        ],
        "held": [
            {
                "message_id": row["message_id"],
                "destination": row["label"],
                "type": row["notify_type"],
                "title": row["title"],
                "until": _iso_epoch(row["next_attempt_at"]),
            }
            for row in store.held_rows()
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
