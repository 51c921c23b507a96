"""Which storage a configuration asks for: `[state] url` (PostgreSQL) or the SQLite file."""

from __future__ import annotations

from late_monitor.config import LoadedConfig
from late_monitor.storage import StateStore
from late_monitor.store import Store


def open_store(loaded: LoadedConfig, *, create: bool = True, standby: bool = False) -> StateStore:
    """The state for `loaded`. `standby`: a daemon, which stands by while another replica
    leads instead of waiting for the lock (PostgreSQL only; SQLite has no replicas)."""
    url = loaded.settings.state.url
    if not url:
        return Store.open(loaded.state_path, create=create)
    from late_monitor.pg_store import PgStore  # psycopg is loaded only when it is used

    password = loaded.state_password.get_secret_value() if loaded.state_password else None
    return PgStore.open(url, password=password, standby=standby)
