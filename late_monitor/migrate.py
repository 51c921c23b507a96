"""`late-monitor migrate [--check]`: what a schema upgrade would change, for either backend.

Every start migrates by itself (under a lock); this command says beforehand what that will do
(`--check`: exit 1 when something would change, 0 when the state is up to date), or does it.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from typing import Any

from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig
from late_monitor.errors import StateError
from late_monitor.store import _MIGRATIONS, APPLICATION_ID, SCHEMA_VERSION

EXAMPLE = """examples:
  late-monitor migrate --check     # exit 1 if this version would change the state's schema
  late-monitor migrate             # do it now (every start does it anyway, under a lock)"""


def add_parser(
    commands: Any,
    *,
    config_option: Callable[[argparse.ArgumentParser], None],
    run: Callable[[Callable[..., int]], Callable[[argparse.Namespace], int]],
) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="bring the state (SQLite file or PostgreSQL database) to this version's schema",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(migrate)
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only say what would change; exit 1 if anything would",
    )
    migrate.set_defaults(func=run(migrate_command))


def migrate_command(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    steps = pending(loaded)
    where = loaded.settings.state.url and _shown(loaded.settings.state.url)
    where = where or str(loaded.state_path)
    if not steps:
        print(f"{where}: up to date")
        return 0
    for step in steps:
        print(f"{where}: {step}")
    if args.check:
        return 1
    open_store(loaded).close()  # opening migrates, under the backend's lock
    print(f"{where}: migrated")
    return 0


def pending(loaded: LoadedConfig) -> list[str]:
    """The schema steps opening the state would take, one line each."""
    url = loaded.settings.state.url
    if url:
        import psycopg

        from late_monitor.pg_schema import conninfo, pending_migrations

        password = loaded.state_password.get_secret_value() if loaded.state_password else None
        try:
            with psycopg.connect(conninfo(url, password), autocommit=True) as conn:
                return pending_migrations(conn)
        except psycopg.Error as exc:
            raise StateError(f"state database {_shown(url)}: {exc}") from None
    path = loaded.state_path
    if not path.exists() or path.stat().st_size == 0:
        return [f"schema 0 -> {SCHEMA_VERSION}: a new state file"]
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StateError(f"{path} is not a late-monitor state file ({exc})") from None
    if app_id not in (0, APPLICATION_ID):
        raise StateError(f"{path} is another program's SQLite database")
    if version > SCHEMA_VERSION:
        raise StateError(f"{path} was written by a newer late-monitor (schema {version})")
    return [
        f"schema {step} -> {step + 1}: {len(_MIGRATIONS[step])} statements"
        for step in range(version, SCHEMA_VERSION)
    ]


def _shown(url: str) -> str:
    from late_monitor.pg_schema import shown

    return shown(url)
