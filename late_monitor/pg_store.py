"""The state in a shared PostgreSQL database, for two or more replicas: the same interface as
store.Store (storage.StateStore), plus leader election.

Leadership is a session-level advisory lock (one per schema) held on a connection of its own.
While it is ours, everything a cycle or delivery does (inside `holding`) runs on that very
connection, so a write can only commit while the session that holds the lock is alive: a
leader whose connection broke is fenced off at its next statement, before a standby can take
over (the lock dies with the session). Outside a cycle (status pages, webhook receipts, the
commands) the statements run on a small pool and need no lock.

Outbox delivery claims rows with `FOR UPDATE SKIP LOCKED` and a lease stamped with the
leader's session: rows leased by a session that no longer holds the lock (a leader killed
mid-send) are claimed again at once, so a delivery in flight is re-sent, never lost.

Schema migrations (pg_schema.MIGRATIONS, their own list, not SQLite's) run at open under a
transaction-level advisory lock, so two replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg_pool import ConnectionPool, PoolTimeout

from late_monitor.errors import LeadershipLost, NotLeader, StateError
from late_monitor.marks import IndexRows, MarkRows, Marks
from late_monitor.messages import (
    HELD,
    PENDING,
    RELEASED,
    SET_ASIDE,
    CycleRecord,
    OutboxRow,
    PlannedMessage,
)
from late_monitor.pg_schema import (
    CONNECT_TIMEOUT,
    LEADER_KEY,
    SCHEMA_VERSION,
    conninfo,
    migrate,
    shown,
)
from late_monitor.quiet import HeldMessage, summary
from late_monitor.silences import Ack, Silence
from late_monitor.state import DEFAULT_WORKSPACE, AccountState, ApiHealth
from late_monitor.state_views import StoredStates
from late_monitor.store import (
    SETTLED_META,
    Cache,
    _condition,
    _decode_state,
    _encode_entries,
    _outbox_row,
    _recached,
    _silence,
    _stored_row,
    cached_or_loaded,
)

log = structlog.get_logger("late_monitor.pg_store")

LEASE = 300.0  # seconds an outbox row claimed by a live leader stays out of others' reach
RETRY_LEAD = 0.5  # seconds between tries of the leader lock while `holding` waits

_OPEN = f"('{PENDING}', '{SET_ASIDE}')"
_HOLDER = (  # the backend pids that hold our leader lock now (at most one)
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND classid = {LEADER_KEY} AND objid = hashtext(current_schema())::oid "
    "AND objsubid = 2 AND granted"
)


class _Shared:
    """The connections and the leadership: one per process and database, shared by every
    workspace's view."""

    def __init__(self, url: str, pool: ConnectionPool, *, info: str, standby: bool) -> None:
        self.url = url
        self.info = info
        self.pool = pool
        self.standby = standby
        self.lead: psycopg.Connection[Any] | None = None  # holds the leader lock
        self.contender: psycopg.Connection[Any] | None = None  # tries it while we stand by
        self.holders = 0
        self.taking = asyncio.Lock()
        self.writers: dict[str, asyncio.Lock] = {}  # one per workspace, as store.Store's
        self.views: dict[str, PgStore] = {}


class PgStore:
    """The state in PostgreSQL, seen from one workspace (as store.Store). Open it with
    `PgStore.open(url, password=...)`; `scoped(name)` is another workspace's view.

    `standby`: a daemon's store. Its `holding` tries the leader lock once and raises NotLeader
    at once when another replica has it (the next poll tries again); a `run --once` waits up
    to `wait` seconds for it instead. Leadership, once taken, is kept until `close`.
    """

    def __init__(self, shared: _Shared, *, workspace: str = DEFAULT_WORKSPACE) -> None:
        self._s = shared
        self.workspace = workspace
        self._cache: Cache | None = None
        self._marks = Marks(self._read_marks, self._read_index)  # valid as the cache is
        shared.views.setdefault(workspace, self)

    def scoped(self, workspace: str) -> PgStore:
        """The view of workspace `workspace` (the same object each time)."""
        return self._s.views.get(workspace) or PgStore(self._s, workspace=workspace)

    def _key(self, key: str) -> str:
        """A meta key of this workspace: the implicit one's are the plain keys."""
        return key if self.workspace == DEFAULT_WORKSPACE else f"{self.workspace}:{key}"

    def workspaces(self) -> list[str]:
        """The workspaces the database holds accounts or cycles of."""
        rows = self._all(
            "SELECT workspace FROM accounts UNION SELECT workspace FROM cycles ORDER BY 1"
        )
        return [row[0] for row in rows]

    @classmethod
    def open(cls, url: str, *, password: str | None = None, standby: bool = False) -> PgStore:
        info = conninfo(url, password)
        try:
            with psycopg.connect(info, autocommit=True) as conn:
                migrated = migrate(conn)
        except psycopg.Error as exc:
            raise StateError(_describe(exc, url)) from None
        if migrated:
            log.info("state_migrated", state=shown(url), schema=SCHEMA_VERSION)
        pool = ConnectionPool(
            info,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            timeout=CONNECT_TIMEOUT,
            name="late-monitor",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            pool.close()
            raise StateError(f"cannot connect to the state database {shown(url)}") from None
        return cls(_Shared(url, pool, info=info, standby=standby))

    @property
    def path(self) -> str:
        return shown(self._s.url)

    @property
    def leader(self) -> bool:
        return self._s.lead is not None and not self._s.lead.closed

    def close(self) -> None:
        if self._s.contender is not None:
            self._s.contender.close()
        if self._s.lead is not None:
            self._s.lead.close()  # the session ends: the lock is free for a standby
            self._s.lead = None
        self._s.pool.close()

    # -- leadership -----------------------------------------------------------------------

    async def _take_lead(self, wait: float) -> None:
        """Make sure we are the leader: check the session we hold the lock with, or try to
        take the lock (once on a standby, else until `wait` runs out)."""
        if self._s.lead is not None:
            try:
                self._s.lead.execute("SELECT 1")
                return
            except psycopg.Error:
                self._lose("the leader connection broke")
        deadline = time.monotonic() + wait
        while True:
            if self._try_lock():
                return
            if self._s.standby or time.monotonic() >= deadline:
                raise NotLeader(
                    f"another late-monitor is the leader on {self.path}"
                    + ("" if self._s.standby else f"; gave up after {wait:g}s")
                )
            await asyncio.sleep(RETRY_LEAD)

    def _try_lock(self) -> bool:
        """One try at the leader lock, on the connection kept for trying (a standby tries
        every poll: it does not open a connection each time)."""
        conn = self._s.contender
        try:
            if conn is None or conn.closed:
                conn = self._s.contender = psycopg.connect(self._s.info, autocommit=True)
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (LEADER_KEY,)
            ).fetchone()
            taken = bool(row and row[0])
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            self._s.contender = None
            raise StateError(_describe(exc, self._s.url)) from None
        if not taken:
            return False
        self._s.contender = None
        self._s.lead = conn
        log.info("leader_elected", state=self.path)
        return True

    def _lose(self, why: str) -> LeadershipLost:
        if self._s.lead is not None:
            with contextlib.suppress(psycopg.Error):
                self._s.lead.close()
            self._s.lead = None
            log.error("leadership_lost", reason=why, state=self.path)
        self._cache = None
        return LeadershipLost(f"no longer the leader on {self.path}: {why}")

    @contextlib.asynccontextmanager
    async def holding(self, wait: float) -> AsyncIterator[None]:
        """Leadership, for a cycle or a delivery: everything inside runs on the session that
        holds the leader lock (fenced)."""
        async with self._s.taking:
            if self._s.holders == 0:
                await self._take_lead(wait)
            self._s.holders += 1
        try:
            yield
        finally:
            self._s.holders -= 1

    @contextlib.asynccontextmanager
    async def writing(self, wait: float) -> AsyncIterator[None]:
        """The leader's session and this workspace's one writer: a workspace's slow delivery
        must not hold back another's commit (as store.Store.writing)."""
        writer = self._s.writers.setdefault(self.workspace, asyncio.Lock())
        async with self.holding(wait), writer:
            yield

    # -- connections ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """The leader session inside `holding` (an error there is lost leadership, not a
        write elsewhere), else a pooled connection."""
        if self._s.holders > 0 or self._s.lead is not None:
            conn = self._s.lead
            if conn is None or conn.closed:
                raise self._lose("the leader connection is closed")
            try:
                yield conn
            except psycopg.OperationalError as exc:
                if conn.broken or conn.closed:
                    raise self._lose(f"the leader connection broke ({exc})") from None
                raise StateError(_describe(exc, self._s.url)) from None
            except psycopg.Error as exc:
                raise StateError(_describe(exc, self._s.url)) from None
            return
        try:
            with self._s.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StateError(f"cannot connect to the state database {self.path}") from None
        except psycopg.Error as exc:
            raise StateError(_describe(exc, self._s.url)) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._conn() as conn, conn.transaction():
            yield conn

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._conn() as conn:
            cursor = conn.execute(sql, params)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _write_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if not params:
            return
        with self._transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(sql, params)

    # -- states and meta ------------------------------------------------------------------

    def data_version(self) -> int:
        """Bumped by every commit of states: tells a cache it is stale."""
        row = self._one("SELECT value FROM meta WHERE key = 'states_version'")
        return int(row[0]) if row else 0

    def load_states(self, *, lazy: bool = False) -> Mapping[str, AccountState]:
        """store.Store.load_states."""
        self._cache = cached_or_loaded(
            self._cache, self.data_version(), lazy, self._load_lazy, self._load_all
        )
        return self._cache[1]

    def _load_lazy(self, version: int) -> StoredStates:
        quiet = self._marks.quiet_ids(version)
        return StoredStates(
            self._decode(
                "SELECT data, listed, quiet_until FROM accounts "
                "WHERE workspace = %s AND quiet_until IS NULL",
                (self.workspace,),
            ),
            quiet,
            self._fetch_states,
        )

    def _read_marks(self) -> MarkRows:
        return self._all(
            "SELECT account_id, listed, quiet_until FROM accounts "
            "WHERE workspace = %s AND quiet_until IS NOT NULL",
            (self.workspace,),
        )

    def _read_index(self, after: float) -> IndexRows:
        return self._all(
            "SELECT CASE WHEN quiet_until > %s THEN listed END, account_id FROM accounts "
            "WHERE workspace = %s AND quiet_until IS NOT NULL",
            (after, self.workspace),
        )

    def _load_all(self) -> dict[str, AccountState]:
        return self._decode(
            "SELECT data, listed, quiet_until FROM accounts WHERE workspace = %s",
            (self.workspace,),
        )

    def _decode(self, sql: str, params: Sequence[Any]) -> dict[str, AccountState]:
        decoded = (_decode_state(*row) for row in self._all(sql, params))
        return {state.account_id: state for state in decoded}

    def _fetch_states(self, account_ids: Sequence[str]) -> dict[str, AccountState]:
        return self._decode(
            "SELECT data, listed, quiet_until FROM accounts "
            "WHERE workspace = %s AND account_id = ANY(%s)",
            (self.workspace, list(account_ids)),
        )

    def quiet_index(self, *, after: float) -> dict[bytes, str]:
        """store.Store.quiet_index."""
        return self._marks.index(self.data_version(), after=after)

    def oldest_detail(self, count: int, *, skip: Collection[str] = ()) -> list[str]:
        """store.Store.oldest_detail."""
        if count <= 0:
            return []
        # the times read from the JSON's text, not through jsonb, which refuses a whole row
        # for a NUL (`\u0000`) in any of its text (a name from Late)
        detail_at, since = _json_text("detail_at"), _json_text("since")
        rows = self._all(
            f"SELECT account_id FROM accounts WHERE workspace = %s ORDER BY "
            f'{detail_at} IS NOT NULL, coalesce({detail_at}, {since}) COLLATE "C", '
            'account_id COLLATE "C" LIMIT %s',
            (self.workspace, count + len(skip)),
        )
        return [key for (key,) in rows if key not in skip][:count]

    def status_counts(self) -> dict[tuple[str, str], int]:
        """store.Store.status_counts."""
        rows = self._all(
            "SELECT status, platform, count(*) FROM accounts WHERE workspace = %s "
            "GROUP BY status, platform",
            (self.workspace,),
        )
        return {(status, platform): count for status, platform, count in rows}

    def load_api_health(self) -> ApiHealth:
        row = self._one("SELECT value FROM meta WHERE key = %s", (self._key("api"),))
        return ApiHealth(**json.loads(row[0])) if row else ApiHealth()

    def read_meta(self, key: str) -> Any:
        row = self._one("SELECT value FROM meta WHERE key = %s", (self._key(key),))
        return json.loads(row[0]) if row else None

    def write_meta(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self._key(key), json.dumps(value)),
            )

    def meta_setdefault(self, key: str, value: Any) -> Any:
        found = self.read_meta(key)
        if found is not None:
            return found
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (self._key(key), json.dumps(value)),
            )
        return self.read_meta(key)

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
        """store.Store.commit_cycle, in one transaction on the leader's session."""
        now = record.finished_at.timestamp()
        removed = frozenset(removed)
        workspace = self.workspace
        changed = [key for key in changed if key in states]
        upserts = [_stored_row(workspace, states[key]) for key in changed]
        try:
            with self._transaction() as conn, conn.cursor() as cur:
                if upserts:
                    cur.executemany(
                        "INSERT INTO accounts (workspace, account_id, status, platform, listed, "
                        "quiet_until, data) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (workspace, account_id) DO UPDATE SET "
                        "status = excluded.status, platform = excluded.platform, "
                        "listed = excluded.listed, quiet_until = excluded.quiet_until, "
                        "data = excluded.data",
                        upserts,
                    )
                if removed:
                    cur.execute(
                        "DELETE FROM accounts WHERE workspace = %s AND account_id = ANY(%s)",
                        (workspace, list(removed)),
                    )
                cur.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (self._key("api"), json.dumps(asdict(api))),
                )
                version_row = cur.execute(
                    "UPDATE meta SET value = (value::bigint + 1)::text "
                    "WHERE key = 'states_version' RETURNING value::bigint"
                ).fetchone()
                cycle_row = cur.execute(
                    "INSERT INTO cycles (started_at, finished_at, outcome, accounts, events, "
                    "messages, requests, error, workspace) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
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
                ).fetchone()
                assert cycle_row is not None
                cycle_id = int(cycle_row[0])
                for message in messages:
                    message_row = cur.execute(
                        "INSERT INTO messages (cycle_id, created_at, notify_type, title, body, "
                        "accounts, entries, workspace) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "RETURNING id",
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
                    ).fetchone()
                    assert message_row is not None
                    held = message.held_until
                    if message.destinations:
                        cur.executemany(
                            "INSERT INTO outbox (message_id, destination, label, "
                            "next_attempt_at, created_at, state, workspace) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [
                                (
                                    message_row[0],
                                    key,
                                    label,
                                    held or now,
                                    now,
                                    HELD if held else PENDING,
                                    workspace,
                                )
                                for key, label in message.destinations
                            ],
                        )
                if webhooks:
                    cur.executemany(
                        "UPDATE webhook_events SET processed_at = %s, outcome = %s WHERE id = %s",
                        [(now, outcome, hook_id) for hook_id, outcome in webhooks],
                    )
        except BaseException:
            self._cache = None
            self._marks.drop()
            raise
        if version_row is not None:
            version = int(version_row[0])
            self._cache = _recached(self._cache, version - 1, version, states, changed, removed)
            self._marks.committed(version - 1, version, states, changed, removed)
        else:
            self._cache = None
            self._marks.drop()
        return cycle_id

    def prune(self, *, before: datetime) -> int:
        cutoff = before.timestamp()
        with self._transaction() as conn:
            conn.execute(
                f"DELETE FROM outbox WHERE state NOT IN {_OPEN} AND finished_at < %s", (cutoff,)
            )
            conn.execute(
                "DELETE FROM messages m WHERE created_at < %s AND NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.message_id = m.id)",
                (cutoff,),
            )
            cursor = conn.execute(
                "DELETE FROM cycles c WHERE started_at < %s AND NOT EXISTS "
                "(SELECT 1 FROM messages m WHERE m.cycle_id = c.id)",
                (cutoff,),
            )
            return cursor.rowcount

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT id, started_at, finished_at, outcome, accounts, events, messages, requests, "
            "error FROM cycles WHERE workspace = %s ORDER BY id DESC LIMIT %s",
            (self.workspace, limit),
        )

    # -- webhooks -------------------------------------------------------------------------

    def record_webhook(self, hook_id: str, event: str, body: bytes, *, now: float) -> bool:
        """Kept before it is acknowledged, by any replica; False if its id is known."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO webhook_events (id, event, received_at, body) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (hook_id, event, now, body),
            )
            return cursor.rowcount == 1

    def unprocessed_webhooks(self, limit: int = 500) -> list[tuple[str, bytes]]:
        rows = self._all(
            "SELECT id, body FROM webhook_events WHERE processed_at IS NULL "
            "ORDER BY received_at, seq LIMIT %s",
            (limit,),
        )
        return [(hook_id, bytes(body)) for hook_id, body in rows]

    def settle_webhooks(self, outcomes: Sequence[tuple[str, str]], *, now: float) -> None:
        self._write_many(
            "UPDATE webhook_events SET processed_at = %s, outcome = %s WHERE id = %s",
            [(now, outcome, hook_id) for hook_id, outcome in outcomes],
        )

    def recent_webhooks(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT id, event, received_at, processed_at, outcome FROM webhook_events "
            "ORDER BY received_at DESC, seq DESC LIMIT %s",
            (limit,),
        )

    def prune_webhooks(self, *, before: float) -> int:
        with self._transaction() as conn:
            return conn.execute(
                "DELETE FROM webhook_events WHERE received_at < %s AND processed_at IS NOT NULL",
                (before,),
            ).rowcount

    # -- the outbox -----------------------------------------------------------------------

    def pending_deliveries(self) -> list[OutboxRow]:
        """The rows delivery still owns, oldest first per destination. The leader claims them
        (SKIP LOCKED, a lease in its session's name); rows leased by another live leader are
        left to it."""
        select = (
            "SELECT o.id, o.message_id, o.destination, o.label, o.attempts, o.created_at, "
            "o.next_attempt_at, m.notify_type, m.title, m.body, o.state, m.cycle_id, "
            "o.unanswered, m.entries, o.last_error FROM outbox o "
            f"JOIN messages m ON m.id = o.message_id WHERE o.state IN {_OPEN} "
            "AND o.workspace = %s "
        )
        if not self.leader:
            rows = self._all(select + "ORDER BY o.destination, o.id", (self.workspace,))
            return [_outbox_row(r) for r in rows]
        with self._transaction() as conn:
            rows = conn.execute(
                select + "AND (o.lease_owner IS NULL OR o.lease_owner = pg_backend_pid() "
                "OR o.lease_until < extract(epoch FROM clock_timestamp()) "
                f"OR o.lease_owner NOT IN ({_HOLDER})) "
                "ORDER BY o.destination, o.id FOR UPDATE OF o SKIP LOCKED",
                (self.workspace,),
            ).fetchall()
            if rows:
                conn.execute(
                    "UPDATE outbox SET lease_owner = pg_backend_pid(), "
                    "lease_until = extract(epoch FROM clock_timestamp()) + %s WHERE id = ANY(%s)",
                    (LEASE, [r[0] for r in rows]),
                )
        return [_outbox_row(r) for r in rows]

    def pending_count(self) -> int:
        row = self._one(
            f"SELECT count(*) FROM outbox WHERE state IN {_OPEN} AND workspace = %s",
            (self.workspace,),
        )
        return int(row[0]) if row else 0

    def next_attempt_at(self) -> float | None:
        row = self._one(
            f"SELECT min(next_attempt_at) FROM outbox WHERE state IN {_OPEN} AND workspace = %s",
            (self.workspace,),
        )
        return float(row[0]) if row and row[0] is not None else None

    def oldest_pending(self) -> float:
        row = self._one(
            f"SELECT min(created_at) FROM outbox WHERE state IN {_OPEN} AND workspace = %s",
            (self.workspace,),
        )
        return float(row[0]) if row and row[0] is not None else float("inf")

    def mark_delivered(self, *row_ids: int, now: float, note: str | None = None) -> None:
        self._write_many(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = %s, "
            "last_error = %s, lease_owner = NULL WHERE id = %s",
            [(now, note, row_id) for row_id in row_ids],
        )

    def mark_failed(
        self, *row_ids: int, error: str, next_attempt_at: float, unanswered: bool = False
    ) -> None:
        self._write_many(
            "UPDATE outbox SET state = 'pending', attempts = attempts + 1, last_error = %s, "
            "next_attempt_at = %s, unanswered = unanswered + %s WHERE id = %s",
            [(error, next_attempt_at, int(unanswered), row_id) for row_id in row_ids],
        )

    def mark_set_aside(self, *row_ids: int, error: str, until: float) -> None:
        self._write_many(
            "UPDATE outbox SET state = 'set_aside', attempts = attempts + 1, last_error = %s, "
            "next_attempt_at = %s WHERE id = %s",
            [(error, until, row_id) for row_id in row_ids],
        )

    def mark_dropped(self, row_id: int, *, reason: str, now: float) -> None:
        self._write_many(
            "UPDATE outbox SET state = 'dropped', last_error = %s, finished_at = %s, "
            "lease_owner = NULL WHERE id = %s",
            [(reason, now, row_id)],
        )

    def reroute(self, row_id: int, *, to: Sequence[tuple[str, str]], now: float) -> list[str]:
        added: list[str] = []
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT message_id, created_at FROM outbox WHERE id = %s", (row_id,)
            ).fetchone()
            assert found is not None
            message_id, created_at = found
            for key, label in to:
                inserted = conn.execute(
                    "INSERT INTO outbox (message_id, destination, label, next_attempt_at, "
                    "created_at, workspace) SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS "
                    "(SELECT 1 FROM outbox WHERE message_id = %s AND destination = %s)",
                    (message_id, key, label, now, created_at, self.workspace, message_id, key),
                ).rowcount
                if inserted:
                    added.append(label)
            note = (
                f"destination no longer configured; re-routed to {', '.join(added)}"
                if added
                else "destination no longer configured; its other destinations have it already"
            )
            conn.execute(
                "UPDATE outbox SET state = 'rerouted', last_error = %s, finished_at = %s "
                "WHERE id = %s",
                (note, now, row_id),
            )
        return added

    def outbox_rows(
        self, *, states: tuple[str, ...] = (PENDING, SET_ASIDE)
    ) -> list[dict[str, Any]]:
        return self._dicts(
            "SELECT o.id, o.message_id, o.label, o.state, o.attempts, o.next_attempt_at, "
            "o.last_error, o.finished_at, m.notify_type, m.title FROM outbox o "
            "JOIN messages m ON m.id = o.message_id WHERE o.state = ANY(%s) "
            "AND o.workspace = %s ORDER BY o.id",
            (list(states), self.workspace),
        )

    # -- operator control -----------------------------------------------------------------

    def add_silence(
        self,
        *,
        matchers: Mapping[str, Sequence[str]],
        reason: str,
        created_by: str,
        created_at: datetime,
        ends_at: datetime,
    ) -> int:
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO silences (matchers, reason, created_by, created_at, ends_at) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (
                    json.dumps({k: list(v) for k, v in matchers.items()}),
                    reason,
                    created_by,
                    created_at.timestamp(),
                    ends_at.timestamp(),
                ),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def load_silences(self) -> list[Silence]:
        rows = self._all(
            "SELECT id, matchers, reason, created_by, created_at, ends_at, expired_at, "
            "silenced, suppressed, settled FROM silences ORDER BY id"
        )
        silences = [_silence(row) for row in rows]
        if self.workspace == DEFAULT_WORKSPACE:
            return silences
        mine = set(self.read_meta(SETTLED_META) or ())
        return [replace(silence, settled=silence.id in mine) for silence in silences]

    def expire_silence(self, silence_id: int, *, now: datetime) -> Silence | None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE silences SET expired_at = %s WHERE id = %s AND expired_at IS NULL "
                "AND ends_at > %s",
                (now.timestamp(), silence_id, now.timestamp()),
            )
        return next((s for s in self.load_silences() if s.id == silence_id), None)

    def note_silenced(
        self, by_silence: Mapping[int, Sequence[str]], counts: Mapping[int, int]
    ) -> None:
        if not counts:
            return
        with self._transaction() as conn:
            for silence_id, count in counts.items():
                row = conn.execute(
                    "SELECT silenced FROM silences WHERE id = %s FOR UPDATE", (silence_id,)
                ).fetchone()
                if row is None:
                    continue
                known = list(json.loads(row[0]))
                known += [a for a in by_silence.get(silence_id, ()) if a not in known]
                conn.execute(
                    "UPDATE silences SET silenced = %s, suppressed = suppressed + %s WHERE id = %s",
                    (json.dumps(known), count, silence_id),
                )

    def settle_silences(self, ids: Sequence[int], *, prune_before: datetime) -> None:
        cutoff = prune_before.timestamp()
        if self.workspace != DEFAULT_WORKSPACE:
            self._settle_own(ids, cutoff)
            return
        old = "settled = 1 AND least(ends_at, coalesce(expired_at, ends_at)) < %s"
        if not ids and not self._one(f"SELECT 1 FROM silences WHERE {old} LIMIT 1", (cutoff,)):
            return
        with self._transaction() as conn:
            if ids:
                conn.execute("UPDATE silences SET settled = 1 WHERE id = ANY(%s)", (list(ids),))
            conn.execute(f"DELETE FROM silences WHERE {old}", (cutoff,))

    def _settle_own(self, ids: Sequence[int], cutoff: float) -> None:
        """A named workspace's settle_silences: the ids it acted upon kept in its meta."""
        old = "least(ends_at, coalesce(expired_at, ends_at)) < %s"
        if not ids and not self._one(f"SELECT 1 FROM silences WHERE {old} LIMIT 1", (cutoff,)):
            return  # the usual cycle: nothing to write
        mine = set(self.read_meta(SETTLED_META) or ()) | set(ids)
        with self._transaction() as conn:
            conn.execute(f"DELETE FROM silences WHERE {old}", (cutoff,))
            existing = {row[0] for row in conn.execute("SELECT id FROM silences").fetchall()}
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (self._key(SETTLED_META), json.dumps(sorted(mine & existing))),
            )

    def add_ack(self, ack: Ack) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO acks (account_id, condition, reason, created_by, created_at, "
                "workspace) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (workspace, account_id) DO UPDATE SET "
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
        rows = self._all(
            "SELECT account_id, condition, reason, created_by, created_at FROM acks "
            "WHERE workspace = %s",
            (self.workspace,),
        )
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
        ids = list(account_ids)
        if ids:
            with self._transaction() as conn:
                conn.execute(
                    "DELETE FROM acks WHERE workspace = %s AND account_id = ANY(%s)",
                    (self.workspace, ids),
                )

    def held_rows(self) -> list[dict[str, Any]]:
        return self.outbox_rows(states=(HELD,))

    def release_held(self, *, now: datetime) -> int:
        stamp = now.timestamp()
        due = f"FROM outbox WHERE state = '{HELD}' AND next_attempt_at <= %s AND workspace = %s"
        if not self._one(f"SELECT 1 {due} LIMIT 1", (stamp, self.workspace)):
            return 0
        by_destination: dict[str, list[tuple[Any, ...]]] = {}
        with self._transaction() as conn:  # rows locked: two processes never both release
            rows = conn.execute(
                "SELECT o.id, o.destination, o.label, m.created_at, m.notify_type, m.title, "
                "m.body FROM outbox o JOIN messages m ON m.id = o.message_id "
                f"WHERE o.state = '{HELD}' AND o.next_attempt_at <= %s AND o.workspace = %s "
                "ORDER BY o.id FOR UPDATE OF o",
                (stamp, self.workspace),
            ).fetchall()
            for row in rows:
                by_destination.setdefault(row[1], []).append(row)
            for key, group in by_destination.items():
                title, body, notify_type = summary(
                    [HeldMessage(r[3], r[4], r[5], r[6]) for r in group]
                )
                message = conn.execute(
                    "INSERT INTO messages (cycle_id, created_at, notify_type, title, body, "
                    "accounts, workspace) VALUES (NULL, %s, %s, %s, %s, '[]', %s) RETURNING id",
                    (stamp, notify_type, title, body, self.workspace),
                ).fetchone()
                assert message is not None
                conn.execute(
                    "INSERT INTO outbox (message_id, destination, label, next_attempt_at, "
                    "created_at, workspace) VALUES (%s, %s, %s, %s, %s, %s)",
                    (message[0], key, group[0][2], stamp, stamp, self.workspace),
                )
                with conn.cursor() as cur:
                    cur.executemany(
                        f"UPDATE outbox SET state = '{RELEASED}', finished_at = %s, "
                        "last_error = %s WHERE id = %s",
                        [(stamp, f"in summary message {message[0]}", r[0]) for r in group],
                    )
        return len(by_destination)


def _describe(exc: psycopg.Error, url: str) -> str:
    """A psycopg error as one line naming the database, never its password."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"state database {shown(url)}: {text}"


def _json_text(key: str) -> str:
    """SQL for the text of a string field of a state's JSON (NULL when it is null), as
    `_encode_state` writes it (a time: nothing in it to escape)."""
    return f'substring(data from \'"{key}":\\s*"([^"]*)"\')'
