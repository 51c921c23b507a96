"""The SQLite state file: round trips, the outbox, refusing files that are not ours."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from late_monitor.errors import StateError
from late_monitor.messages import CycleRecord, Entry, PlannedMessage
from late_monitor.state import AccountState, ApiHealth, marked
from late_monitor.store import _MIGRATIONS, CACHE_KB, SCHEMA_VERSION, Store
from tests.support.schema import assert_schema_is_fresh
from tests.support.state import T0
from tests.support.state import full_state as state


def record() -> CycleRecord:
    return CycleRecord(
        started_at=T0, finished_at=T0, outcome="ok", accounts=1, events=1, requests=1
    )


def test_states_messages_and_api_health_round_trip(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    message = PlannedMessage("failure", "Late: x", "body", (("k1", "json://a"), ("k2", "json://b")))
    store.commit_cycle(
        states={"a1": state()},
        changed=["a1"],
        removed=[],
        api=ApiHealth(2, True, False, "e"),
        messages=[message],
        record=record(),
    )
    store.close()
    again = Store.open(tmp_path / "s.db")
    assert again.load_states() == {"a1": state()}
    assert again.load_api_health() == ApiHealth(2, True, False, "e")
    rows = again.pending_deliveries()
    assert [(r.destination, r.title) for r in rows] == [("k1", "Late: x"), ("k2", "Late: x")]
    again.mark_delivered(rows[0].id, now=1.0)
    again.mark_failed(rows[1].id, error="down", next_attempt_at=2.0)
    assert [(r.destination, r.attempts) for r in again.pending_deliveries()] == [("k2", 1)]
    assert again.recent_cycles()[0]["messages"] == 1


def test_removed_accounts_are_deleted(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    store.commit_cycle(
        states={"a1": state(), "a2": state("a2")},
        changed=["a1", "a2"],
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    store.commit_cycle(
        states={"a1": state()},
        changed=[],
        removed=["a2"],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    assert list(store.load_states()) == ["a1"]


def test_another_programs_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(StateError, match="another program's SQLite database"):
        Store.open(path)
    assert path.read_bytes() == before


def test_random_bytes_are_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    junk = os.urandom(4096)
    path.write_bytes(junk)
    with pytest.raises(StateError, match="not a late-monitor state file"):
        Store.open(path)
    assert path.read_bytes() == junk


def test_a_directory_that_cannot_be_created_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create the state directory"):
        Store.open(blocker / "sub" / "state.db")


def test_cycle_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first = Store.open(tmp_path / "s.db")
    second = Store.open(tmp_path / "s.db")
    fd = first.try_lock()
    assert fd is not None
    assert second.try_lock() is None
    first.release_lock(fd)
    fd2 = second.try_lock()
    assert fd2 is not None
    second.release_lock(fd2)


def test_prune_keeps_pending_messages(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    message = PlannedMessage("info", "t", "b", (("k", "l"),))
    store.commit_cycle(
        states={}, changed=[], removed=[], api=ApiHealth(), messages=[message], record=record()
    )
    store.prune(before=T0 + timedelta(days=400))
    assert len(store.pending_deliveries()) == 1


def test_a_cached_view_sees_what_another_connection_committed(tmp_path: Path) -> None:
    daemon, cron = Store.open(tmp_path / "s.db"), Store.open(tmp_path / "s.db")
    daemon.commit_cycle(
        states={"a1": state()},
        changed=["a1"],
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    assert daemon.load_states() == {"a1": state()}
    assert cron.load_states() == {"a1": state()}
    cron.commit_cycle(
        states={"a1": state(status="warning")},
        changed=["a1"],
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    assert daemon.load_states()["a1"].status == "warning"
    daemon.commit_cycle(
        states={}, changed=[], removed=["a1"], api=ApiHealth(), messages=[], record=record()
    )
    assert daemon.load_states() == {}
    assert cron.load_states() == {}


# The schema of a version-1 file, as late-monitor 0.1 wrote it.
_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE cycles (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL, accounts INTEGER NOT NULL, events INTEGER NOT NULL,
    messages INTEGER NOT NULL, requests INTEGER NOT NULL, error TEXT);
CREATE TABLE messages (id INTEGER PRIMARY KEY, cycle_id INTEGER REFERENCES cycles(id),
    created_at TEXT NOT NULL, notify_type TEXT NOT NULL, title TEXT NOT NULL,
    body TEXT NOT NULL, accounts TEXT NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
    destination TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, created_at REAL NOT NULL,
    last_error TEXT, finished_at REAL);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
INSERT INTO cycles VALUES (1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 'ok',
    1, 1, 1, 1, NULL);
INSERT INTO messages VALUES (1, 1, '2026-01-01T00:00:00+00:00', 'failure', 'Late: old',
    '[FAILURE] twitter @a (a1): healthy -> error', '["a1"]');
INSERT INTO outbox VALUES (1, 1, 'k1', 'json://a', 'pending', 2, 5.0, 1.0, 'down', NULL);
PRAGMA application_id = 1280134990;
PRAGMA user_version = 1;
"""


def test_a_version_1_file_is_migrated_in_place_and_keeps_its_pending_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V1)
    store = Store.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.recent_cycles()[0]["started_at"] == T0.timestamp()  # through 2, then 3
    (row,) = store.pending_deliveries()
    assert (row.destination, row.attempts, row.last_error, row.title) == (
        "k1",
        2,
        "down",
        "Late: old",
    )
    assert (row.state, row.unanswered, row.entries, row.cycle_id) == ("pending", 0, (), 1)
    # and it takes the new kinds of rows and marks
    message = PlannedMessage(
        "info", "t", "b", (("k1", "json://a"),), entries=(Entry("a1", "info", "b"),)
    )
    store.commit_cycle(
        states={}, changed=[], removed=[], api=ApiHealth(), messages=[message], record=record()
    )
    store.mark_failed(row.id, error="slow", next_attempt_at=9.0, unanswered=True)
    rows = store.pending_deliveries()
    assert [(r.unanswered, r.entries) for r in rows] == [(1, ()), (0, (Entry("a1", "info", "b"),))]
    store.close()
    assert Store.open(path).pending_count() == 2  # opening a migrated file again changes nothing


def test_set_aside_rows_stay_undelivered_through_prune_but_block_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    message = PlannedMessage("info", "t", "b", (("k", "l"),))
    store.commit_cycle(
        states={}, changed=[], removed=[], api=ApiHealth(), messages=[message], record=record()
    )
    (row,) = store.pending_deliveries()
    store.mark_set_aside(row.id, error="HTTP 400", until=T0.timestamp() + 86400)
    store.prune(before=T0 + timedelta(days=400))
    (kept,) = store.pending_deliveries()
    assert (kept.state, kept.attempts, kept.last_error) == ("set_aside", 1, "HTTP 400")
    assert store.pending_count() == 1
    assert [r["state"] for r in store.outbox_rows()] == ["set_aside"]


def test_reroute_adds_only_destinations_without_the_message_and_finishes_the_old_row(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "s.db")
    message = PlannedMessage("failure", "t", "b", (("gone", "json://gone"), ("kept", "json://k")))
    store.commit_cycle(
        states={}, changed=[], removed=[], api=ApiHealth(), messages=[message], record=record()
    )
    gone, _ = store.pending_deliveries()  # ordered by destination key
    added = store.reroute(gone.id, to=[("new", "json://new"), ("kept", "json://k")], now=1.0)
    assert added == ["json://new"]
    rows = store.pending_deliveries()
    assert [(r.destination, r.created_at) for r in rows] == [
        ("kept", gone.created_at),
        ("new", gone.created_at),  # the message's age, for retry_for, goes with it
    ]
    states = {r["label"]: r["state"] for r in store.outbox_rows(states=("rerouted",))}
    assert states == {"json://gone": "rerouted"}


def test_every_field_of_a_state_survives_the_file(tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    state = AccountState(
        account_id="a1",
        platform="twitter",
        username="@a\ud800",  # a lone surrogate: json.loads gives them (a webhook's body)
        status="error",
        needs_reconnect=True,
        can_post=False,
        since=when,
        token_valid=False,
        token_expires_at=when,
        issues=('x\u2028\x00"\\',),  # what JSON must escape
        display_name="Zoë 🚀 日本",  # written as UTF-8
        profile_id="p",
        pending=("healthy", False, True),
        pending_count=1,
        last_notice_at=when,
        token_warned=(86400.0, float("inf")),  # inf: no setting gives it; still kept
        missing_scopes=("s",),
        detail_at=when,
        absent_polls=2,
        can_fetch_analytics=False,
        absent_since=when,
        detail_due=True,
        scheduled_posts=4,
        next_post_at=when,
        impact_at=when,
        recovered_at=when,
        claimed_at=when,
    )
    state = marked(state, b"\x01" * 16, when.timestamp())  # the quiet mark, set by the rules
    assert all(getattr(state, f.name) != f.default for f in fields(AccountState))  # all set
    store = Store.open(tmp_path / "state.db")
    store.commit_cycle(
        states={"a1": state},
        changed={"a1"},
        removed=(),
        api=ApiHealth(),
        messages=[],
        record=CycleRecord(when, when, "ok", 1, 0, 1),
    )
    store.close()

    loaded = Store.open(tmp_path / "state.db").load_states()
    assert loaded == {"a1": state}
    assert (loaded["a1"].listed, loaded["a1"].quiet_until) == (b"\x01" * 16, when.timestamp())


def test_prune_drops_finished_history_older_than_the_cutoff_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "s.db")
    message = PlannedMessage("info", "t", "b", (("k", "l"),))
    for day in (0, 10):
        when = T0 + timedelta(days=day)
        store.commit_cycle(
            states={},
            changed=[],
            removed=[],
            api=ApiHealth(),
            messages=[message],
            record=CycleRecord(when, when, "ok", 1, 1, 1),
        )
    old, new = store.pending_deliveries()
    store.mark_delivered(old.id, now=T0.timestamp())
    store.mark_delivered(new.id, now=(T0 + timedelta(days=10)).timestamp())
    assert store.prune(before=T0 + timedelta(days=5)) == 1
    (kept,) = store.recent_cycles()
    assert kept["started_at"] == (T0 + timedelta(days=10)).timestamp()
    assert [r["message_id"] for r in store.outbox_rows(states=("delivered",))] == [new.message_id]


# A version-2 file as late-monitor 0.2 wrote it: times of cycles and messages in ISO text.
_SCHEMA_V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, status TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE cycles (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL, accounts INTEGER NOT NULL, events INTEGER NOT NULL,
    messages INTEGER NOT NULL, requests INTEGER NOT NULL, error TEXT);
CREATE TABLE messages (id INTEGER PRIMARY KEY, cycle_id INTEGER REFERENCES cycles(id),
    created_at TEXT NOT NULL, notify_type TEXT NOT NULL, title TEXT NOT NULL,
    body TEXT NOT NULL, accounts TEXT NOT NULL, entries TEXT);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL REFERENCES messages(id),
    destination TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, created_at REAL NOT NULL,
    last_error TEXT, finished_at REAL, unanswered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_message ON outbox (message_id, destination);
INSERT INTO accounts VALUES ('a1', 'error', '{"account_id":"a1","platform":"twitter",
    "username":"@a","status":"error","needs_reconnect":true,"can_post":false,
    "since":"2026-01-01T00:00:00+00:00","token_expires_at":"2026-01-04T00:00:00+00:00"}');
INSERT INTO cycles VALUES (1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01.500000+00:00',
    'ok', 1, 1, 1, 1, NULL);
INSERT INTO cycles VALUES (2, '2026-01-02T00:00:00+00:00', '2026-01-02T00:00:00+00:00',
    'api_failed', 1, 0, 0, 3, 'HTTP 500');
INSERT INTO messages VALUES (1, 1, '2026-01-01T00:00:01.500000+00:00', 'failure', 'Late: x',
    'body', '["a1"]', '[["a1","failure","body"]]');
INSERT INTO outbox VALUES (1, 1, 'k1', 'json://a', 'pending', 1, 5.0, 1767225601.5, 'down',
    NULL, 1);
INSERT INTO outbox VALUES (2, 1, 'k2', 'json://b', 'delivered', 1, 1.0, 1767225601.5, NULL,
    1767225602.0, 0);
PRAGMA application_id = 1280134990;
PRAGMA user_version = 2;
"""


def _columns(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in sorted(tables)}


def test_a_version_2_file_has_its_iso_times_converted_to_epoch_seconds_in_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V2)
    store = Store.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        kinds = db.execute(
            "SELECT typeof(started_at), typeof(finished_at) FROM cycles "
            "UNION SELECT typeof(created_at), 'real' FROM messages"
        ).fetchall()
    assert kinds == [("real", "real")]
    Store.open(tmp_path / "fresh.db").close()
    assert _columns(path) == _columns(tmp_path / "fresh.db")  # as if it had been made today

    second, first = store.recent_cycles()
    start = T0.timestamp()
    assert (first["started_at"], first["finished_at"]) == (start, start + 1.5)
    assert (second["started_at"], second["outcome"], second["error"]) == (
        start + 86400,
        "api_failed",
        "HTTP 500",
    )
    (row,) = store.pending_deliveries()  # the pending row and its message survive
    assert (row.id, row.cycle_id, row.title, row.unanswered) == (1, 1, "Late: x", 1)
    assert row.entries == (Entry("a1", "failure", "body"),)
    assert store.load_states()["a1"].since == T0  # the state document is read as it was
    # the converted times compare with the new ones: prune takes the delivered row's day
    store.mark_delivered(row.id, now=start + 2)
    assert store.prune(before=T0 + timedelta(days=1, hours=1)) == 2
    assert store.recent_cycles() == []
    assert store.pending_count() == 0
    store.close()
    assert Store.open(path).recent_cycles() == []  # opening a migrated file again changes nothing


CORPUS = Path(__file__).parent / "corpus"


def test_a_schema_7_file_keeps_its_quiet_marks_under_the_index_keyed_by_account(
    tmp_path: Path,
) -> None:
    """Schema 8 replaces the marks' index (v7: by quiet_until, with status and platform) by
    one keyed by account: the marks a file holds read the same through it."""
    path = tmp_path / "state.db"
    shutil.copy(CORPUS / "state-v5.db", path)  # written by 0.3 (schema 5)
    with sqlite3.connect(path) as db:  # brought to schema 7, as the release before wrote it
        for version in (5, 6):
            for statement in _MIGRATIONS[version]:
                db.execute(statement)
        db.execute(
            "UPDATE accounts SET listed = ?, quiet_until = ? WHERE account_id = 'acc_2'",
            (b"\x02" * 16, 5000.0),
        )
        db.execute("PRAGMA user_version = 7")
    store = Store.open(path)
    try:
        assert store.quiet_index(after=0.0) == {b"\x02" * 16: "acc_2"}
        assert store.quiet_index(after=5000.0) == {}
        lazy = store.load_states(lazy=True)
        assert sorted(lazy) == ["acc_1", "acc_2"]
        assert (lazy["acc_2"].listed, lazy["acc_2"].quiet_until) == (b"\x02" * 16, 5000.0)
        assert store.status_counts() == {
            (s.status, s.platform): 1 for s in store.load_states().values()
        }
    finally:
        store.close()
    assert_schema_is_fresh(path, tmp_path)
    with sqlite3.connect(path) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "accounts_marks" in indexes
    assert "accounts_quiet" not in indexes


def test_a_handle_reads_the_marks_for_one_poll_then_keeps_them_through_its_own_commits(
    tmp_path: Path,
) -> None:
    """What a poll costs: a handle's first read takes only what one poll needs (a cron run
    polls once), the index and the lazy load's ids from one statement; its second read (a
    daemon's next poll) takes every mark, then kept by the handle's own commits; another
    connection's commit makes it read them again."""
    store = Store.open(tmp_path / "state.db")
    reads: list[str] = []
    store._db.set_trace_callback(  # observed, not replaced: the statements SQLite runs
        lambda sql: reads.append(sql) if "quiet_until IS NOT NULL" in sql else None
    )

    def commit(states: dict[str, AccountState], changed: list[str]) -> None:
        store.commit_cycle(
            states=states,
            changed=changed,
            removed=[],
            api=ApiHealth(),
            messages=[],
            record=record(),
        )

    quiet = {f"a{i}": marked(state(f"a{i}"), bytes([i]) * 16, 9e9) for i in range(5)}
    commit(quiet, list(quiet))
    assert len(store.quiet_index(after=0.0)) == 5
    assert sorted(store.load_states(lazy=True)) == sorted(quiet)
    assert len(reads) == 1  # one statement for the index and the lazy load's quiet ids
    assert "CASE WHEN" in reads[0]  # the first read's own: no end is read
    for poll in range(3):
        changed = {"a1": marked(state("a1"), bytes([poll]) * 16, 9e9), "a2": state("a2")}
        commit({**quiet, **changed}, list(changed))
        assert store.quiet_index(after=0.0)[bytes([poll]) * 16] == "a1"
        assert "a2" not in store.quiet_index(after=0.0).values()
        store.load_states(lazy=True)
    assert len(reads) == 2  # the second poll read every mark, the next ones kept them
    other = Store.open(tmp_path / "state.db")
    other.commit_cycle(
        states={"a3": state("a3")},
        changed=["a3"],
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    other.close()
    assert "a3" not in store.quiet_index(after=0.0).values()
    assert len(reads) == 3
    store.close()


def test_reading_the_marks_leaves_the_collector_no_pass_to_make(tmp_path: Path) -> None:
    """The first read's rows (a tuple each, 50,000 in a big workspace) are freed while the
    collector is paused: kept until the read returns, they called for a pass of the collector
    that walked every one of them (~17 ms at 50,000 accounts)."""
    store = Store.open(tmp_path / "state.db")
    quiet = {f"a{i}": marked(state(f"a{i}"), i.to_bytes(16), 9e9) for i in range(5000)}
    store.commit_cycle(
        states=quiet,
        changed=list(quiet),
        removed=[],
        api=ApiHealth(),
        messages=[],
        record=record(),
    )
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    threshold = gc.get_threshold()
    gc.collect()
    # a pass at 4,000 new objects: the rows are 5,000 (of which CPython's tuple free list
    # keeps up to 2,000 without taking them off the count)
    gc.set_threshold(4000, *threshold[1:])
    gc.callbacks.append(count)
    try:
        index = store.quiet_index(after=0.0)
        assert sorted(store.load_states(lazy=True)) == sorted(quiet)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*threshold)
    store.close()
    assert len(index) == 5000
    assert passes == []


def test_the_page_cache_holds_what_a_big_poll_reads_then_writes(tmp_path: Path) -> None:
    """A 50,000-account poll reads its 500 changed states, then writes them across four
    B-trees (~1,300 pages, 5 MB): SQLite's default 2 MB cache had dropped them in between."""
    store = Store.open(tmp_path / "state.db")
    (size,) = store._db.execute("PRAGMA cache_size").fetchone()
    store.close()
    assert size == -CACHE_KB
    assert CACHE_KB * 1024 >= 1300 * 4096  # the pages of one such commit


def test_a_commit_by_another_connection_just_after_ours_leaves_no_stale_quiet_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (a cron `run --once` beside the daemon) commits between the daemon's
    COMMIT and what follows it: the daemon's marks must not be taken as including that
    commit, or an account the other process judged stays quiet here (found by a review)."""
    path = tmp_path / "state.db"
    daemon, other = Store.open(path), Store.open(path)
    record = CycleRecord(
        started_at=T0, finished_at=T0, outcome="ok", accounts=2, events=0, requests=1
    )

    def commit(store: Store, states: dict[str, AccountState]) -> None:
        store.commit_cycle(
            states=states,
            changed=list(states),
            removed=(),
            api=ApiHealth(),
            messages=(),
            record=record,
        )

    commit(daemon, {"k": marked(state("k"), b"L" * 16, 4e9), "j": state("j")})
    assert daemon.quiet_index(after=0) == {b"L" * 16: "k"}
    transaction = Store._transaction
    raced = []

    @contextlib.contextmanager
    def then_another(self: Store) -> Iterator[sqlite3.Connection]:
        with transaction(self) as db:
            yield db
        if self is daemon and not raced:  # just after the daemon's COMMIT
            raced.append(True)
            commit(other, {"k": state("k")})  # judged there: no mark any more

    monkeypatch.setattr(Store, "_transaction", then_another)
    commit(daemon, {"j": state("j")})
    monkeypatch.undo()

    assert raced
    assert Store.open(path).quiet_index(after=0) == {}
    assert daemon.quiet_index(after=0) == {}
