"""The state file: account states, the notification outbox and cycle history in SQLite.

A cycle's new states and the messages it produced are written in ONE transaction (a
transactional outbox); delivery claims outbox rows afterwards. A file that is not ours is
never written to.

Outbox states: `pending` (to send, oldest first per destination), `set_aside` (the destination
refused it for good, or it timed out twice; not tried again before `next_attempt_at` and never
in the way of the rows behind it), `held` (quiet hours: kept back, outside delivery's reach,
until `next_attempt_at`, when the held rows of a destination become ONE summary row and are
marked `released`), and the finished `delivered`, `dropped`, `rerouted` (its destination left
the configuration; the message went to the ones that take it now).

Silences and acks (operator control, see silences.py) are rows too, so that every process
sharing the file sees them.

Times: every column holds epoch seconds (REAL, UTC), so that the outbox's indexes, prune and
delivery compare numbers; schema 3 converted the ISO text that older files kept in `cycles` and
`messages`. An account's state is a JSON document, not columns: its datetimes stay ISO 8601
strings inside it (readable in the file, and what every file ever written holds). Nothing here
reads a clock: "now" always comes from the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic_core

from late_monitor.errors import StateBusy, StateError
from late_monitor.marks import IndexRows, MarkRows, Marks
from late_monitor.messages import (
    HELD,
    PENDING,
    RELEASED,
    SET_ASIDE,
    CycleRecord,
    Entry,
    OutboxRow,
    PlannedMessage,
)
from late_monitor.quiet import HeldMessage, summary
from late_monitor.silences import Ack, Silence
from late_monitor.state import DEFAULT_WORKSPACE, AccountState, ApiHealth, stamped
from late_monitor.state_views import StoredStates, committed

APPLICATION_ID = 0x4C4D4F4E  # "LMON": marks the file as late-monitor's
SCHEMA_VERSION = 8
BUSY_MS = 30_000  # how long a write waits for another process's transaction
INTAKE_BUSY_MS = 1_000  # ... when a webhook delivery is waiting for its answer
# SQLite's page cache (2 MB by default): a 50,000-account poll reads 500 states and then
# writes them over four B-trees, ~1,300 pages, which a 2 MB cache had dropped and read again
# (its first commit: ~100 -> ~88 ms of CPU); pages are cached as read, not all at once
CACHE_KB = 8_192

_OPEN = f"('{PENDING}', '{SET_ASIDE}')"  # rows delivery still owns

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE cycles (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    accounts INTEGER NOT NULL,
    events INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    error TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    cycle_id INTEGER REFERENCES cycles(id),
    created_at REAL NOT NULL,
    notify_type TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    accounts TEXT NOT NULL,
    entries TEXT
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    destination TEXT NOT NULL,
    label TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_error TEXT,
    finished_at REAL,
    unanswered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_message ON outbox (message_id, destination);
"""

# v4: Late's webhook deliveries, kept 7 days: the id is the dedupe key and replay guard, and
# a delivery is answered 2xx only once its row is here (processed_at NULL: still to act on)
_WEBHOOK_EVENTS = (
    """CREATE TABLE webhook_events (
        id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        received_at REAL NOT NULL,
        body BLOB NOT NULL,
        processed_at REAL,
        outcome TEXT
    )""",
    "CREATE INDEX webhook_events_received ON webhook_events (received_at)",
)

# v5: operator control (silences, acks); held quiet-hours messages are outbox rows in state 'held'.
_CONTROL_TABLES = (
    """CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        matchers TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        expired_at REAL,
        silenced TEXT NOT NULL DEFAULT '[]',
        suppressed INTEGER NOT NULL DEFAULT 0,
        settled INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE acks (
        account_id TEXT PRIMARY KEY,
        condition TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
)

# v6: workspaces (issue 15). Per-account rows are keyed by (workspace, account id), a cycle,
# a message and its outbox rows belong to one workspace; what a file of an earlier release
# holds is the implicit workspace's, 'default'. SQLite cannot change a primary key, so the two
# keyed tables are rebuilt. (Meta keys of a named workspace carry its name as a prefix.)
_WORKSPACES = (
    """CREATE TABLE accounts_v6 (
        workspace TEXT NOT NULL DEFAULT 'default',
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (workspace, account_id)
    )""",
    "INSERT INTO accounts_v6 (workspace, account_id, status, data) "
    "SELECT 'default', account_id, status, data FROM accounts",
    "DROP TABLE accounts",
    "ALTER TABLE accounts_v6 RENAME TO accounts",
    """CREATE TABLE acks_v6 (
        workspace TEXT NOT NULL DEFAULT 'default',
        account_id TEXT NOT NULL,
        condition TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (workspace, account_id)
    )""",
    "INSERT INTO acks_v6 (workspace, account_id, condition, reason, created_by, created_at) "
    "SELECT 'default', account_id, condition, reason, created_by, created_at FROM acks",
    "DROP TABLE acks",
    "ALTER TABLE acks_v6 RENAME TO acks",
    "ALTER TABLE cycles ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
    "ALTER TABLE messages ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
    "ALTER TABLE outbox ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
)

# v7: each account's quiet mark (see AccountState.listed), and its platform beside its status,
# so that a new process can leave quiet accounts unparsed and undecoded and still count them
_QUIET_MARKS = (
    "ALTER TABLE accounts ADD COLUMN platform TEXT NOT NULL DEFAULT ''",
    "UPDATE accounts SET platform = coalesce(json_extract(data, '$.platform'), '')",
    "ALTER TABLE accounts ADD COLUMN listed BLOB",
    "ALTER TABLE accounts ADD COLUMN quiet_until REAL",
    # the quiet accounts' index and ids read without the rows (~10x less to read), and the
    # others' rows found without a scan
    "CREATE INDEX accounts_quiet ON accounts (workspace, quiet_until, listed, account_id, "
    "status, platform) WHERE quiet_until IS NOT NULL",
    "CREATE INDEX accounts_unquiet ON accounts (workspace) WHERE quiet_until IS NULL",
    "CREATE INDEX accounts_status ON accounts (workspace, status, platform)",  # counted so
)

# v8: the marks' index keyed by account, not by quiet_until, and without status and platform:
# a store reads every mark of a workspace at once (marks.py), never a range of quiet_until,
# and a changed mark is rewritten in place (one page, not two) in a smaller index
_MARKS_INDEX = (
    "DROP INDEX accounts_quiet",
    "CREATE INDEX accounts_marks ON accounts (workspace, account_id, listed, quiet_until) "
    "WHERE quiet_until IS NOT NULL",
)

# schema version -> statements that bring a file of that version to the next one, in place
_MIGRATIONS = {
    # v2: a message's entries (one per account, for merging held messages into one digest)
    # and an outbox row's sends that got no answer (a slow destination is sent a message at
    # most twice)
    1: (
        "ALTER TABLE messages ADD COLUMN entries TEXT",
        "ALTER TABLE outbox ADD COLUMN unanswered INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX outbox_message ON outbox (message_id, destination)",
    ),
    # v3: one representation of time, epoch seconds, in every column. SQLite cannot change a
    # column's type, and a TEXT column would turn the numbers back into text, so the two tables
    # are rebuilt (foreign keys are off while migrating; see Store.open), converting with
    # epoch() (_migrate registers it).
    2: (
        """CREATE TABLE cycles_v3 (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL NOT NULL,
            outcome TEXT NOT NULL,
            accounts INTEGER NOT NULL,
            events INTEGER NOT NULL,
            messages INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            error TEXT
        )""",
        "INSERT INTO cycles_v3 SELECT id, epoch(started_at), epoch(finished_at), outcome, "
        "accounts, events, messages, requests, error FROM cycles",
        """CREATE TABLE messages_v3 (
            id INTEGER PRIMARY KEY,
            cycle_id INTEGER REFERENCES cycles(id),
            created_at REAL NOT NULL,
            notify_type TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            accounts TEXT NOT NULL,
            entries TEXT
        )""",
        "INSERT INTO messages_v3 SELECT id, cycle_id, epoch(created_at), notify_type, title, "
        "body, accounts, entries FROM messages",
        "DROP TABLE messages",
        "DROP TABLE cycles",
        "ALTER TABLE cycles_v3 RENAME TO cycles",
        "ALTER TABLE messages_v3 RENAME TO messages",
    ),
    3: _WEBHOOK_EVENTS,
    # v5: silences and acks (operator control)
    4: _CONTROL_TABLES,
    5: _WORKSPACES,
    6: _QUIET_MARKS,
    7: _MARKS_INDEX,
}


def _epoch(value: str | float | None) -> float | None:
    """An ISO 8601 time as epoch seconds (a naive one is UTC, as the cycle's clock is)."""
    if value is None or isinstance(value, int | float):
        return value
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


_STATE_FIELDS = tuple(field.name for field in fields(AccountState) if field.init)  # not the mark
_TIME_FIELDS = tuple(  # every datetime field, found from the type so that none is missed
    field.name for field in fields(AccountState) if "datetime" in str(field.type)
)


def _encode_entries(entries: Sequence[Entry]) -> str | None:
    if not entries:
        return None
    return json.dumps([[e.key, e.notify_type, e.text] for e in entries], separators=(",", ":"))


def _decode_entries(text: str | None) -> tuple[Entry, ...]:
    return tuple(Entry(*item) for item in json.loads(text)) if text else ()


# Fields most accounts never set (impact, reconnect links): left out of the JSON while unset, so
# 50,000 healthy accounts do not each carry them (decoding gives the defaults back).
_SPARSE = frozenset({"scheduled_posts", "next_post_at", "impact_at", "recovered_at"})


def _encode_state(state: AccountState) -> str:
    # not dataclasses.asdict: it deep-copies every value, 10x slower for a first poll of 50k
    data = {
        name: value
        for name in _STATE_FIELDS
        if (value := getattr(state, name)) is not None or name not in _SPARSE
    }
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    try:  # what json.dumps writes (non-ASCII as UTF-8), in a third of the time (~700 a poll)
        return pydantic_core.to_json(data, inf_nan_mode="constants").decode()
    except pydantic_core.PydanticSerializationError:  # a lone surrogate, which Late's bodies
        return json.dumps(data, separators=(",", ":"))  # no longer bring (models.validated)


def _decode_state(
    text: str, listed: bytes | None = None, quiet: float | None = None
) -> AccountState:
    data: dict[str, Any] = json.loads(text)
    for key in _TIME_FIELDS:
        if data.get(key):
            data[key] = datetime.fromisoformat(data[key])
    for key in ("issues", "token_warned", "missing_scopes"):
        data[key] = tuple(data.get(key) or ())
    if data.get("pending") is not None:
        data["pending"] = tuple(data["pending"])
    state = AccountState(**data)
    return state if listed is None else stamped(state, bytes(listed), quiet)


def _stored_row(workspace: str, state: AccountState) -> tuple[Any, ...]:
    """An accounts row: the state's JSON, and beside it what is read without decoding it."""
    return (
        workspace,
        state.account_id,
        state.status,
        state.platform,
        state.listed,
        state.quiet_until,
        _encode_state(state),
    )


_CHUNK = 500  # account ids per `IN (...)` query
# rules.due_for_detail's order in SQL: the times are ISO 8601 in UTC, which sort as text
_DETAIL_ORDER = (
    "json_extract(data, '$.detail_at') IS NOT NULL, "
    "coalesce(json_extract(data, '$.detail_at'), json_extract(data, '$.since')), account_id"
)

Cache = tuple[int, Mapping[str, AccountState]]  # (data version it is valid at, the states)


def cached_or_loaded(
    cache: Cache | None,
    version: int,
    lazy: bool,
    load_lazy: Callable[[int], Mapping[str, AccountState]],
    load_all: Callable[[], dict[str, AccountState]],
) -> Cache:
    """A store's states as `load_states(lazy=...)` gives them, and its cache after: the
    cache while it is valid (made whole if a lazy one is not wanted), else loaded. A lazy
    load is given `version`, read before it (its quiet marks are taken as valid at it),
    rather than asking the database for it a second time."""
    if cache is not None and cache[0] == version:
        if lazy or isinstance(cache[1], dict):
            return cache
        return version, dict(cache[1].items())  # the lazy ones fetched together
    return version, load_lazy(version) if lazy else load_all()


def _recached(
    cache: Cache | None,
    before: int,
    after: int,
    states: Mapping[str, AccountState],
    changed: Sequence[str],
    removed: Iterable[str],
) -> Cache | None:
    """A connection's states once it has committed `changed` and `removed`: the cache
    brought up to date if it was valid, or the full `states` given (a dict), else none (a
    lazy mapping is not decoded whole for it)."""
    if cache is None:
        return None
    if cache[0] == before:
        return after, committed(cache[1], {key: states[key] for key in changed}, removed)
    if isinstance(states, dict):
        return after, committed(states, {}, removed)
    return None


SETTLED_META = "silences_settled"  # a named workspace's silences whose end it acted upon


class _Locks:
    """The cycle lock (one per process and file, shared by every workspace's view of it)
    and each workspace's one writer: a workspace's slow delivery or detail calls, made
    while its writer is held, must not hold back another's commit."""

    def __init__(self) -> None:
        self.fd: int | None = None  # the cycle lock, while any task of ours holds it
        self.holders = 0
        self.taking = asyncio.Lock()
        self.writers: dict[str, asyncio.Lock] = {}


class Store:
    """One late-monitor state file, seen from one workspace. Open it with `Store.open(path)`
    (the implicit workspace, 'default'); `scoped(name)` is another workspace's view, on the
    same connection and locks. The outbox, cycles, states, acks and the API's health are a
    workspace's own; silences and webhook deliveries are the file's."""

    leader = True  # storage.StateStore: one file, no replicas; the cycle lock is per cycle

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        *,
        workspace: str = DEFAULT_WORKSPACE,
        locks: _Locks | None = None,
    ) -> None:
        self.path = path
        self.workspace = workspace
        self._db = connection
        self._locks = locks or _Locks()
        self._views: dict[str, Store] = {workspace: self}
        # The states as last loaded or committed by this connection, valid while no other
        # connection has committed (PRAGMA data_version): a daemon decodes them only once.
        self._cache: Cache | None = None
        self._marks = Marks(self._read_marks, self._read_index)  # under the same rule

    def scoped(self, workspace: str) -> Store:
        """The view of workspace `workspace` (the same object each time)."""
        view = self._views.get(workspace)
        if view is None:
            view = Store(self.path, self._db, workspace=workspace, locks=self._locks)
            view._views = self._views
            self._views[workspace] = view
        return view

    def _key(self, key: str) -> str:
        """A meta key of this workspace: the implicit one's are the file's plain keys."""
        return key if self.workspace == DEFAULT_WORKSPACE else f"{self.workspace}:{key}"

    def workspaces(self) -> list[str]:
        """The workspaces this file holds accounts or cycles of."""
        rows = self._db.execute(
            "SELECT workspace FROM accounts UNION SELECT workspace FROM cycles ORDER BY 1"
        ).fetchall()
        return [row[0] for row in rows]

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Store:
        """Open (and if new, create) a state file; refuse anything that is not ours."""
        path = path.expanduser()
        if path.is_dir():
            raise StateError(f"state path {path} is a directory, not a file")
        exists = path.exists() and path.stat().st_size > 0
        if not exists and not create:
            raise StateError(f"no state file at {path} (run `late-monitor run --once` first)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {path.parent}: {exc.strerror}"
            ) from None
        try:
            db = sqlite3.connect(
                path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state file {path}: {exc}") from None
        try:
            _check_ours(db, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA cache_size = -{CACHE_KB}")
            _migrate(db, path)  # before foreign keys are on: a migration may rebuild a table
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            db.close()
            raise StateError(_describe_sqlite(exc, path)) from None
        except StateError:
            db.close()
            raise
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    def try_lock(self) -> int | None:
        """Take the cycle lock without waiting: a file descriptor to release, or None if held.

        flock, not SQLite's own locking, so the lock covers the whole cycle (poll, evaluate,
        commit, deliver) and dies with the process, even on SIGKILL.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def release_lock(fd: int) -> None:
        os.close(fd)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateError(_describe_sqlite(exc, self.path)) from None
        try:
            yield self._db
        except BaseException:
            # SQLite may have rolled back already (a full disk): the first error is the news
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(_describe_sqlite(exc, self.path)) from None

    def load_states(self, *, lazy: bool = False) -> Mapping[str, AccountState]:
        """Every account's state; the caller must not change what it gets. `lazy`: the
        accounts marked quiet are decoded when first read (unless this connection holds
        every state decoded already)."""
        self._cache = cached_or_loaded(
            self._cache, self.data_version(), lazy, self._load_lazy, self._load_all
        )
        return self._cache[1]

    def _load_lazy(self, version: int) -> StoredStates:
        quiet = self._marks.quiet_ids(version)
        return StoredStates(
            self._decode(
                "SELECT data, listed, quiet_until FROM accounts INDEXED BY accounts_unquiet "
                "WHERE workspace = ? AND quiet_until IS NULL",
                (self.workspace,),
            ),
            quiet,
            self._fetch_states,
        )

    def _read_marks(self) -> MarkRows:
        return self._db.execute(
            "SELECT account_id, listed, quiet_until FROM accounts INDEXED BY accounts_marks "
            "WHERE workspace = ? AND quiet_until IS NOT NULL",
            (self.workspace,),
        )

    def _read_index(self, after: float) -> IndexRows:
        return self._db.execute(
            "SELECT CASE WHEN quiet_until > ? THEN listed END, account_id FROM accounts "
            "INDEXED BY accounts_marks WHERE workspace = ? AND quiet_until IS NOT NULL",
            (after, self.workspace),
        ).fetchall()

    def _load_all(self) -> dict[str, AccountState]:
        return self._decode(
            "SELECT data, listed, quiet_until FROM accounts NOT INDEXED WHERE workspace = ?",
            (self.workspace,),
        )

    # Reading most of a workspace's rows, a scan in the file's order is ~4x faster than going
    # through the primary key's index to each row (SQLite's choice for `workspace = ?`): every
    # query of many rows names the index it uses, or none.

    def _decode(self, sql: str, params: tuple[Any, ...]) -> dict[str, AccountState]:
        decoded = (_decode_state(*row) for row in self._db.execute(sql, params))
        return {state.account_id: state for state in decoded}

    def _fetch_states(self, account_ids: Sequence[str]) -> dict[str, AccountState]:
        states: dict[str, AccountState] = {}
        for start in range(0, len(account_ids), _CHUNK):
            chunk = account_ids[start : start + _CHUNK]
            states.update(
                self._decode(
                    "SELECT data, listed, quiet_until FROM accounts WHERE workspace = ? "
                    f"AND account_id IN ({','.join('?' * len(chunk))})",
                    (self.workspace, *chunk),
                )
            )
        return states

    def quiet_index(self, *, after: float) -> dict[bytes, str]:
        """The accounts marked quiet beyond `after` (epoch seconds), by their entry's
        fingerprint: a new dict, from the marks this connection holds while they are valid."""
        return self._marks.index(self.data_version(), after=after)

    def oldest_detail(self, count: int, *, skip: Collection[str] = ()) -> list[str]:
        """rules.due_for_detail over the stored states, without decoding them: the `count`
        accounts whose detail is oldest (never fetched first), `skip` left out."""
        if count <= 0:
            return []
        rows = self._db.execute(
            f"SELECT account_id FROM accounts NOT INDEXED WHERE workspace = ? "
            f"ORDER BY {_DETAIL_ORDER} LIMIT ?",
            (self.workspace, count + len(skip)),
        )
        return [key for (key,) in rows if key not in skip][:count]

    def status_counts(self) -> dict[tuple[str, str], int]:
        """How many accounts are in each (status, platform)."""
        return {
            (status, platform): count
            for status, platform, count in self._db.execute(
                "SELECT status, platform, count(*) FROM accounts INDEXED BY accounts_status "
                "WHERE workspace = ? GROUP BY status, platform",
                (self.workspace,),
            )
        }

    def load_api_health(self) -> ApiHealth:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (self._key("api"),)
        ).fetchone()
        return ApiHealth(**json.loads(row[0])) if row else ApiHealth()

    def read_meta(self, key: str) -> Any:
        """A JSON value kept beside the states (e.g. the scope the file was written for)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (self._key(key),)).fetchone()
        return json.loads(row[0]) if row else None

    def write_meta(self, key: str, value: Any) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (self._key(key), json.dumps(value)),
        )

    def meta_setdefault(self, key: str, value: Any) -> Any:
        """The meta value of `key`, storing `value` first if there is none: two processes
        that race to create it both get the one that was stored."""
        found = self.read_meta(key)
        if found is not None:
            return found  # no write (and no wait for another process's) once it exists
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            (self._key(key), json.dumps(value)),
        )
        return self.read_meta(key)

    def data_version(self) -> int:
        """Changes whenever another connection commits: tells a cache it is stale."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def commit_cycle(
        self,
        *,
        states: Mapping[str, AccountState],
        changed: Iterable[str],
        removed: Iterable[str],
        api: ApiHealth,
        messages: Sequence[PlannedMessage],
        record: CycleRecord,
        webhooks: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Write the cycle's changed states, its messages and its record atomically, and
        mark the webhook deliveries it acted on (id, outcome) as processed.

        The outbox rows are due at once, timed by the cycle's own clock (`record.finished_at`)
        so that delivery, which reads the same clock, ages them consistently.
        """
        now = record.finished_at.timestamp()
        removed = frozenset(removed)
        changed = [key for key in changed if key in states]
        try:
            with self._transaction() as db:
                # read under the write lock: no other connection can commit until ours has,
                # so the caches valid at `before` miss nothing but what this commit writes
                before = self.data_version()
                workspace = self.workspace
                self._write_states(db, states, changed, before)
                db.executemany(
                    "DELETE FROM accounts WHERE workspace = ? AND account_id = ?",
                    ((workspace, key) for key in removed),
                )
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (self._key("api"), json.dumps(asdict(api))),
                )
                cycle_id = db.execute(
                    "INSERT INTO cycles (started_at, finished_at, outcome, accounts, events, "
                    "messages, requests, error, workspace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.started_at.timestamp(),
                        now,
                        record.outcome,
                        record.accounts,
                        record.events,
                        len(messages),
                        record.requests,
                        record.error,
                        workspace,
                    ),
                ).lastrowid
                for message in messages:
                    message_id = db.execute(
                        "INSERT INTO messages (cycle_id, created_at, notify_type, title, body, "
                        "accounts, entries, workspace) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            cycle_id,
                            now,
                            message.notify_type,
                            message.title,
                            message.body,
                            json.dumps(message.accounts),
                            _encode_entries(message.entries),
                            workspace,
                        ),
                    ).lastrowid
                    held = message.held_until
                    db.executemany(
                        "INSERT INTO outbox (message_id, destination, label, next_attempt_at, "
                        "created_at, state, workspace) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            (
                                message_id,
                                key,
                                label,
                                held or now,
                                now,
                                HELD if held else PENDING,
                                workspace,
                            )
                            for key, label in message.destinations
                        ),
                    )
                db.executemany(
                    "UPDATE webhook_events SET processed_at = ?, outcome = ? WHERE id = ?",
                    ((now, outcome, hook_id) for hook_id, outcome in webhooks),
                )
        except sqlite3.Error as exc:
            self._cache = None
            self._marks.drop()
            raise StateError(_describe_sqlite(exc, self.path)) from None
        except BaseException:
            self._marks.drop()
            raise
        # SQLite's data_version moves for other connections' commits only: read again here
        # it would take one made since ours for one the caches had seen
        after = before
        self._cache = _recached(self._cache, before, after, states, changed, removed)
        self._marks.committed(before, after, states, changed, removed)
        assert cycle_id is not None
        return cycle_id

    def _write_states(
        self,
        db: sqlite3.Connection,
        states: Mapping[str, AccountState],
        changed: Sequence[str],
        before: int,
    ) -> None:
        """commit_cycle's upsert of the `changed` states, `_CHUNK` rows at a time (a first
        poll's 50,000 encoded rows are not all held at once).

        A row that keeps its status and platform (most do: a pending change, a detail, a
        new mark) is updated without setting them, so that SQLite leaves accounts_status
        alone: it rewrites the index of every column a statement sets, to the same value or
        not. The upsert then writes the others: new rows, and those whose status moved. An
        account the states cached at `before` do not hold is new: no update is tried."""
        cached = self._cache[1] if self._cache is not None and self._cache[0] == before else None
        for start in range(0, len(changed), _CHUNK):
            rows = [_stored_row(self.workspace, states[k]) for k in changed[start : start + _CHUNK]]
            db.executemany(
                "UPDATE accounts SET listed = ?5, quiet_until = ?6, data = ?7 "
                "WHERE workspace = ?1 AND account_id = ?2 AND status = ?3 AND platform = ?4",
                [row for row in rows if cached is None or row[1] in cached],
            )
            db.executemany(
                "INSERT INTO accounts (workspace, account_id, status, platform, listed, "
                "quiet_until, data) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(workspace, account_id) DO UPDATE SET "
                "status = excluded.status, platform = excluded.platform, "
                "listed = excluded.listed, quiet_until = excluded.quiet_until, "
                "data = excluded.data "
                "WHERE status IS NOT excluded.status OR platform IS NOT excluded.platform",
                rows,
            )

    def record_webhook(self, hook_id: str, event: str, body: bytes, *, now: float) -> bool:
        """Keep a verified delivery before it is acknowledged; False if its id is known.

        Waits at most a second for another process's write (the caller answers 503 and Late
        retries) instead of the usual 30: the event loop waits with it."""
        self._db.execute(f"PRAGMA busy_timeout = {INTAKE_BUSY_MS}")
        try:
            with self._transaction() as db:
                cursor = db.execute(
                    "INSERT INTO webhook_events (id, event, received_at, body) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO NOTHING",
                    (hook_id, event, now, body),
                )
        except sqlite3.Error as exc:
            raise StateError(_describe_sqlite(exc, self.path)) from None
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        return cursor.rowcount == 1

    def unprocessed_webhooks(self, limit: int = 500) -> list[tuple[str, bytes]]:
        """Deliveries recorded but not acted on yet (id, body), in the order they came."""
        rows = self._db.execute(
            "SELECT id, body FROM webhook_events WHERE processed_at IS NULL "
            "ORDER BY received_at, rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return [(hook_id, bytes(body)) for hook_id, body in rows]

    def settle_webhooks(self, outcomes: Sequence[tuple[str, str]], *, now: float) -> None:
        """Mark deliveries that change nothing (a test, an event we do not act on) processed."""
        self._write_many(
            "UPDATE webhook_events SET processed_at = ?, outcome = ? WHERE id = ?",
            [(now, outcome, hook_id) for hook_id, outcome in outcomes],
        )

    def recent_webhooks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last deliveries received, newest first; times in epoch seconds."""
        cursor = self._db.execute(
            "SELECT id, event, received_at, processed_at, outcome FROM webhook_events "
            "ORDER BY received_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def prune_webhooks(self, *, before: float) -> int:
        """Forget processed deliveries received before `before`: past Late's retry window
        their ids cannot come back."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM webhook_events WHERE received_at < ? AND processed_at IS NOT NULL",
                (before,),
            )
            return cursor.rowcount

    def pending_deliveries(self) -> list[OutboxRow]:
        """Every row delivery still owns (pending or set aside), oldest first per destination."""
        rows = self._db.execute(
            "SELECT o.id, o.message_id, o.destination, o.label, o.attempts, o.created_at, "
            "o.next_attempt_at, m.notify_type, m.title, m.body, o.state, m.cycle_id, "
            "o.unanswered, m.entries, o.last_error FROM outbox o "
            "JOIN messages m ON m.id = o.message_id "
            f"WHERE o.state IN {_OPEN} AND o.workspace = ? ORDER BY o.destination, o.id",
            (self.workspace,),
        ).fetchall()
        return [_outbox_row(row) for row in rows]

    def pending_count(self) -> int:
        """Rows not delivered yet, set aside ones included."""
        return int(
            self._db.execute(
                f"SELECT count(*) FROM outbox WHERE state IN {_OPEN} AND workspace = ?",
                (self.workspace,),
            ).fetchone()[0]
        )

    def next_attempt_at(self) -> float | None:
        row = self._db.execute(
            f"SELECT min(next_attempt_at) FROM outbox WHERE state IN {_OPEN} AND workspace = ?",
            (self.workspace,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def oldest_pending(self) -> float:
        row = self._db.execute(
            f"SELECT min(created_at) FROM outbox WHERE state IN {_OPEN} AND workspace = ?",
            (self.workspace,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else float("inf")

    def mark_delivered(self, *row_ids: int, now: float, note: str | None = None) -> None:
        """The rows were sent (in one message when several): all of them, atomically."""
        self._write_many(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = ?, "
            "last_error = ? WHERE id = ?",
            [(now, note, row_id) for row_id in row_ids],
        )

    def mark_failed(
        self, *row_ids: int, error: str, next_attempt_at: float, unanswered: bool = False
    ) -> None:
        """A transient failure: pending again, tried no earlier than `next_attempt_at`."""
        self._write_many(
            "UPDATE outbox SET state = 'pending', attempts = attempts + 1, last_error = ?, "
            "next_attempt_at = ?, unanswered = unanswered + ? WHERE id = ?",
            [(error, next_attempt_at, int(unanswered), row_id) for row_id in row_ids],
        )

    def mark_set_aside(self, *row_ids: int, error: str, until: float) -> None:
        """Refused for good: kept (and shown) but not tried before `until`, blocking nothing."""
        self._write_many(
            "UPDATE outbox SET state = 'set_aside', attempts = attempts + 1, last_error = ?, "
            "next_attempt_at = ? WHERE id = ?",
            [(error, until, row_id) for row_id in row_ids],
        )

    def mark_dropped(self, row_id: int, *, reason: str, now: float) -> None:
        self._write(
            "UPDATE outbox SET state = 'dropped', last_error = ?, finished_at = ? WHERE id = ?",
            (reason, now, row_id),
        )

    def reroute(self, row_id: int, *, to: Sequence[tuple[str, str]], now: float) -> list[str]:
        """Hand a row whose destination is gone to `to` (key, label), skipping destinations
        that already have (or had) this message; finish the old row. Returns the labels that
        got a new row. One transaction: a crash leaves either the old row or the new ones."""
        added: list[str] = []
        with self._transaction() as db:
            message_id, created_at = db.execute(
                "SELECT message_id, created_at FROM outbox WHERE id = ?", (row_id,)
            ).fetchone()
            for key, label in to:
                inserted = db.execute(
                    "INSERT INTO outbox (message_id, destination, label, next_attempt_at, "
                    "created_at, workspace) SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 "
                    "FROM outbox WHERE message_id = ? AND destination = ?)",
                    (message_id, key, label, now, created_at, self.workspace, message_id, key),
                ).rowcount
                if inserted:
                    added.append(label)
            note = (
                f"destination no longer configured; re-routed to {', '.join(added)}"
                if added
                else "destination no longer configured; its other destinations have it already"
            )
            db.execute(
                "UPDATE outbox SET state = 'rerouted', last_error = ?, finished_at = ? "
                "WHERE id = ?",
                (note, now, row_id),
            )
        return added

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._transaction() as db:
            db.execute(sql, params)

    def _write_many(self, sql: str, params: Sequence[tuple[Any, ...]]) -> None:
        with self._transaction() as db:
            db.executemany(sql, params)

    async def lock(self, wait: float) -> int:
        """Take the cycle lock, waiting up to `wait` seconds for another process to finish."""
        deadline = time.monotonic() + wait
        while (fd := self.try_lock()) is None:
            if time.monotonic() >= deadline:
                raise StateBusy(
                    f"another late-monitor is running a cycle on {self.path}; "
                    f"gave up after {wait:g}s"
                )
            await asyncio.sleep(0.1)
        return fd

    @contextlib.asynccontextmanager
    async def holding(self, wait: float) -> AsyncIterator[None]:
        """The cycle lock, shared by this process's tasks: a webhook processed while a cycle
        polls needs no second flock (which would wait for the cycle), another process does."""
        locks = self._locks
        async with locks.taking:
            if locks.holders == 0:
                locks.fd = await self.lock(wait)
            locks.holders += 1
        try:
            yield
        finally:
            locks.holders -= 1
            if locks.holders == 0 and locks.fd is not None:
                self.release_lock(locks.fd)
                locks.fd = None

    @contextlib.asynccontextmanager
    async def writing(self, wait: float) -> AsyncIterator[None]:
        """The cycle lock and this workspace's one writer in the process: load the states,
        decide, commit and deliver without another task's commit in between."""
        writer = self._locks.writers.setdefault(self.workspace, asyncio.Lock())
        async with self.holding(wait), writer:
            yield

    def prune(self, *, before: datetime) -> int:
        """Drop cycle history and finished messages older than `before` (the caller's clock)."""
        cutoff = before.timestamp()
        with self._transaction() as db:
            db.execute(
                f"DELETE FROM outbox WHERE state NOT IN {_OPEN} AND finished_at < ?", (cutoff,)
            )
            db.execute(
                "DELETE FROM messages WHERE created_at < ? AND id NOT IN "
                "(SELECT message_id FROM outbox)",
                (cutoff,),
            )
            cursor = db.execute(
                "DELETE FROM cycles WHERE started_at < ? AND id NOT IN "
                "(SELECT cycle_id FROM messages WHERE cycle_id IS NOT NULL)",
                (cutoff,),
            )
            return cursor.rowcount

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last cycles, newest first; `started_at` and `finished_at` in epoch seconds."""
        cursor = self._db.execute(
            "SELECT id, started_at, finished_at, outcome, accounts, events, messages, requests, "
            "error FROM cycles WHERE workspace = ? ORDER BY id DESC LIMIT ?",
            (self.workspace, limit),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def outbox_rows(
        self, *, states: tuple[str, ...] = (PENDING, SET_ASIDE)
    ) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        cursor = self._db.execute(
            "SELECT o.id, o.message_id, o.label, o.state, o.attempts, o.next_attempt_at, "
            "o.last_error, o.finished_at, m.notify_type, m.title FROM outbox o "
            f"JOIN messages m ON m.id = o.message_id WHERE o.state IN ({marks}) "
            "AND o.workspace = ? ORDER BY o.id",
            (*states, self.workspace),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- operator control: silences, acks, held messages ---------------------------------

    def add_silence(
        self,
        *,
        matchers: Mapping[str, Sequence[str]],
        reason: str,
        created_by: str,
        created_at: datetime,
        ends_at: datetime,
    ) -> int:
        with self._transaction() as db:
            silence_id = db.execute(
                "INSERT INTO silences (matchers, reason, created_by, created_at, ends_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    json.dumps({k: list(v) for k, v in matchers.items()}),
                    reason,
                    created_by,
                    created_at.timestamp(),
                    ends_at.timestamp(),
                ),
            ).lastrowid
        assert silence_id is not None
        return silence_id

    def load_silences(self) -> list[Silence]:
        """Every silence on record (active, future and ended ones), oldest first. Silences
        are the file's, but a named workspace settles their end for itself: each re-announces
        what a silence held back of its own accounts."""
        rows = self._db.execute(
            "SELECT id, matchers, reason, created_by, created_at, ends_at, expired_at, "
            "silenced, suppressed, settled FROM silences ORDER BY id"
        ).fetchall()
        silences = [_silence(row) for row in rows]
        if self.workspace == DEFAULT_WORKSPACE:
            return silences
        mine = set(self.read_meta(SETTLED_META) or ())
        return [replace(silence, settled=silence.id in mine) for silence in silences]

    def expire_silence(self, silence_id: int, *, now: datetime) -> Silence | None:
        """End a silence now (kept on record); None if there is no such silence."""
        with self._transaction() as db:
            db.execute(
                "UPDATE silences SET expired_at = ? WHERE id = ? AND expired_at IS NULL "
                "AND ends_at > ?",
                (now.timestamp(), silence_id, now.timestamp()),
            )
        return next((s for s in self.load_silences() if s.id == silence_id), None)

    def note_silenced(
        self, by_silence: Mapping[int, Sequence[str]], counts: Mapping[int, int]
    ) -> None:
        """Remember which accounts each silence held back (re-announced when it ends)."""
        if not counts:
            return
        with self._transaction() as db:
            for silence_id, count in counts.items():
                row = db.execute(
                    "SELECT silenced FROM silences WHERE id = ?", (silence_id,)
                ).fetchone()
                if row is None:
                    continue
                known = list(json.loads(row[0]))
                known += [a for a in by_silence.get(silence_id, ()) if a not in known]
                db.execute(
                    "UPDATE silences SET silenced = ?, suppressed = suppressed + ? WHERE id = ?",
                    (json.dumps(known), count, silence_id),
                )

    def settle_silences(self, ids: Sequence[int], *, prune_before: datetime) -> None:
        """Mark ended silences as acted upon; forget those that ended before `prune_before`."""
        cutoff = prune_before.timestamp()
        if self.workspace != DEFAULT_WORKSPACE:
            self._settle_own(ids, cutoff)
            return
        old = "settled = 1 AND min(ends_at, coalesce(expired_at, ends_at)) < ?"
        if self._nothing_to_settle(ids, old, cutoff):
            return
        with self._transaction() as db:
            db.executemany("UPDATE silences SET settled = 1 WHERE id = ?", ((i,) for i in ids))
            db.execute(f"DELETE FROM silences WHERE {old}", (cutoff,))

    def _nothing_to_settle(self, ids: Sequence[int], old: str, cutoff: float) -> bool:
        """The usual cycle: no silence acted upon, none old enough to forget (`old`)."""
        return (
            not ids
            and not self._db.execute(
                f"SELECT 1 FROM silences WHERE {old} LIMIT 1", (cutoff,)
            ).fetchone()
        )

    def _settle_own(self, ids: Sequence[int], cutoff: float) -> None:
        """A named workspace's settle_silences: the ids it acted upon kept in its meta."""
        old = "min(ends_at, coalesce(expired_at, ends_at)) < ?"
        if self._nothing_to_settle(ids, old, cutoff):
            return
        mine = set(self.read_meta(SETTLED_META) or ()) | set(ids)
        with self._transaction() as db:
            db.execute(f"DELETE FROM silences WHERE {old}", (cutoff,))
            existing = {row[0] for row in db.execute("SELECT id FROM silences")}
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (self._key(SETTLED_META), json.dumps(sorted(mine & existing))),
            )

    def add_ack(self, ack: Ack) -> None:
        self._write(
            "INSERT INTO acks (account_id, condition, reason, created_by, created_at, workspace) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(workspace, account_id) DO UPDATE SET "
            "condition = excluded.condition, reason = excluded.reason, "
            "created_by = excluded.created_by, created_at = excluded.created_at",
            (
                ack.account_id,
                json.dumps(list(ack.condition)),
                ack.reason,
                ack.created_by,
                ack.created_at.timestamp(),
                self.workspace,
            ),
        )

    def load_acks(self) -> dict[str, Ack]:
        rows = self._db.execute(
            "SELECT account_id, condition, reason, created_by, created_at FROM acks "
            "WHERE workspace = ?",
            (self.workspace,),
        ).fetchall()
        return {
            row[0]: Ack(
                account_id=row[0],
                condition=_condition(json.loads(row[1])),
                reason=row[2],
                created_by=row[3],
                created_at=datetime.fromtimestamp(row[4], UTC),
            )
            for row in rows
        }

    def remove_acks(self, account_ids: Iterable[str]) -> None:
        self._write_many(
            "DELETE FROM acks WHERE workspace = ? AND account_id = ?",
            [(self.workspace, a) for a in account_ids],
        )

    def held_rows(self) -> list[dict[str, Any]]:
        """Messages kept back by quiet hours, oldest first."""
        return self.outbox_rows(states=(HELD,))

    def release_held(self, *, now: datetime) -> int:
        """Held rows whose quiet hours are over become ONE pending summary per destination
        (the held rows are marked released in the same transaction). Returns the summaries."""
        stamp = now.timestamp()
        due = f"FROM outbox WHERE state = '{HELD}' AND next_attempt_at <= ? AND workspace = ?"
        if not self._db.execute(f"SELECT 1 {due} LIMIT 1", (stamp, self.workspace)).fetchone():
            return 0  # the usual case, without a write transaction
        by_destination: dict[str, list[tuple[Any, ...]]] = {}
        with self._transaction() as db:  # read again inside: two processes never both release
            rows = db.execute(
                "SELECT o.id, o.destination, o.label, m.created_at, m.notify_type, m.title, "
                "m.body FROM outbox o JOIN messages m ON m.id = o.message_id "
                f"WHERE o.state = '{HELD}' AND o.next_attempt_at <= ? AND o.workspace = ? "
                "ORDER BY o.id",
                (stamp, self.workspace),
            ).fetchall()
            for row in rows:
                by_destination.setdefault(row[1], []).append(row)
            for key, group in by_destination.items():
                title, body, notify_type = summary(
                    [HeldMessage(r[3], r[4], r[5], r[6]) for r in group]
                )
                message_id = db.execute(
                    "INSERT INTO messages (cycle_id, created_at, notify_type, title, body, "
                    "accounts, workspace) VALUES (NULL, ?, ?, ?, ?, '[]', ?)",
                    (stamp, notify_type, title, body, self.workspace),
                ).lastrowid
                db.execute(
                    "INSERT INTO outbox (message_id, destination, label, next_attempt_at, "
                    "created_at, workspace) VALUES (?, ?, ?, ?, ?, ?)",
                    (message_id, key, group[0][2], stamp, stamp, self.workspace),
                )
                db.executemany(
                    f"UPDATE outbox SET state = '{RELEASED}', finished_at = ?, last_error = ? "
                    "WHERE id = ?",
                    [(stamp, f"in summary message {message_id}", r[0]) for r in group],
                )
        return len(by_destination)


def _outbox_row(row: tuple[Any, ...]) -> OutboxRow:
    (id_, message_id, destination, label, attempts, created_at, next_at) = row[:7]
    notify_type, title, body, state, cycle_id, unanswered, entries, last_error = row[7:]
    return OutboxRow(
        id=id_,
        message_id=message_id,
        destination=destination,
        label=label,
        attempts=attempts,
        created_at=created_at,
        next_attempt_at=next_at,
        notify_type=notify_type,
        title=title,
        body=body,
        state=state,
        cycle_id=cycle_id,
        unanswered=unanswered,
        entries=_decode_entries(entries),
        last_error=last_error,
    )


def _condition(value: list[Any]) -> tuple[str, bool, bool]:
    status, needs_reconnect, can_post = value
    return str(status), bool(needs_reconnect), bool(can_post)


def _silence(row: tuple[Any, ...]) -> Silence:
    (id_, matchers, reason, created_by, created_at, ends_at, expired_at) = row[:7]
    silenced, suppressed, settled = row[7:]
    return Silence(
        id=id_,
        matchers={k: tuple(v) for k, v in json.loads(matchers).items()},
        reason=reason,
        created_by=created_by,
        created_at=datetime.fromtimestamp(created_at, UTC),
        ends_at=datetime.fromtimestamp(ends_at, UTC),
        expired_at=datetime.fromtimestamp(expired_at, UTC) if expired_at is not None else None,
        silenced=tuple(json.loads(silenced)),
        suppressed=suppressed,
        settled=bool(settled),
    )


def _check_ours(db: sqlite3.Connection, path: Path) -> None:
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path} is not a late-monitor state file ({exc})") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise StateError(
            f"{path} is another program's SQLite database, not a late-monitor state file; "
            "refusing to touch it"
        )


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path} was written by a newer late-monitor (schema {version}); upgrade late-monitor"
        )
    db.create_function("epoch", 1, _epoch, deterministic=True)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # again, under the lock
        if version == 0:
            for statement in (
                *_SCHEMA.split(";"),
                *_WEBHOOK_EVENTS,
                *_CONTROL_TABLES,
                *_WORKSPACES,
                *_QUIET_MARKS,
                *_MARKS_INDEX,
            ):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        else:
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _describe_sqlite(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "disk is full" in text or "disk I/O" in text:
        return f"cannot write the state file {path}: the disk is full or failing ({text})"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"cannot write the state file {path}: {text} (check the directory's permissions)"
    if "not a database" in text or "malformed" in text:
        return f"{path} is not a usable late-monitor state file ({text})"
    return f"state file {path}: {text}"
