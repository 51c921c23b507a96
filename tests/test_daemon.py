"""The daemon as a real process: schedule, signals, reload, HTTP endpoints, sd_notify."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from late_monitor.simulator import Simulator
from tests.support.process import daemon, free_port, run_cli
from tests.support.sink import Sink

ROOT = Path(__file__).parent.parent


async def test_state_change_is_notified_within_two_intervals(
    sim: Simulator, sink: Sink, daemon_config, base_env, tmp_path: Path
) -> None:
    # polls every second spend more than the default 30 requests a minute (a broken account's
    # cycle: the list, its detail, the scheduled-post listing): the budget would set the pace
    config = daemon_config(late={"max_requests_per_minute": 300})
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        sim.break_account("acc_00000")  # the first message also loads Apprise's plugins
        await run.until(lambda: len(sink.received) == 1)
        sim.break_account("acc_00001")
        changed = time.monotonic()
        await run.until(lambda: len(sink.received) == 2)
        assert time.monotonic() - changed < 2.5  # two 1 s intervals, plus delivery
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    assert "acc_00001" in sink.received[1]["message"]
    assert run.count("daemon_stopped") == 1


async def test_sighup_applies_new_destinations_and_keeps_running_on_a_broken_config(
    sim: Simulator, sink: Sink, sink2: Sink, daemon_config, base_env, tmp_path: Path
) -> None:
    config = daemon_config()
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        daemon_config(notify={"urls": [sink2.url()]})
        run.signal(signal.SIGHUP)
        await run.until(lambda: run.count("config_reloaded") == 1)
        sim.break_account("acc_00002")
        await run.until(lambda: len(sink2.received) == 1)
        assert sink.received == []

        config.write_text("[monitor]\ninterval = 'sometimes'\n")
        run.signal(signal.SIGHUP)
        await run.until(lambda: run.count("config_reload_failed") == 1)
        polls = run.count("poll_completed")
        sim.heal("acc_00002")
        await run.until(lambda: len(sink2.received) == 2)  # still running on the old config
        await run.until(lambda: run.count("poll_completed") > polls)
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    failed = next(line for line in run.lines if "config_reload_failed" in line)
    assert "monitor.interval" in failed


async def test_sigterm_during_a_slow_cycle_commits_it_and_restart_sends_nothing_twice(
    sim: Simulator, sink: Sink, daemon_config, base_env, tmp_path: Path
) -> None:
    config = daemon_config(monitor={"interval": "1s"})
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        sim.break_account("acc_00003")
        sim.latency = 2.0
        async with asyncio.timeout(10):
            await sim.started(len(sim.authorizations) + 1)  # a cycle waits on the slow API
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    assert len(sink.received) == 1  # the in-flight cycle finished: committed and delivered
    with sqlite3.connect(tmp_path / "state.db") as db:
        status = db.execute("SELECT status FROM accounts WHERE account_id = 'acc_00003'")
        assert status.fetchone() == ("error",)
    sim.latency = 0
    async with daemon(config, base_env, tmp_path) as again:
        await again.until(lambda: again.count("poll_completed") >= 2)
        again.signal(signal.SIGTERM)
        assert await again.wait() == 0
    assert len(sink.received) == 1


async def test_two_sigterms_exit_at_once(
    sim: Simulator, daemon_config, base_env, tmp_path: Path
) -> None:
    async with daemon(daemon_config(), base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        sim.latency = 30
        async with asyncio.timeout(10):
            await sim.started(len(sim.authorizations) + 1)  # a cycle waits on the slow API
        run.signal(signal.SIGTERM)
        await run.until(lambda: run.count("shutdown_requested") == 1)
        run.signal(signal.SIGTERM)
        started = time.monotonic()
        assert await run.wait(10) == 1
        assert time.monotonic() - started < 5
    sim.latency = 0


async def test_healthz_flips_when_the_api_is_away_and_metrics_parse(
    sim: Simulator, daemon_config, base_env, tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(http={"listen": f"127.0.0.1:{port}"}, late={"timeout": "0.5s"})
    base = f"http://127.0.0.1:{port}"
    sim.set_raw("acc_00003", {"status": None})  # one entry Late sent with a null status
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, str]:
            async with http.get(base + path) as response:
                return response.status, await response.text()

        await run.until(lambda: run.count("poll_completed") >= 1)
        assert (await get("/healthz"))[0] == 200
        assert (await get("/readyz"))[0] == 200
        status, text = await get("/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["late_monitor_polls"].samples[0].value >= 1
        assert families["late_monitor_unreadable_accounts"].samples[0].value == 1
        assert run.count("accounts_unreadable") == 1  # told once, however many polls
        assert {s.labels["platform"] for s in families["late_monitor_accounts"].samples} >= {
            "twitter",
            "instagram",
        }
        status, body = await get("/status")
        assert status == 200
        assert "acc_00000" in body

        await sim.stop()
        deadline = time.monotonic() + 10
        while (await get("/healthz"))[0] == 200:
            assert time.monotonic() < deadline, "healthz never went 503"
            await asyncio.sleep(0.2)
        status, reason = await get("/healthz")
        assert status == 503
        assert "last successful poll" in reason
        await sim.start(port=sim.port)
        deadline = time.monotonic() + 10
        while (await get("/healthz"))[0] != 200:
            assert time.monotonic() < deadline, "healthz never came back"
            await asyncio.sleep(0.2)
        probe = await run_cli("probe", f"{base}/healthz", env=base_env, cwd=tmp_path)
        assert probe.code == 0
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0


async def test_sd_notify_messages_arrive_in_order(
    sim: Simulator, daemon_config, base_env, tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    env = {**base_env, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    received: list[str] = []
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def collect() -> None:
        while True:
            data = await loop.sock_recv(sock, 4096)
            received.extend(data.decode().split("\n"))
            if "STOPPING=1" in received:
                stopping.set()

    collector = loop.create_task(collect())
    try:
        config = daemon_config()
        async with daemon(config, env, tmp_path) as run:
            await run.until(lambda: any(m.startswith("STATUS=5 accounts") for m in received))
            await run.until(lambda: received.count("WATCHDOG=1") >= 3)  # every 0.2 s
            run.signal(signal.SIGHUP)
            await run.until(lambda: "RELOADING=1" in received)
            await run.until(lambda: received.count("READY=1") == 2)
            run.signal(signal.SIGTERM)
            assert await run.wait() == 0
            async with asyncio.timeout(5):
                await stopping.wait()  # the last datagrams, read here
    finally:
        collector.cancel()
        sock.close()
    kinds = [m if m.endswith("=1") else m.split("=")[0] for m in received if m]
    ready = [index for index, kind in enumerate(kinds) if kind == "READY=1"]
    assert len(ready) == 2
    reloading = kinds.index("RELOADING=1")
    assert ready[0] < kinds.index("WATCHDOG=1") < reloading < ready[1]
    assert kinds[reloading + 1] == "MONOTONIC_USEC"  # sent in the same datagram
    assert "STOPPING=1" in kinds[ready[1] :]
    assert any(re.match(r"STATUS=5 accounts: 5 healthy", m) for m in received)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_units_verify(tmp_path: Path) -> None:
    binary = shutil.which("late-monitor")
    assert binary is not None
    for unit in (ROOT / "systemd").iterdir():
        text = unit.read_text().replace("/usr/local/bin/late-monitor", binary)
        (tmp_path / unit.name).write_text(text)
    names = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(
        ["systemd-analyze", "verify", *names],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "late-monitor" in line]
    assert problems == []
