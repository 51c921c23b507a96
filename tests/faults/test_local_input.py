"""Bad local input: one clear line, the right exit code, and nothing existing overwritten."""

from __future__ import annotations

import asyncio
import os
import resource
import sqlite3
import sys
from pathlib import Path

from late_monitor.simulator import Simulator, make_accounts
from tests.support.process import run_cli


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("late-monitor:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


async def test_config_that_is_a_directory(base_env, tmp_path: Path) -> None:
    ran = await run_cli("--once", "--config", str(tmp_path), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert one_error_line(ran.stderr).endswith("is a directory, not a config file")


async def test_config_that_is_not_utf8(base_env, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xff\xfe[late]\n")
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "not UTF-8 text" in one_error_line(ran.stderr)


async def test_wrong_types_each_named(monitor_config, base_env, tmp_path: Path) -> None:
    config = monitor_config(monitor={"confirm_after": "two", "notify_recovery": "maybe"})
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "monitor.confirm_after" in ran.stderr
    assert "monitor.notify_recovery" in ran.stderr
    assert "Traceback" not in ran.stderr


async def test_state_path_that_cannot_be_created(monitor_config, base_env, tmp_path: Path) -> None:
    config = monitor_config(state={"path": "/proc/late-monitor/state.db"})
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "cannot create the state directory /proc/late-monitor" in one_error_line(ran.stderr)


async def test_another_programs_database_is_left_untouched(
    monitor_config, base_env, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE contacts (name TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada')")
    before = state.read_bytes()
    ran = await run_cli("--once", "--config", str(monitor_config()), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "another program's SQLite database" in one_error_line(ran.stderr)
    assert state.read_bytes() == before


async def test_random_bytes_as_state_are_left_untouched(
    monitor_config, base_env, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    junk = os.urandom(8192)
    state.write_bytes(junk)
    ran = await run_cli("--once", "--config", str(monitor_config()), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "not a late-monitor state file" in one_error_line(ran.stderr)
    assert state.read_bytes() == junk


async def test_full_disk_is_a_clear_error_and_keeps_the_file_sound(
    base_env, tmp_path: Path, monitor_config, sim: Simulator
) -> None:
    config = str(monitor_config())
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    for account in make_accounts(3000)[5:]:
        sim.accounts[account.account_id] = account
    limit = 96 * 1024  # bytes any one file may grow to: the state cannot take 3,000 accounts
    script = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['late-monitor', '--once', '--config', sys.argv[1]]; "
        "runpy.run_module('late_monitor', run_name='__main__')"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        config,
        env=base_env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    text = stderr.decode()
    assert process.returncode == 2, text
    assert "the disk is full" in one_error_line(text)
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM accounts").fetchone() == (5,)
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != limit  # only the child was limited
