"""late-monitor as real processes: one command run to its end, or the daemon in the background."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    limit: float = 60,
    stdout: int = asyncio.subprocess.PIPE,
) -> Ran:
    """`late-monitor ARGS` as a real process, while this test's loop keeps serving;
    `stdout` another file descriptor to write to (its text is then not kept)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "late_monitor",
        *args,
        env=env,
        cwd=cwd,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode is not None
    return Ran(process.returncode, (out or b"").decode(), err.decode())


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


_PORTS = random.Random()  # seeded from the OS: each xdist worker draws its own


def free_port() -> int:
    """A port for a process the test starts to listen on. Drawn below Linux's ephemeral
    range (32768-60999): a port the kernel handed out and took back could be handed at once
    to the sink or simulator of a test in another worker, before our process binds it."""
    while True:
        port = _PORTS.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Daemon:
    """`late-monitor run` in the background, its output collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode())

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, limit: float = 30) -> int:
        code = await asyncio.wait_for(self.process.wait(), limit)
        await self._reader
        return code

    async def until(self, predicate: Callable[[], bool], limit: float = 15) -> None:
        deadline = time.monotonic() + limit
        while not predicate():
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError("condition not met; daemon said:\n" + "".join(self.lines))
            await asyncio.sleep(0.05)

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines if f'"event": "{event}"' in line)


@contextlib.asynccontextmanager
async def daemon(config: Path, env: dict[str, str], cwd: Path) -> AsyncIterator[Daemon]:
    process = await spawn_daemon(config, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE)
    running = Daemon(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
