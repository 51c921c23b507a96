"""Shared fixtures: the simulator and Apprise sinks on 127.0.0.1, the CLI as a real process."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from tests.sink import Sink


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


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATE_", "CREDENTIALS"))}
    env["HOME"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path, limit: float = 60) -> Ran:
    """`late-monitor ARGS` as a real process, while this test's loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "late_monitor",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def spawn_daemon(
    config: Path, *, env: dict[str, str], cwd: Path, stdout: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """`late-monitor run --config CONFIG` (the daemon) as a background process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "late_monitor",
        "run",
        "--config",
        str(config),
        env=env,
        cwd=cwd,
        stdout=stdout,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )


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
