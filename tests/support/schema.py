"""The state file's schema, compared with a fresh file's: what a migration must reach."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from late_monitor.store import SCHEMA_VERSION, Store


def assert_schema_is_fresh(path: Path, scratch: Path) -> None:
    """`path` (a migrated file) holds exactly the tables, indexes and version of a new file."""
    fresh = scratch / "fresh.db"
    Store.open(fresh).close()
    with sqlite3.connect(path) as old, sqlite3.connect(fresh) as new:
        schema = "SELECT name, sql FROM sqlite_master ORDER BY name"
        assert old.execute(schema).fetchall() == new.execute(schema).fetchall()
        assert old.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
