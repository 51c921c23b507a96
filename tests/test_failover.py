"""Two real daemons on one PostgreSQL state: one leads (polls and delivers), one stands by; the
leader is SIGKILLed at random moments while accounts change, and the standby takes over."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from tests.support.config import write_config
from tests.support.process import Daemon, free_port, run_cli, spawn_daemon
from tests.support.sink import Sink

pytestmark = pytest.mark.postgresql

INTERVAL = 1.0
KILLS = 20


def _socket_inode(port: int) -> str | None:
    """The inode of the client socket bound to loopback:`port` (/proc/net/tcp, tcp6)."""
    for table_path, wanted in (
        ("/proc/net/tcp", f"0100007F:{port:04X}"),
        ("/proc/net/tcp6", f"0000000000000000FFFF00000100007F:{port:04X}"),
    ):
        with open(table_path) as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[1] == wanted and fields[9] != "0":
                    return fields[9]
    return None


def _owner(port: int, pids: list[int]) -> int | None:
    inode = _socket_inode(port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") == target:
                    return pid
            except OSError:
                continue
    return None


class WatchedSimulator(Simulator):
    """The simulator, noting which daemon process made each poll (the list call): the owner
    of the client socket, from /proc; failing that (seen once under a loaded full suite), the
    live daemon that last said it was elected."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pids: list[int] = []
        self.polls: list[tuple[float, int | None]] = []
        self.elected: Any = lambda: None
        self.by_log = 0

    async def _health(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        owner = _owner(peer[1], self.pids) if peer else None
        if owner is None:
            owner = self.elected()
            self.by_log += 1
        self.polls.append((time.time(), owner))
        return await super()._health(request)


async def _metric(port: int, name: str) -> float | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as answer,
        ):
            text = await answer.text()
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def _ready(port: int, limit: float) -> None:
    """Until the daemon on `port` answers /readyz 200 (a standby: it has tried the lock)."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as answer:
                    if answer.status == 200:
                        return
            assert time.monotonic() < deadline, f"the daemon on {port} is not ready"
            await asyncio.sleep(0.05)


async def _until(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g}s: {what}")
        await asyncio.sleep(0.02)


@pytest.mark.timeout(240)
async def test_killing_the_leader_20_times_loses_no_change_and_never_polls_twice(
    tmp_path: Path, pg_url: str, base_env: dict[str, str]
) -> None:
    rng = random.Random(int(os.environ.get("LATE_MONITOR_FAILOVER_SEED", "16")))
    sim = WatchedSimulator(make_accounts(2 * KILLS + 2))
    await sim.start()
    sink = Sink()
    await sink.start()
    daemons: dict[int, tuple[Daemon, int]] = {}  # pid -> (daemon, http port)

    def config(port: int) -> Path:
        return write_config(
            tmp_path / f"late-monitor-{port}.toml",
            {
                "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY, "timeout": "5s"},
                "monitor": {"interval": f"{INTERVAL:g}s", "detail": "never", "detail_every": "0"},
                "state": {"url": pg_url},
                "notify": {"urls": [sink.url()], "group": "account"},
                "http": {"listen": f"127.0.0.1:{port}"},
                "log": {"level": "info", "format": "json"},
            },
        )

    async def start() -> int:
        port = free_port()
        process = await spawn_daemon(
            config(port), env=base_env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
        )
        daemons[process.pid] = (Daemon(process), port)
        sim.pids.append(process.pid)
        return process.pid

    def elected() -> int | None:
        live = [
            (max(i for i, line in enumerate(d.lines) if "leader_elected" in line), pid)
            for pid, (d, _) in daemons.items()
            if d.process.returncode is None and any("leader_elected" in ln for ln in d.lines)
        ]
        return max(live)[1] if len(live) == 1 else None

    sim.elected = elected

    def leader() -> int | None:
        """The process that made the last poll, if it is alive."""
        if not sim.polls:
            return None
        pid = sim.polls[-1][1]
        return pid if pid in daemons and daemons[pid][0].process.returncode is None else None

    changes: list[tuple[str, str]] = []  # (account id, notify type the change is told with)

    def notified(account: str, kind: str) -> int:
        return sum(1 for m in sink.received if m["type"] == kind and account in m["message"])

    kills: list[tuple[float, int]] = []
    takeovers: list[float] = []
    try:
        await start()
        try:
            await _until(lambda: leader() is not None, 30, "a first leader polls")
        except AssertionError:
            print("".join(line for d, _ in daemons.values() for line in d.lines), sim.polls)
            raise
        await start()
        deadline = time.monotonic() + 10
        while True:  # both serve /metrics: one leads, one stands by
            metrics = [await _metric(port, "late_monitor_leader") for _, port in daemons.values()]
            if sorted(metrics, key=str) == [0.0, 1.0] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert sorted(metrics, key=str) == [0.0, 1.0]
        for round_ in range(KILLS):
            current = leader()
            assert current is not None
            account = f"acc_{round_:05d}"
            sim.break_account(account)
            changes.append((account, "failure"))
            if round_:
                sim.heal(f"acc_{round_ - 1:05d}")
                changes.append((f"acc_{round_ - 1:05d}", "success"))
            await asyncio.sleep(rng.uniform(0.0, 2.5 * INTERVAL))  # before, in or after a cycle
            daemons[current][0].process.send_signal(signal.SIGKILL)
            killed_at = time.time()
            kills.append((killed_at, current))
            await daemons[current][0].process.wait()
            standby = await start()  # a new standby: two daemons again
            await _until(
                lambda: sim.polls[-1][0] > killed_at and sim.polls[-1][1] != current,  # noqa: B023
                10 * INTERVAL,
                "another daemon takes over",
            )
            takeovers.append(next(t for t, pid in sim.polls if t > killed_at) - killed_at)
            # before the next round: a change undone before any cycle committed it was never
            # there to tell; one that was must reach the sink through whichever daemon leads
            await _until(
                lambda: all(notified(a, k) >= 1 for a, k in changes),
                10 * INTERVAL,
                f"every change is notified (round {round_})",
            )
            await _ready(daemons[standby][1], 30)  # the next kill finds a standby running
        await asyncio.sleep(2 * INTERVAL)  # anything sent twice has arrived by now
    finally:
        for daemon, _ in daemons.values():
            if daemon.process.returncode is None:
                daemon.process.send_signal(signal.SIGTERM)
        for daemon, _ in daemons.values():
            try:
                await daemon.wait(20)
            except TimeoutError:
                daemon.process.kill()
        await sink.stop()
        await sim.stop()

    # exactly one daemon polls at any time: each process's polls are one unbroken run, and a
    # run begins only after the process before it was killed
    runs: list[tuple[int | None, float, float]] = []
    for when, pid in sim.polls:
        if runs and runs[-1][0] == pid:
            runs[-1] = (pid, runs[-1][1], when)
        else:
            runs.append((pid, when, when))
    owners = [pid for pid, _, _ in runs]
    assert None not in owners, "a poll from no daemon we started"
    assert len(owners) == len(set(owners)), f"a daemon polled again after another: {owners}"
    died = {pid: when for when, pid in kills}
    for (before, _, _), (_, first, _) in itertools.pairwise(runs):
        assert before in died
        assert first > died[before], "a standby polled before the leader was gone"
    counts = {change: notified(*change) for change in changes}
    assert all(1 <= count <= 2 for count in counts.values()), counts
    assert max(takeovers) <= 3 * INTERVAL, takeovers
    print(  # the figures the README quotes: `pytest -s tests/test_failover.py`
        f"\nfailover: {KILLS} kills, {len(changes)} changes, "
        f"{sim.by_log} of {len(sim.polls)} polls attributed by log, "
        f"{sum(c == 2 for c in counts.values())} notified twice, takeover "
        f"median {sorted(takeovers)[len(takeovers) // 2]:.2f}s max {max(takeovers):.2f}s"
    )


async def test_run_once_waits_for_the_leader_and_gives_up(
    tmp_path: Path, pg_url: str, base_env: dict[str, str], sim: Simulator, sink: Sink
) -> None:
    """A cron `run --once` takes the same lock as the daemons: it never polls beside a leader."""
    from late_monitor.pg_store import PgStore

    path = write_config(
        tmp_path / "late-monitor.toml",
        {
            "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY, "timeout": "5s"},
            "state": {"url": pg_url},
            "notify": {"urls": [sink.url()]},
        },
    )
    leader = PgStore.open(pg_url)
    try:
        async with leader.holding(1.0):
            ran = await run_cli("run", "--once", "--config", str(path), env=base_env, cwd=tmp_path)
        assert ran.code == 1
        assert "another late-monitor is the leader" in ran.stderr
        assert sim.count("/accounts/health") == 0
    finally:
        leader.close()
    ran = await run_cli("run", "--once", "--config", str(path), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert sim.count("/accounts/health") == 1


async def test_a_webhook_delivered_to_the_standby_is_told_once_by_the_leader(
    tmp_path: Path, pg_url: str, base_env: dict[str, str], sim: Simulator, sink: Sink
) -> None:
    from tests.test_webhooks import SECRET, Late, disconnected

    ports = [free_port(), free_port()]
    configs = [
        write_config(
            tmp_path / f"late-monitor-{port}.toml",
            {
                "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY, "timeout": "5s"},
                "monitor": {"interval": "60s", "detail_every": "0"},
                "state": {"url": pg_url},
                "notify": {"urls": [sink.url()]},
                "http": {"listen": f"127.0.0.1:{port}"},
                "webhooks": {"secret": SECRET},
                "log": {"level": "info", "format": "json"},
            },
        )
        for port in ports
    ]
    runs = []
    try:
        for config in configs:
            process = await spawn_daemon(
                config, env=base_env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
            )
            runs.append(Daemon(process))
        deadline = time.monotonic() + 20
        while True:
            leaders = [await _metric(port, "late_monitor_leader") for port in ports]
            if sorted(leaders, key=str) == [0.0, 1.0] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert sorted(leaders, key=str) == [0.0, 1.0]
        standby = ports[leaders.index(0.0)]
        sim.break_account("acc_00000")
        async with aiohttp.ClientSession() as http:
            late = Late(http, f"http://127.0.0.1:{standby}/webhooks/late")
            assert (await late.send(disconnected("acc_00000")))[0] == 200
        await _until(lambda: bool(sink.received), 12, "the leader tells the standby's webhook")
        assert "told by Late's webhook" in sink.received[0]["message"]
        await asyncio.sleep(6)  # another round of both replicas' looks
        assert len(sink.received) == 1, sink.titles()
    finally:
        for run in runs:
            run.process.send_signal(signal.SIGTERM)
        for run in runs:
            await run.wait(30)
