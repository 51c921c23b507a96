"""One benchmark case in its own process (so peak RSS is this case's): the real cycle code.

    python3 bench/cycle_bench.py --accounts 10000 --cycles 5
    python3 bench/cycle_bench.py --accounts 10000 --state-url postgresql:///postgres

With `--state-url` the state is kept in PostgreSQL (a schema made for the run, then dropped);
`server_cpu_s` is then the CPU the database's backends spent for us, beside our own `cpu_s`.

Starts the simulator in a child process (`late-monitor simulate`), a json:// sink here, then
runs `run_cycle` with the daemon's own wiring; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from late_monitor.backends import open_store
from late_monitor.config import load_settings
from late_monitor.cycle import CycleResult, run_cycle
from late_monitor.simulator import DEFAULT_KEY
from late_monitor.wiring import client_from, deps_from, setup_logging


# PostgreSQL (--state-url): a schema made for one run, and the CPU its backends spent
@contextlib.contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A URL whose tables land in a fresh schema of `url`'s database, dropped afterwards;
    "" (SQLite) passes through."""
    if not url:
        yield ""
        return
    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def backend_cpu(url: str) -> float:
    """CPU seconds (user + system) of late-monitor's backends on a server on this machine."""
    if not url:
        return 0.0
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'late-monitor'"
            ).fetchall()
        ]
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def compiled_env(cache: str) -> dict[str, str]:
    """The environment of an installed package: bytecode cached (pip compiles what it
    installs), here under `cache` rather than in the source tree. Without it (this machine
    sets PYTHONDONTWRITEBYTECODE=1) each start compiles late_monitor's ~50 modules from
    source, ~0.1-0.2 s that varies from run to run, that no installed late-monitor pays and
    the floor's packages never pay."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(
    accounts: int, latency: float, rate_limit: int, posts: float = 0.0
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "late_monitor",
            "simulate",
            "--port",
            str(port),
            "--accounts",
            str(accounts),
            "--latency",
            str(latency),
            "--rate-limit",
            str(rate_limit),
            "--posts",
            str(posts),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "base_url" in line:
            return process, f"http://127.0.0.1:{port}"
    raise RuntimeError("simulator did not start")


async def start_sink() -> tuple[web.AppRunner, int, list[int]]:
    received: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(len(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, received


def state_size(directory: Path) -> int:
    """The state file with its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith("state.db"))


def config_text(base_url: str, state: Path, sink_port: int, args: argparse.Namespace) -> str:
    return f"""[late]
base_url = "{base_url}/api/v1"
api_key = "{DEFAULT_KEY}"
timeout = "120s"
max_requests_per_minute = {args.budget}
[monitor]
interval = "{args.interval}s"
detail = "{args.detail}"
detail_every = "0"
[state]
path = "{state}"
url = "{args.state_url}"
[impact]
max_pages = {args.impact_pages}
[notify]
urls = ["json://127.0.0.1:{sink_port}/bench"]
[log]
level = "warning"
format = "json"
"""


def phase_summary(results: list[CycleResult]) -> dict[str, Any]:
    phases = sorted({p for r in results for p in r.cpu})
    cpu = {p: statistics.median(r.cpu.get(p, 0.0) for r in results) for p in phases}
    return {
        "wall_s": statistics.median(r.duration for r in results),
        "cpu_s": statistics.median(sum(r.cpu.values()) for r in results),
        "cpu_max_s": max(sum(r.cpu.values()) for r in results),
        "cpu_by_phase_s": cpu,
        "requests": statistics.median(r.requests for r in results),
        "events": statistics.median(len(r.events) for r in results),
        "messages": statistics.median(len(r.messages) for r in results),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sim, base = start_simulator(args.accounts, args.latency, args.rate_limit, args.posts)
    runner, sink_port, received = await start_sink()
    tmp = Path(tempfile.mkdtemp(prefix="late-monitor-bench-"))
    try:
        config = tmp / "bench.toml"
        config.write_text(config_text(base, tmp / "state.db", sink_port, args))
        loaded = load_settings(str(config), environ={})
        setup_logging(loaded, stream=sys.stderr)
        store = open_store(loaded)
        async with client_from(loaded) as client, aiohttp.ClientSession() as control:
            deps = deps_from(loaded, client=client, store=store)
            first_server = backend_cpu(args.state_url)
            first = await run_cycle(deps)
            first_server = backend_cpu(args.state_url) - first_server
            steady: list[CycleResult] = []
            changed: list[int] = []
            server_before = backend_cpu(args.state_url)
            for cycle in range(args.cycles):
                async with control.post(
                    f"{base}/_sim/churn", params={"fraction": str(args.churn), "seed": str(cycle)}
                ) as response:
                    changed.append((await response.json())["changed"])
                steady.append(await run_cycle(deps))
                if cycle == 0:
                    async with control.get(f"{base}/_sim/stats") as response:
                        posts_before = (await response.json())["posts"]
            async with control.get(f"{base}/_sim/stats") as response:
                stats = await response.json()
            server_cpu = (backend_cpu(args.state_url) - server_before) / max(args.cycles, 1)
        store.close()
        size = state_size(tmp)
        return {
            "accounts": args.accounts,
            "detail": args.detail,
            "budget_per_minute": args.budget,
            "latency_s": args.latency,
            "first_cycle": {
                "wall_s": first.duration,
                "cpu_s": sum(first.cpu.values()),
                "requests": first.requests,
                "cpu_by_phase_s": dict(first.cpu),
                "server_cpu_s": first_server if args.state_url else None,
            },
            "steady": phase_summary(steady) if steady else None,
            "state": "postgresql" if args.state_url else "sqlite",
            "server_cpu_s": server_cpu if args.state_url else None,
            "changed_per_cycle": statistics.median(changed) if changed else 0,
            "http_429": stats["by_status"].get("429", 0),
            # scheduled-post listing requests (impact) per steady cycle, measured at the simulator
            "impact_requests_per_cycle": (stats["posts"] - posts_before) / max(args.cycles, 1)
            if args.cycles
            else 0,
            "messages_received": len(received),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "state_file_mb": size / 1e6,
        }
    finally:
        await runner.cleanup()
        sim.terminate()
        sim.wait()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--detail", default="changed", choices=["changed", "all", "never"])
    parser.add_argument("--budget", type=int, default=1200, help="late.max_requests_per_minute")
    parser.add_argument("--rate-limit", type=int, default=1200, help="the simulator's limit")
    parser.add_argument("--interval", type=float, default=300)
    parser.add_argument(
        "--posts", type=float, default=0.0, help="scheduled posts per account in the next 72 h"
    )
    parser.add_argument("--impact-pages", type=int, default=10, help="impact.max_pages")
    parser.add_argument(
        "--state-url", default="", help="[state] url: PostgreSQL instead of a SQLite file"
    )
    os.environ.pop("LATE_API_KEY", None)
    started = time.perf_counter()
    arguments = parser.parse_args()
    with pg_schema(arguments.state_url) as arguments.state_url:
        result = asyncio.run(main(arguments))
    result["bench_wall_s"] = time.perf_counter() - started
    print(json.dumps(result))
