"""The state file, as a test between two `run --once` processes sees it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from late_monitor.state import AccountState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_retries_due(state: Path) -> None:
    """Stand in for the minutes that pass between cron runs: pending rows become due.

    `run --once` is a separate process on the wall clock, and the product has (on purpose) no
    way to move that clock from outside, so the rows are edited instead. In-process, moving
    the clock does it: tests/test_clock.py."""
    with sqlite3.connect(state) as db:
        db.execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'")


def full_state(account_id: str = "a1", **kw: object) -> AccountState:
    """An account's state with every field set away from its default (what a store must
    keep whole); `kw` overrides any of them."""
    base: dict[str, object] = {
        "account_id": account_id,
        "platform": "twitter",
        "username": "@a",
        "status": "error",
        "needs_reconnect": True,
        "can_post": False,
        "since": T0,
        "token_expires_at": T0 + timedelta(days=3),
        "issues": ("Token expired",),
        "pending": ("healthy", False, True),
        "pending_count": 1,
        "token_warned": (604800.0,),
        "missing_scopes": ("tweet.write",),
        "detail_at": T0,
        "last_notice_at": T0,
    }
    base.update(kw)
    return AccountState(**base)  # type: ignore[arg-type]
