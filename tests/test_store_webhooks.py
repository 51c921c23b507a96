"""The state file's webhook deliveries: kept before the answer, deduplicated, settled with the
commit that acts on them, forgotten after Late's retry window; and schema 3 files migrated."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from late_monitor.messages import CycleRecord
from late_monitor.state import ApiHealth
from late_monitor.store import SCHEMA_VERSION, Store

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

# A file as the previous release (schema 3) wrote it: one account, one pending message.
_SCHEMA_V3 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE cycles (id INTEGER PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL NOT NULL,
    outcome TEXT NOT NULL, accounts INTEGER NOT NULL, events INTEGER NOT NULL,
    messages INTEGER NOT NULL, requests INTEGER NOT NULL, error TEXT);
CREATE TABLE messages (id INTEGER PRIMARY KEY, cycle_id INTEGER REFERENCES cycles(id),
    created_at REAL NOT NULL, notify_type TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
    accounts TEXT NOT NULL, entries TEXT);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
    destination TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, created_at REAL NOT NULL,
    last_error TEXT, finished_at REAL, unanswered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_message ON outbox (message_id, destination);
INSERT INTO accounts VALUES ('a1', 'error', '{"account_id":"a1","platform":"twitter",
    "username":"@a","status":"error","needs_reconnect":true,"can_post":false,
    "since":"2026-11-28T10:00:00+00:00","token_valid":false,"token_expires_at":null,
    "issues":["Token expired"],"display_name":"","profile_id":null,"pending":null,
    "pending_count":0,"last_notice_at":"2026-11-28T10:00:00+00:00","token_warned":[],
    "missing_scopes":[],"detail_at":null,"absent_polls":0,"can_fetch_analytics":true,
    "absent_since":null,"detail_due":false}');
INSERT INTO cycles VALUES (1, 1764324000.0, 1764324001.0, 'ok', 1, 1, 1, 1, NULL);
INSERT INTO messages VALUES (1, 1, 1764324001.0, 'failure', 'Late: old', 'body', '["a1"]', NULL);
INSERT INTO outbox VALUES (1, 1, 'k1', 'json://a', 'pending', 1, 5.0, 1.0, 'down', NULL, 0);
PRAGMA application_id = 1280134990;
PRAGMA user_version = 3;
"""


def record() -> CycleRecord:
    return CycleRecord(
        started_at=T0, finished_at=T0, outcome="webhook", accounts=0, events=0, requests=0
    )


def test_a_schema_3_file_is_migrated_and_keeps_its_accounts_and_pending_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V3)
    store = Store.open(path)
    with sqlite3.connect(path) as db:
        assert (
            db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        )  # 5 with operator control
    state = store.load_states()["a1"]
    assert (state.status, state.needs_reconnect, state.claimed_at) == ("error", True, None)
    (row,) = store.pending_deliveries()
    assert (row.title, row.attempts, row.last_error) == ("Late: old", 1, "down")
    assert store.record_webhook("evt_1", "account.connected", b"{}", now=T0.timestamp())
    store.close()
    again = Store.open(path)  # opening a migrated file again changes nothing
    assert again.unprocessed_webhooks() == [("evt_1", b"{}")]
    again.close()


def test_a_delivery_is_kept_once_and_settled_with_the_commit_that_acts_on_it(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "state.db")
    now = T0.timestamp()
    assert store.record_webhook("evt_1", "account.disconnected", b'{"a": 1}', now=now)
    assert not store.record_webhook("evt_1", "account.disconnected", b'{"a": 2}', now=now + 5)
    assert store.record_webhook("evt_2", "webhook.test", b"{}", now=now + 1)
    assert store.unprocessed_webhooks() == [("evt_1", b'{"a": 1}'), ("evt_2", b"{}")]
    store.commit_cycle(
        states={},
        changed=[],
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
        webhooks=[("evt_1", "applied")],
    )
    store.settle_webhooks([("evt_2", "test")], now=now + 2)
    assert store.unprocessed_webhooks() == []
    recent = store.recent_webhooks()
    assert [(r["id"], r["outcome"]) for r in recent] == [("evt_2", "test"), ("evt_1", "applied")]
    # forgotten after the window: the id could then be taken again (Late no longer retries it)
    assert store.prune_webhooks(before=now + 0.5) == 1
    assert store.record_webhook("evt_1", "account.disconnected", b"{}", now=now + 10)
    assert store.prune_webhooks(before=now + 100) == 1  # the unsettled one is kept
    assert [r["id"] for r in store.recent_webhooks()] == ["evt_1"]
