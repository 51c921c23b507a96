"""What only the PostgreSQL backend has: fencing, outbox leases, migrations, its configuration."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from late_monitor.errors import LeadershipLost, StateError
from late_monitor.messages import CycleRecord, PlannedMessage
from late_monitor.pg_schema import LEADER_KEY, SCHEMA_VERSION
from late_monitor.pg_store import PgStore
from late_monitor.simulator import DEFAULT_KEY, Simulator
from late_monitor.state import ApiHealth
from tests.support.config import write_config
from tests.support.process import run_cli
from tests.support.sink import Sink

pytestmark = pytest.mark.postgresql

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _commit(store: PgStore, *destinations: str) -> int:
    message = PlannedMessage("failure", "t", "b", tuple((d, d) for d in destinations))
    return store.commit_cycle(
        states={},
        changed=[],
        removed=[],
        api=ApiHealth(),
        messages=[message] if destinations else [],
        record=CycleRecord(T0, T0, "ok", 0, 0, 0),
    )


def _kill_leader_session(url: str) -> None:
    """What a network partition or a database restart does to the leader's session."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = %s AND objid = hashtext(current_schema())::oid AND granted",
            (LEADER_KEY,),
        )


async def test_a_leader_whose_session_died_commits_nothing_and_a_standby_takes_over(
    pg_url: str,
) -> None:
    leader, standby = PgStore.open(pg_url), PgStore.open(pg_url, standby=True)
    try:
        async with leader.writing(1.0):
            _commit(leader)
            _kill_leader_session(pg_url)
            with pytest.raises(LeadershipLost):
                _commit(leader, "k1")  # fenced: not written anywhere else either
            with pytest.raises(LeadershipLost):
                leader.pending_deliveries()
        assert not leader.leader
        async with standby.writing(0):
            assert standby.leader
            assert len(standby.recent_cycles()) == 1
            assert standby.pending_count() == 0
        with pytest.raises(StateError, match="another late-monitor is the leader"):
            async with leader.holding(0.2):
                pass
    finally:
        leader.close()
        standby.close()


async def test_a_standby_does_not_wait_for_the_lock(pg_url: str) -> None:
    leader, standby = PgStore.open(pg_url), PgStore.open(pg_url, standby=True)
    try:
        async with leader.holding(1.0):
            with pytest.raises(StateError, match="is the leader on postgresql://"):
                async with standby.holding(60.0):  # a standby tries once, whatever the wait
                    pass
        assert standby.record_webhook("h1", "webhook.test", b"{}", now=1.0)  # any replica
    finally:
        leader.close()
        standby.close()


async def test_rows_claimed_by_a_dead_leader_are_claimed_again_at_once(pg_url: str) -> None:
    first, second = PgStore.open(pg_url), PgStore.open(pg_url)
    try:
        async with first.writing(1.0):
            _commit(first, "k1", "k2")
            claimed = first.pending_deliveries()
            assert len(claimed) == 2
            with psycopg.connect(pg_url, autocommit=True) as conn:
                leased = conn.execute(
                    "SELECT count(*) FROM outbox WHERE lease_owner IS NOT NULL"
                ).fetchone()
            assert leased == (2,)
        first.close()  # killed mid-send: its session, and with it the lock, is gone
        async with second.writing(1.0):
            again = second.pending_deliveries()
        assert [r.id for r in again] == [r.id for r in claimed]  # re-sent, not lost
    finally:
        second.close()


def test_the_schema_is_versioned_and_another_programs_tables_are_refused(
    pg_database: str,
) -> None:
    from tests.support.pg import url_for_schema

    url = url_for_schema(pg_database, f"t_{secrets.token_hex(6)}")
    PgStore.open(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM late_monitor_schema").fetchone() == (
            SCHEMA_VERSION,
        )
    other = url_for_schema(pg_database, f"t_{secrets.token_hex(6)}")
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StateError, match="another program's tables"):
        PgStore.open(other)


def test_a_database_of_the_release_before_quiet_marks_is_migrated_in_place(
    pg_database: str,
) -> None:
    """Schema 2 (before quiet marks): its accounts gain their platform and no mark, so that
    the first poll judges every one of them and marks them."""
    from late_monitor.pg_schema import MIGRATIONS
    from late_monitor.store import _encode_state
    from tests.support.pg import url_for_schema
    from tests.support.state import full_state

    url = url_for_schema(pg_database, f"t_{secrets.token_hex(6)}")
    written = full_state("a1", platform="tiktok")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE late_monitor_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO late_monitor_schema VALUES (2)")
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement.encode())
        conn.execute(
            "INSERT INTO accounts (workspace, account_id, status, data) VALUES (%s, %s, %s, %s)",
            ("default", "a1", written.status, _encode_state(written)),
        )
    store = PgStore.open(url)
    try:
        assert store.load_states() == {"a1": written}
        assert store.load_states()["a1"].quiet_until is None
        assert store.status_counts() == {(written.status, "tiktok"): 1}
        assert store.quiet_index(after=0.0) == {}
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM late_monitor_schema").fetchone() == (
            SCHEMA_VERSION,
        )


async def test_migrate_check_says_what_would_change_for_either_backend(
    tmp_path: Path, pg_url: str, base_env: dict[str, str]
) -> None:
    for name, state in (("pg", {"url": pg_url}), ("sqlite", {"path": str(tmp_path / "s.db")})):
        path = write_config(tmp_path / f"{name}.toml", {"state": state})
        ran = await run_cli("migrate", "--check", "--config", str(path), env=base_env, cwd=tmp_path)
        assert ran.code == 1, ran.output
        assert "schema 0 -> " in ran.stdout
        ran = await run_cli("migrate", "--config", str(path), env=base_env, cwd=tmp_path)
        assert ran.code == 0, ran.output
        ran = await run_cli("migrate", "--check", "--config", str(path), env=base_env, cwd=tmp_path)
        assert (ran.code, ran.stdout.strip().endswith("up to date")) == (0, True), ran.output


async def test_a_password_comes_from_its_file_and_is_never_shown(
    tmp_path: Path, pg_database: str, base_env: dict[str, str], sim: Simulator, sink: Sink
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    role, password = f"lm_{secrets.token_hex(4)}", secrets.token_hex(16)
    dbname = conninfo_to_dict(pg_database)["dbname"]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        port = conn.info.port
    url = f"postgresql://{role}@127.0.0.1:{port}/{dbname}?options=-csearch_path%3D{role}"
    (tmp_path / "pw").write_text(password + "\n")
    base = {
        "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY},
        "notify": {"urls": [sink.url()]},
    }
    good = write_config(
        tmp_path / "good.toml",
        {**base, "state": {"url": url, "password_file": str(tmp_path / "pw")}},
    )
    ran = await run_cli("run", "--once", "--config", str(good), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert password not in ran.output
    (tmp_path / "pw").write_text("wrong-password\n")
    ran = await run_cli("run", "--once", "--config", str(good), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert f"postgresql://{role}@127.0.0.1:{port}/{dbname}" in ran.stderr
    assert "wrong-password" not in ran.output
    with_password = url.replace(f"{role}@", f"{role}:{password}@")
    bad = write_config(tmp_path / "bad.toml", {**base, "state": {"url": with_password}})
    ran = await run_cli("config", "check", "--config", str(bad), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "state.url" in ran.stderr
    assert "state.password_file" in ran.stderr
    assert password not in ran.output


async def test_an_unreachable_database_is_one_line_and_exit_2(
    tmp_path: Path, base_env: dict[str, str], pg_database: str
) -> None:
    path = write_config(
        tmp_path / "c.toml", {"state": {"url": "postgresql://nobody@127.0.0.1:1/nothing"}}
    )
    ran = await run_cli("status", "--config", str(path), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    [line] = ran.stderr.strip().splitlines()
    assert "postgresql://nobody@127.0.0.1:1/nothing" in line


async def test_deployments_in_schemas_of_their_own_each_have_a_leader(pg_database: str) -> None:
    from tests.support.pg import url_for_schema

    one = PgStore.open(url_for_schema(pg_database, f"t_{secrets.token_hex(6)}"))
    two = PgStore.open(url_for_schema(pg_database, f"t_{secrets.token_hex(6)}"), standby=True)
    try:
        async with one.holding(0), two.holding(0):
            assert one.leader
            assert two.leader
    finally:
        one.close()
        two.close()
