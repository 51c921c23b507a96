"""One clock: the daemon's cycles, delivery, history and liveness all read the clock it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from late_monitor.config import load_settings
from late_monitor.daemon import HISTORY_DAYS, Daemon
from late_monitor.simulator import Simulator
from late_monitor.web import build_app, start_server
from tests.support.process import free_port
from tests.support.sink import Sink

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Wall time that moves only when the test says so."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def started(
    monitor_config: Callable[..., Path],
) -> AsyncIterator[Callable[[Clock], Daemon]]:
    """A Daemon in this process (its jobs called by the test, not by the scheduler)."""
    made: list[Daemon] = []

    def make(clock: Clock) -> Daemon:
        config = monitor_config()
        made.append(
            Daemon(load_settings(str(config), environ={}), config_arg=str(config), clock=clock)
        )
        return made[-1]

    yield make
    for daemon in made:
        await daemon.deps.client.close()
        daemon.store.close()


async def test_history_is_pruned_and_liveness_stamped_by_the_daemons_clock(
    sim: Simulator, sink: Sink, started: Callable[[Clock], Daemon]
) -> None:
    clock = Clock()
    daemon = started(clock)
    await daemon.poll()
    sim.break_account("acc_00001")
    clock.advance(minutes=5)
    await daemon.poll()
    assert len(sink.received) == 1
    assert daemon.liveness.last_success == clock.now.timestamp()
    stamped = daemon.metrics.registry.get_sample_value(
        "late_monitor_last_successful_poll_timestamp_seconds", {"workspace": "default"}
    )
    assert stamped == clock.now.timestamp()
    cycles = daemon.store.recent_cycles()
    assert [c["started_at"] for c in cycles] == [clock.now.timestamp(), T0.timestamp()]

    clock.advance(days=HISTORY_DAYS - 1)
    await daemon.housekeeping()
    assert len(daemon.store.recent_cycles()) == 2  # a month has not passed by this clock
    clock.advance(days=2)
    await daemon.housekeeping()
    assert daemon.store.recent_cycles() == []
    assert daemon.store.outbox_rows(states=("delivered",)) == []


async def test_a_pending_retry_becomes_due_when_the_daemons_clock_moves(
    sim: Simulator, sink: Sink, started: Callable[[Clock], Daemon]
) -> None:
    clock = Clock()
    daemon = started(clock)
    await daemon.poll()
    sink.fail_status = 503
    sim.break_account("acc_00002")
    await daemon.poll()
    assert daemon.store.pending_count() == 1
    sink.fail_status = None
    await daemon.retry_outbox()
    assert sink.received == []  # not due yet: the backoff is 30 s of this clock
    clock.advance(seconds=30)
    await daemon.retry_outbox()
    assert len(sink.received) == 1
    assert daemon.store.pending_count() == 0


async def test_healthz_ages_the_last_success_by_the_same_clock(
    sim: Simulator, started: Callable[[Clock], Daemon]
) -> None:
    clock = Clock()
    daemon = started(clock)
    await daemon.poll()
    app = build_app(
        liveness=lambda: daemon.liveness,
        metrics=daemon.metrics,
        store=lambda: daemon.store,
        clock=clock,
    )
    port = free_port()
    runner = await start_server(app, f"127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/healthz"
            clock.advance(seconds=10)
            async with session.get(url) as fresh:
                assert (fresh.status, await fresh.json()) == (
                    200,
                    {"ok": True, "last_success_age_s": 10.0},
                )
            clock.advance(seconds=3 * daemon.liveness.interval)
            async with session.get(url) as stale:
                assert stale.status == 503
    finally:
        await runner.cleanup()
