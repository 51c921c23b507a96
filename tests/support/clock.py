"""A wall clock that moves only when the test says so, and an in-process daemon that reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from late_monitor.config import load_settings
from late_monitor.daemon import Daemon

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@asynccontextmanager
async def clocked_daemon(
    make_config: Callable[..., Path], clock: Clock, **sections: dict[str, Any]
) -> AsyncIterator[Daemon]:
    """A Daemon in this process on `clock`; the test calls its jobs (poll, retry_outbox)."""
    config = make_config(**sections)
    daemon = Daemon(load_settings(str(config), environ={}), config_arg=str(config), clock=clock)
    try:
        yield daemon
    finally:
        await daemon.deps.client.close()
        daemon.store.close()
