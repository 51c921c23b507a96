"""Destinations that are down, refuse, or change: what each gets, and what is given up."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from late_monitor.simulator import Simulator
from tests.support.process import daemon, free_port, run_cli
from tests.support.sink import Sink
from tests.support.state import make_retries_due


async def test_down_then_500_destination_gets_one_up_to_date_digest_of_what_it_missed(
    sim: Simulator, sink: Sink, sink2: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(
        monitor_config(notify={"urls": [sink.url("HEALTHY1234"), sink2.url("BROKEN1234")]})
    )
    state = tmp_path / "state.db"

    async def cycle(expect: int) -> None:
        ran = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
        assert ran.code == expect, ran.output

    await cycle(0)
    port2 = sink2.port
    await sink2.stop()  # connection refused
    sim.break_account("acc_00001")
    await cycle(1)
    await sink2.start(port2)
    sink2.fail_status = 500
    make_retries_due(state)
    sim.break_account("acc_00002")
    await cycle(1)
    assert len(sink.received) == 2
    assert sink2.received == []
    with sqlite3.connect(state) as db:
        attempts = db.execute("SELECT attempts FROM outbox WHERE state = 'pending' ORDER BY id")
        assert [row[0] for row in attempts] == [2, 1]  # both held rows went as one try

    sink2.fail_status = None
    make_retries_due(state)
    sim.heal("acc_00001")
    await cycle(0)
    assert len(sink.received) == 3  # the healthy destination got each exactly once
    (digest,) = sink2.received
    assert digest["title"] == "Late: 1 need attention, 1 recovered (latest of 3 held messages)"
    lines = digest["message"].splitlines()
    assert "acc_00002" in lines[0]
    assert "healthy -> error" in lines[0]
    assert "acc_00001" in lines[-1]
    assert "error -> healthy" in lines[-1]
    assert "healthy -> error" not in "".join(line for line in lines if "acc_00001" in line)
    await cycle(0)
    assert len(sink2.received) == 1


async def test_a_destination_that_refuses_a_message_reports_it_once_and_takes_the_next(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    sink.fail_status = 401
    sim.break_account("acc_00001")
    refused = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    assert refused.code == 1
    assert "(set aside)" in refused.stderr
    set_aside = [line for line in refused.stdout.splitlines() if "notification_set_aside" in line]
    assert len(set_aside) == 1
    assert '"level": "warning"' in set_aside[0]
    sink.fail_status = None
    sim.break_account("acc_00002")
    ran = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert sink.posts == 2  # the refused message is not retried, nor in the way
    (message,) = sink.received
    assert "acc_00002" in message["message"]
    assert "acc_00001" not in message["message"]


async def test_fixing_a_notify_url_delivers_what_the_old_one_missed(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config(notify={"urls": [sink.url("OLDTOKEN001")]}))
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    sink.fail_status = 401  # the token was revoked
    sim.break_account("acc_00001")
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 1
    sink.fail_status = None
    config = str(monitor_config(notify={"urls": [sink.url("NEWTOKEN001")]}))
    ran = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    (message,) = sink.received
    assert message["path"] == "/hook/NEWTOKEN001"
    assert "acc_00001" in message["message"]
    assert "notification_rerouted" in ran.stdout


async def test_after_retry_for_a_message_is_dropped_logged_and_counted(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    port = free_port()
    config = monitor_config(
        # polls every second would spend the default 30 requests a minute within seconds (a
        # broken account's cycle: the list, its detail and the scheduled-post listing), and a
        # poll paced by the budget holds the retry back
        late={"max_requests_per_minute": 300},
        monitor={"interval": "1s"},
        notify={"urls": ["json://127.0.0.1:9/never/NEVERTOKEN1"], "retry_for": "2s"},
        http={"listen": f"127.0.0.1:{port}"},
    )
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        sim.break_account("acc_00004")
        await run.until(lambda: run.count("notification_failed") >= 1)
        failed_at = time.monotonic()
        await run.until(lambda: run.count("notification_dropped") == 1, limit=10)
        assert time.monotonic() - failed_at < 5
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as r,
        ):
            text = await r.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["late_monitor_notifications_dropped"].samples[0].value == 1
        assert families["late_monitor_outbox_pending"].samples[0].value == 0
        run.signal(signal.SIGINT)
        assert await run.wait() == 0
    dropped = next(line for line in run.lines if "notification_dropped" in line)
    assert "undelivered after 2s" in dropped
    assert "NEVERTOKEN1" not in "".join(run.lines)
