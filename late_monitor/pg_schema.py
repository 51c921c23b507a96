"""The PostgreSQL schema: versioned migrations (their own list, not SQLite's), run under a lock,
and the connection string (the password never shown).

`late-monitor migrate --check` reads `pending_migrations`; `PgStore.open` runs `migrate`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from late_monitor.errors import StateError

# The advisory locks are (key, hashtext(current_schema())): one per schema, so that two
# deployments sharing a database in schemas of their own share neither leader nor migration.
LEADER_KEY = 0x4C4D4F4E  # "LMON"
MIGRATE_KEY = LEADER_KEY + 1
CONNECT_TIMEOUT = 10  # seconds

# version -> statements that bring a database of that version to the next one
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: the tables of SQLite schema 5, in PostgreSQL's types (times: epoch seconds)
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('states_version', '0')",
        """CREATE TABLE accounts (
            account_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
        """CREATE TABLE cycles (
            id BIGSERIAL PRIMARY KEY,
            started_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION NOT NULL,
            outcome TEXT NOT NULL,
            accounts INTEGER NOT NULL,
            events INTEGER NOT NULL,
            messages INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            error TEXT
        )""",
        """CREATE TABLE messages (
            id BIGSERIAL PRIMARY KEY,
            cycle_id BIGINT REFERENCES cycles(id),
            created_at DOUBLE PRECISION NOT NULL,
            notify_type TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            accounts TEXT NOT NULL,
            entries TEXT
        )""",
        """CREATE TABLE outbox (
            id BIGSERIAL PRIMARY KEY,
            message_id BIGINT NOT NULL REFERENCES messages(id),
            destination TEXT NOT NULL,
            label TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            finished_at DOUBLE PRECISION,
            unanswered INTEGER NOT NULL DEFAULT 0,
            lease_owner INTEGER,
            lease_until DOUBLE PRECISION
        )""",
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        "CREATE INDEX outbox_message ON outbox (message_id, destination)",
        """CREATE TABLE webhook_events (
            seq BIGSERIAL,
            id TEXT PRIMARY KEY,
            event TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            body BYTEA NOT NULL,
            processed_at DOUBLE PRECISION,
            outcome TEXT
        )""",
        "CREATE INDEX webhook_events_received ON webhook_events (received_at)",
        """CREATE TABLE silences (
            id BIGSERIAL PRIMARY KEY,
            matchers TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            ends_at DOUBLE PRECISION NOT NULL,
            expired_at DOUBLE PRECISION,
            silenced TEXT NOT NULL DEFAULT '[]',
            suppressed INTEGER NOT NULL DEFAULT 0,
            settled INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE acks (
            account_id TEXT PRIMARY KEY,
            condition TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
    ),
    # 1 -> 2: workspaces (SQLite schema 6): per-account rows keyed by (workspace, account id);
    # a cycle, a message and its outbox rows belong to one workspace; what was there is the
    # implicit workspace's, 'default'
    (
        "ALTER TABLE accounts ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE accounts DROP CONSTRAINT accounts_pkey",
        "ALTER TABLE accounts ADD PRIMARY KEY (workspace, account_id)",
        "ALTER TABLE acks ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE acks DROP CONSTRAINT acks_pkey",
        "ALTER TABLE acks ADD PRIMARY KEY (workspace, account_id)",
        "ALTER TABLE cycles ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE messages ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE outbox ADD COLUMN workspace TEXT NOT NULL DEFAULT 'default'",
    ),
    # 2 -> 3: each account's quiet mark and its platform (SQLite schema 7)
    (
        "ALTER TABLE accounts ADD COLUMN platform TEXT NOT NULL DEFAULT ''",
        "UPDATE accounts SET platform = coalesce(data::jsonb ->> 'platform', '')",
        "ALTER TABLE accounts ADD COLUMN listed BYTEA",
        "ALTER TABLE accounts ADD COLUMN quiet_until DOUBLE PRECISION",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def shown(url: str) -> str:
    """The URL without its password (and query), for logs and messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host') or ''}{port}/{parts.get('dbname') or ''}"


def conninfo(url: str, password: str | None) -> str:
    """The connection string: the URL, its password from the file or credential, keepalives
    tight enough that a dead peer is noticed in about 15 s."""
    extra: dict[str, Any] = {
        "application_name": "late-monitor",
        "connect_timeout": CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    if password:
        extra["password"] = password
    try:
        return make_conninfo(url, **extra)
    except psycopg.ProgrammingError as exc:
        raise StateError(f"state.url: not a PostgreSQL URL ({exc})") from None


def schema_version(conn: psycopg.Connection[Any]) -> int:
    exists = conn.execute("SELECT to_regclass('late_monitor_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
        if tables and tables[0]:
            raise StateError(
                "the database holds another program's tables, not late-monitor's; "
                "refusing to touch it (give late-monitor a database or schema of its own)"
            )
        return 0
    row = conn.execute("SELECT version FROM late_monitor_schema").fetchone()
    return int(row[0]) if row else 0


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """What `migrate` would do, one line per schema step (empty: up to date)."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the database was written by a newer late-monitor (schema {version}); "
            "upgrade late-monitor"
        )
    return [
        f"schema {step} -> {step + 1}: {len(MIGRATIONS[step])} statements"
        for step in range(version, SCHEMA_VERSION)
    ]


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema up to date under a lock (replicas starting together migrate once)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (MIGRATE_KEY,))
        version = schema_version(conn)  # again, under the lock
        if version > SCHEMA_VERSION:
            pending_migrations(conn)  # raises
        if version == 0:
            conn.execute("CREATE TABLE late_monitor_schema (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO late_monitor_schema VALUES (0)")
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement.encode())
        conn.execute("UPDATE late_monitor_schema SET version = %s", (SCHEMA_VERSION,))
    return SCHEMA_VERSION - version
