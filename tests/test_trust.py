"""Never miss, never lie: bodies shaped as Late's schema allows, through `run --once`.

Each test drives the real command against the simulator and reads what reached a json://
sink on loopback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from late_monitor.simulator import DEFAULT_KEY, Fault, Simulator, make_accounts
from tests.support.config import write_config
from tests.support.process import daemon, run_cli, spawn_daemon
from tests.support.sink import Sink


def health_body(sim: Simulator, **edits: dict[str, Any]) -> str:
    """The simulator's own health list with some entries edited; a value None is sent as
    null, and a key given as `...` is left out."""
    entries = []
    for account in sim.accounts.values():
        entry = account.summary()
        for key, value in edits.get(account.account_id, {}).items():
            if value is ...:
                entry.pop(key, None)
            else:
                entry[key] = value
        entries.append(entry)
    return json.dumps({"summary": {"total": len(entries)}, "accounts": entries})


def serve(sim: Simulator, body: str, *, count: int = 1, status: int = 200) -> None:
    sim.inject(Fault(kind="status", status=status, body=body, path="/accounts/health", count=count))


async def once(config: Path, env: dict[str, str], cwd: Path) -> int:
    ran = await run_cli("run", "--once", "--config", str(config), env=env, cwd=cwd)
    assert "Traceback" not in ran.output, ran.output
    return ran.code


async def test_null_and_missing_fields_in_some_entries_do_not_fail_the_poll(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(monitor={"detail": "never"})
    assert await once(config, base_env, tmp_path) == 0  # all healthy: recorded silently
    sim.break_account("acc_00004")
    odd = health_body(
        sim,
        acc_00000={"status": None},
        acc_00001={"canPost": None, "displayName": None},
        acc_00002={"accountId": ...},
        acc_00004={"username": None, "issues": None, "platform": None},
    )
    serve(sim, odd, count=3)

    codes = [await once(config, base_env, tmp_path) for _ in range(3)]

    assert codes == [0, 0, 0]
    assert len(sink.received) == 1  # told once, not every poll
    message = sink.received[0]
    assert message["type"] == "failure"
    body = message["message"]
    assert "acc_00004" in body
    assert "healthy -> error" in body
    assert "Late listed accounts with fields late-monitor cannot read" in body
    assert "(acc_00000): status (kept as healthy)" in body
    assert "(acc_00001): canPost (kept as healthy)" in body
    assert "1 entries without an accountId (ignored)" in body
    assert "unreachable" not in json.dumps(sink.received)
    assert "removed" not in message["title"]  # the entry without an id is not "removed"


async def test_a_name_cut_in_the_middle_of_an_emoji_stops_no_poll(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    """JavaScript's `slice` can cut an emoji in two, and JSON carries the lone half as an
    escape (`\\ud83d`): pydantic's reader refused the whole body for it, and one account's
    name stopped the monitoring of every account. The half is shown as U+FFFD; the listing,
    the detail and the message go on."""
    config = monitor_config()
    assert await once(config, base_env, tmp_path) == 0
    sim.set("acc_00003", username="@zoe\ud83d")  # in the listing and in its detail
    sim.break_account("acc_00003")
    sim.break_account("acc_00004")

    assert await once(config, base_env, tmp_path) == 0

    assert len(sink.received) == 1
    body = sink.received[0]["message"]
    assert "@zoe\ufffd (acc_00003): healthy -> error" in body
    assert "(acc_00004): healthy -> error" in body
    assert "Token expired" in body  # the detail of acc_00003 was read too
    assert "cannot read" not in json.dumps(sink.received)


async def test_a_body_without_the_accounts_array_is_said_as_such_never_unreachable(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert await once(config, base_env, tmp_path) == 0
    serve(sim, '{"data": {"items": []}}', count=3)

    codes = [await once(config, base_env, tmp_path) for _ in range(3)]

    assert codes == [1, 1, 1]
    assert sink.titles() == ["Late: Late answered in a shape late-monitor cannot read"]
    assert "unreachable" not in json.dumps(sink.received)


async def test_an_unknown_status_after_an_error_is_a_warning_never_an_improvement(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(monitor={"detail": "never"})
    assert await once(config, base_env, tmp_path) == 0
    sim.set("acc_00001", status="error", issues=["Token expired"])
    assert await once(config, base_env, tmp_path) == 0
    sim.set("acc_00001", status="suspended")
    assert await once(config, base_env, tmp_path) == 0

    assert len(sink.received) == 2
    last = sink.received[1]
    assert last["type"] == "warning"
    assert "status changed to 'suspended' (not a status late-monitor knows)" in last["message"]
    assert "improved" not in last["title"]
    assert "recovered" not in last["title"]


async def test_an_empty_list_twice_removes_nobody(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert await once(config, base_env, tmp_path) == 0
    sim.inject(Fault(kind="empty", path="/accounts/health", count=2))

    codes = [await once(config, base_env, tmp_path) for _ in range(3)]

    assert codes == [0, 0, 0]
    assert sink.received == []  # vanished together: waited for, then back without a word


async def test_an_account_first_seen_in_error_is_not_called_healthy_to_error(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    sim.break_account("acc_00003", "Token expired")
    sim.set("acc_00003", recommendations=["Reconnect the account in Late"])
    config = monitor_config()
    assert await once(config, base_env, tmp_path) == 0

    [message] = sink.received
    assert "first seen in error" in message["message"]
    assert "healthy -> error" not in message["message"]
    assert "fix: Reconnect the account in Late" in message["message"]


async def test_a_token_late_refreshes_by_itself_warns_once_not_every_poll(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(monitor={"detail": "never"})
    assert await once(config, base_env, tmp_path) == 0
    now = datetime.now(UTC).replace(microsecond=0)
    for hours in (2, 3, 4, 5):  # a short-lived token, moved forward by Late each poll
        sim.set("acc_00002", token_expires_at=now + timedelta(hours=hours))
        assert await once(config, base_env, tmp_path) == 0

    assert len(sink.received) == 1  # the first short expiry is news; its refreshes are not
    assert "token expires in" in sink.received[0]["message"]


async def test_losing_analytics_access_is_a_warning(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(monitor={"detail": "never"})
    assert await once(config, base_env, tmp_path) == 0
    sim.set("acc_00001", can_fetch_analytics=False)
    assert await once(config, base_env, tmp_path) == 0

    [message] = sink.received
    assert message["type"] == "warning"
    assert "analytics can no longer be fetched" in message["message"]


async def test_a_redirect_to_another_host_is_not_followed_and_says_what_to_set(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    moved = Simulator(list(sim.accounts.values()))  # Late, "moved": a second host that answers
    await moved.start(host="127.0.0.2")
    try:
        config = monitor_config(monitor={"api_failure_after": 1})
        location = moved.base_url + "/accounts/health"
        sim.inject(
            Fault(status=301, body="", headers={"Location": location}, path="/accounts/health")
        )
        ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    finally:
        await moved.stop()

    assert ran.code == 1
    assert moved.requests == []  # the key never went there
    assert f"redirect to {location}" in ran.stderr
    assert f"set late.base_url to '{moved.base_url}'" in ran.stderr
    assert "rejects the API key" not in json.dumps(sink.received)


async def test_a_401_body_echoing_the_key_is_masked_in_the_message_and_the_state(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    echo = json.dumps({"error": f"Invalid API key {DEFAULT_KEY} (Bearer {DEFAULT_KEY})"})
    serve(sim, echo, status=401)

    assert await once(config, base_env, tmp_path) == 1

    assert sink.titles() == ["Late: the Late API rejects the API key"]
    assert DEFAULT_KEY not in json.dumps(sink.received)
    assert "Invalid API key ***" in sink.received[0]["message"]
    written = [tmp_path / "state.db", tmp_path / "state.db-wal"]  # the file and its log
    assert all(DEFAULT_KEY.encode() not in p.read_bytes() for p in written if p.exists())


async def test_narrowing_platforms_forgets_quietly_and_another_scope_is_refused(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    wide = monitor_config()
    assert await once(wide, base_env, tmp_path) == 0
    narrow = monitor_config(late={"platforms": ["twitter", "instagram"]})
    ran = await run_cli("run", "--once", "--config", str(narrow), env=base_env, cwd=tmp_path)

    assert ran.code == 0, ran.output
    assert sink.received == []  # no "removed ... no longer connected to Late"
    [line] = [json.loads(x) for x in ran.stdout.splitlines() if "scope_narrowed" in x]
    assert line["accounts_forgotten"] == 3  # linkedin, facebook, tiktok of the five

    wide = monitor_config()  # the first configuration again (the same file, rewritten)
    wide_again = await run_cli("run", "--once", "--config", str(wide), env=base_env, cwd=tmp_path)
    assert wide_again.code == 2
    [error] = wide_again.stderr.strip().splitlines()
    assert "was written for" in error
    assert "instagram, twitter" in error
    assert "Give it its own state.path" in error
    assert sink.titles() == ["Late: late-monitor stopped: its state file watches another scope"]
    again = await run_cli("run", "--once", "--config", str(wide), env=base_env, cwd=tmp_path)
    assert again.code == 2
    assert len(sink.received) == 1  # said once, not every run


async def test_a_state_file_of_another_late_api_is_refused(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert await once(config, base_env, tmp_path) == 0
    other = Simulator(list(sim.accounts.values()))
    await other.start(host="127.0.0.3")
    try:
        moved = monitor_config(late={"base_url": other.base_url})
        ran = await run_cli("run", "--once", "--config", str(moved), env=base_env, cwd=tmp_path)

        daemon = await spawn_daemon(
            moved, env=base_env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
        )
        output, _ = await asyncio.wait_for(daemon.communicate(), 30)
    finally:
        await other.stop()

    assert ran.code == 2
    assert "was written for 127.0.0.1" in ran.stderr
    assert daemon.returncode == 2  # the daemon refuses at start, not once per poll
    assert b"was written for 127.0.0.1" in output
    assert other.requests == []


async def test_a_mass_incident_is_announced_within_30s_and_a_kill_after_it_loses_nothing(
    sink: Sink, base_env, tmp_path: Path
) -> None:
    sim = Simulator(make_accounts(200))
    await sim.start()
    try:
        sections: dict[str, dict[str, Any]] = {
            "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY},  # default budget: 30/min
            "monitor": {"interval": "60s", "detail": "changed", "detail_every": "0"},
            "state": {"path": str(tmp_path / "state.db")},
            "notify": {"urls": [sink.url()]},
            "log": {"format": "json"},
        }
        config = write_config(tmp_path / "late-monitor.toml", sections)
        assert await once(config, base_env, tmp_path) == 0
        for account_id in sim.accounts:
            sim.break_account(account_id)

        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "late_monitor", "run", "--once", "--config", str(config),
            env=base_env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        async with asyncio.timeout(60):
            while b"notification_delivered" not in await process.stdout.readline():
                pass
        first_message_after = sink.received[0]["at"] - started
        process.kill()  # a cron timeout, while the remaining details are being fetched
        await process.wait()

        assert first_message_after < 30, f"first message after {first_message_after:.1f}s"
        [first] = sink.received
        assert first["title"] == "Late: 200 accounts need attention"
        assert sim.count("/health") - 1 - 1 < 200  # the list, then only a slice of details

        sections["monitor"]["interval"] = "10s"  # the next run's share: 4 detail calls
        write_config(config, sections)
        assert await once(config, base_env, tmp_path) == 0
    finally:
        await sim.stop()

    assert len(sink.received) == 2
    follow_up = sink.received[1]
    assert follow_up["title"] == "Late: details for 4 accounts"
    assert "fix: Reconnect the account in Late" in follow_up["message"]


async def test_a_200_body_echoing_the_key_is_masked_in_the_shape_error_and_the_state(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(monitor={"api_failure_after": 1})
    sim.inject(Fault(kind="echo_key", status=200, path="/accounts/health"))  # e.g. a proxy

    assert await once(config, base_env, tmp_path) == 1

    assert sink.titles() == ["Late: Late answered in a shape late-monitor cannot read"]
    assert DEFAULT_KEY not in json.dumps(sink.received)
    assert "Invalid API key: ***" in sink.received[0]["message"]
    written = [tmp_path / "state.db", tmp_path / "state.db-wal"]
    assert all(DEFAULT_KEY.encode() not in p.read_bytes() for p in written if p.exists())


async def test_a_daemon_whose_state_file_another_scope_took_says_so_once(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    wide = monitor_config(monitor={"interval": "1s"})
    async with daemon(wide, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        narrowed = {**base_env, "LATE_MONITOR_LATE__PLATFORMS": "twitter"}  # a one-off run
        once_narrowed = await run_cli("--once", "--config", str(wide), env=narrowed, cwd=tmp_path)
        assert once_narrowed.code == 0, once_narrowed.output
        await run.until(lambda: run.count("cycle_failed") >= 3)  # refused each poll since
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0

    assert sink.titles() == ["Late: late-monitor stopped: its state file watches another scope"]
    assert sink.received[0]["type"] == "failure"
    assert "Give it its own state.path" in sink.received[0]["message"]
