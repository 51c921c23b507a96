"""A throwaway PostgreSQL database per test run, and a schema of its own per test.

`LATE_MONITOR_TEST_PG` names a server where we may create databases (a conninfo or URL, e.g.
`postgresql:///postgres` over the local socket); `.ci/run` starts PostgreSQL and sets it.
Without it the PostgreSQL tests skip, all with the one reason below.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

ENV = "LATE_MONITOR_TEST_PG"
HOW = (
    f"need {ENV}=postgresql:///postgres (a server where this user may create "
    "databases; e.g. `pg_ctlcluster 15 main start` and `createuser -s $USER`); .ci/run sets it"
)


def server_url() -> str:
    url = os.environ.get(ENV, "")
    if not url:
        pytest.skip(f"PostgreSQL tests {HOW}")
    return url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database created for this run (this xdist worker) and dropped after it: its URL."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = server_url()
    name = f"late_monitor_test_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(url)
    parts["dbname"] = name
    yield make_conninfo("", **parts)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def url_for_schema(database: str, schema: str) -> str:
    """A postgresql:// URL that puts every table in `schema` (one per test: no leftovers)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    parts = conninfo_to_dict(database)
    user = f"{quote(str(parts['user']))}@" if parts.get("user") else ""
    host = quote(str(parts.get("host") or ""), safe="")
    port = f":{parts['port']}" if parts.get("port") else ""
    return (
        f"postgresql://{user}{host}{port}/{parts['dbname']}"
        f"?options={quote(f'-csearch_path={schema}', safe='')}"
    )


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A URL for this test alone (a fresh schema in the run's database)."""
    return url_for_schema(pg_database, f"t_{secrets.token_hex(6)}")
