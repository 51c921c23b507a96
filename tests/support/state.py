"""The state file, as a test between two `run --once` processes sees it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def make_retries_due(state: Path) -> None:
    """Stand in for the minutes that pass between cron runs: pending rows become due.

    `run --once` is a separate process on the wall clock, and the product has (on purpose) no
    way to move that clock from outside, so the rows are edited instead. In-process, moving
    the clock does it: tests/test_clock.py."""
    with sqlite3.connect(state) as db:
        db.execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'")
