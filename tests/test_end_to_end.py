"""The real `late-monitor run --once` process against the simulator and json:// sinks."""

from __future__ import annotations

import json
import os
from pathlib import Path

from late_monitor.simulator import Fault, Simulator
from tests.support.process import run_cli
from tests.support.sink import Sink
from tests.support.state import make_retries_due


async def test_broken_account_is_notified_once_and_its_recovery_once(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    first = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert first.code == 0, first.output
    assert sink.received == []  # all healthy at first sight: recorded silently

    sim.break_account("acc_00001", "Token expired")
    broken = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert broken.code == 0, broken.output
    assert len(sink.received) == 1
    message = sink.received[0]
    assert message["type"] == "failure"
    assert message["title"] == "Late: 1 account needs attention"
    assert "acc_00001" in message["message"]
    assert "healthy -> error" in message["message"]
    assert "needs reconnect" in message["message"]
    assert "Token expired" in message["message"]

    quiet = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert quiet.code == 0, quiet.output
    assert len(sink.received) == 1

    sim.heal("acc_00001")
    healed = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert healed.code == 0, healed.output
    assert len(sink.received) == 2
    assert sink.received[1]["type"] == "success"
    assert sink.received[1]["title"] == "Late: 1 recovered"
    assert "acc_00001" in sink.received[1]["message"]


async def test_destination_down_gets_the_message_next_run_and_the_other_not_twice(
    sim: Simulator, sink: Sink, sink2: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(notify={"urls": [sink.url("AAAAAAAA1"), sink2.url("BBBBBBBB2")]})
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sink2.fail_status = 503
    sim.break_account("acc_00002")
    failed = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert failed.code == 1  # delivery failed: retried next time
    assert "delivery failed" in failed.stderr
    assert len(sink.received) == 1
    assert sink2.received == []

    sink2.fail_status = None
    make_retries_due(tmp_path / "state.db")
    retried = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert retried.code == 0, retried.output
    assert len(sink.received) == 1
    assert len(sink2.received) == 1
    assert sink2.received[0]["message"] == sink.received[0]["message"]


async def test_a_500_then_200_from_late_still_completes_the_cycle(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sim.break_account("acc_00003")
    sim.inject(Fault(kind="status", status=500, path="/accounts/health"))
    before = sim.count("/accounts/health")
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert sim.count("/accounts/health") - before == 2  # the 500, then the retry
    assert len(sink.received) == 1
    assert "acc_00003" in sink.received[0]["message"]


async def test_rejected_key_exits_1_and_alerts_once_not_every_run(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sim.api_key = "sk_rotated_key_0000"
    runs = [
        await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
        for _ in range(3)
    ]
    assert [r.code for r in runs] == [1, 1, 1]
    assert all("HTTP 401" in r.stderr for r in runs)
    assert len(sink.received) == 1
    assert sink.received[0]["type"] == "failure"
    assert "rejects the API key" in sink.received[0]["title"]
    assert sim.count("/accounts/health") == 1 + 3  # no retry storm on 401


async def test_run_once_logs_the_accounts_by_status_at_info(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    """`run --once` has no status line: it counts the accounts by status only for its
    `poll_completed` line, which the info level writes."""
    sim.break_account("acc_00001", "Token expired")
    ran = await run_cli(
        "run", "--once", "--config", str(monitor_config()), env=base_env, cwd=tmp_path
    )
    assert ran.code == 0, ran.output
    (done,) = [json.loads(line) for line in ran.output.splitlines() if '"poll_completed"' in line]
    assert (done["accounts"], done["status_healthy"], done["status_error"]) == (5, 4, 1)

    config = monitor_config(log={"level": "warning"})
    quiet = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert quiet.code == 0, quiet.output
    assert "poll_completed" not in quiet.output


async def test_run_once_into_a_pipe_whose_reader_has_gone_says_nothing_of_it(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    """`late-monitor run --once | head -1` on a busy poll: the logs' stdout breaks after the
    first line; the run still does its work, without a traceback for each record after."""
    sim.break_account("acc_00001", "Token expired")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line: every write breaks
    try:
        ran = await run_cli(
            "run",
            "--once",
            "--config",
            str(monitor_config()),
            env=base_env,
            cwd=tmp_path,
            stdout=write,
        )
    finally:
        os.close(write)
    assert ran.code == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "Logging error" not in ran.stderr
    assert [m["title"] for m in sink.received] == ["Late: 1 account needs attention"]
