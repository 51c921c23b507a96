"""The heartbeat: pinged after every successful cycle; what a failed one does is configurable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from late_monitor.simulator import Simulator
from late_monitor.simulator.faults import Fault
from tests.support.clock import Clock, clocked_daemon
from tests.support.process import run_cli
from tests.support.sink import Sink

UUID = "5f0c1a6e-93b1-4c07-9d59-3c0f3a1d2b7e"  # a healthchecks.io check's secret part


class PingServer:
    """healthchecks.io on loopback: records the paths it is pinged on."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path_qs)
        return web.Response(status=self.status, text="OK")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])

    def url(self, path: str = f"/{UUID}") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def pings() -> AsyncIterator[PingServer]:
    server = PingServer()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def test_a_successful_cycle_pings_and_a_failed_one_pings_fail(
    sim: Simulator, sink: Sink, pings: PingServer, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(monitor_config, clock, heartbeat={"url": pings.url()}) as daemon:
        await daemon.poll()
        await daemon.poll()
        assert pings.paths == [f"/{UUID}", f"/{UUID}"]
        sim.inject(Fault(status=500, count=20, path="/accounts/health"))
        await daemon.poll()
        assert pings.paths[-1] == f"/{UUID}/fail"


async def test_skip_leaves_the_missing_ping_to_raise_the_alarm_and_fail_url_is_used_as_given(
    sim: Simulator, sink: Sink, pings: PingServer, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(
        monitor_config,
        clock,
        heartbeat={"url": pings.url("/push/KEY1?status=up"), "on_failure": "skip"},
    ) as daemon:
        sim.inject(Fault(status=500, count=20, path="/accounts/health"))
        await daemon.poll()
        assert pings.paths == []
    sim.faults.clear()
    async with clocked_daemon(
        monitor_config,
        clock,
        heartbeat={
            "url": pings.url("/push/KEY1?status=up"),
            "fail_url": pings.url("/push/KEY1?status=down"),
        },
    ) as daemon:
        await daemon.poll()
        sim.inject(Fault(status=500, count=20, path="/accounts/health"))
        await daemon.poll()
        assert pings.paths == ["/push/KEY1?status=up", "/push/KEY1?status=down"]


async def test_an_apprise_heartbeat_gets_a_message_per_cycle(
    sim: Simulator, sink: Sink, sink2: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(
        monitor_config, clock, heartbeat={"url": sink2.url("HEARTBEAT01")}
    ) as daemon:
        await daemon.poll()
        assert [(m["title"], m["type"]) for m in sink2.received] == [
            ("late-monitor is alive", "success")
        ]
        assert sink.received == []  # the heartbeat is not a notification


async def test_a_heartbeat_that_fails_is_logged_without_its_token_and_the_cycle_goes_on(
    sim: Simulator, sink: Sink, pings: PingServer, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    pings.status = 503
    async with clocked_daemon(monitor_config, clock, heartbeat={"url": pings.url()}) as daemon:
        with capture_logs() as logs:
            await daemon.poll()
        assert daemon.liveness.last_success == clock.now.timestamp()
    failed = [entry for entry in logs if entry["event"] == "heartbeat_failed"]
    assert failed
    assert failed[0]["error"] == "HTTP 503"


async def test_run_once_pings_and_never_logs_the_ping_url(
    sim: Simulator,
    pings: PingServer,
    monitor_config: Callable[..., Path],
    base_env: dict[str, str],
    tmp_path: Path,
) -> None:
    pings.status = 500
    config = monitor_config(heartbeat={"url": pings.url(), "timeout": "2s"}, log={"level": "debug"})
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert pings.paths == [f"/{UUID}"]
    assert "heartbeat_failed" in ran.output
    assert UUID not in ran.output
    shown = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert "url = (set, hidden)" in shown.stdout
    assert UUID not in shown.output
