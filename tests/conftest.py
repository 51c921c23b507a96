"""Shared fixtures: the simulator and Apprise sinks on 127.0.0.1, the CLI as a real process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from tests.support.config import write_config
from tests.support.pg import ENV as PG_ENV
from tests.support.pg import HOW as PG_HOW
from tests.support.pg import pg_database, pg_url  # noqa: F401  (fixtures for the PostgreSQL tests)
from tests.support.sink import Sink


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(make_accounts(5))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sink2() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATE_", "CREDENTIALS"))}
    env["HOME"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def monitor_config(tmp_path: Path, sim: Simulator, sink: Sink):  # type: ignore[no-untyped-def]
    """A config for the simulator and the sink; call it with overrides per section."""

    def make(**sections: dict[str, Any]) -> Path:
        base: dict[str, dict[str, Any]] = {
            "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY, "timeout": "5s"},
            "monitor": {"interval": "60s", "detail_every": "0"},
            "state": {"path": str(tmp_path / "state.db")},
            "notify": {"urls": [sink.url()]},
            "log": {"level": "info", "format": "json"},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        return write_config(tmp_path / "late-monitor.toml", base)

    return make


@pytest.fixture
def daemon_config(monitor_config):  # type: ignore[no-untyped-def]
    def make(**sections: dict[str, object]) -> Path:
        sections.setdefault("monitor", {})
        sections["monitor"] = {"interval": "1s", **sections["monitor"]}  # type: ignore[dict-item]
        return monitor_config(**sections)  # type: ignore[no-any-return]

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server to use, its tests are deselected (one line says why,
    below), not skipped one by one."""
    if os.environ.get(PG_ENV):
        return
    needs = [
        item
        for item in items
        if item.get_closest_marker("postgresql")
        or "pg_database" in getattr(item, "fixturenames", ())
    ]
    if needs:
        items[:] = [item for item in items if item not in set(needs)]
        config.hook.pytest_deselected(items=needs)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not os.environ.get(PG_ENV):
        terminalreporter.write_line(f"PostgreSQL tests deselected: {PG_HOW}")
