"""One benchmark case in its own process (so peak RSS is this case's): the real cycle code.

    python3 bench/cycle_bench.py --accounts 10000 --cycles 5

Starts the simulator in a child process (`late-monitor simulate`), a json:// sink here, then
runs `run_cycle` with the daemon's own wiring; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from late_monitor.config import load_settings
from late_monitor.cycle import CycleResult, run_cycle
from late_monitor.simulator import DEFAULT_KEY
from late_monitor.store import Store
from late_monitor.wiring import client_from, deps_from, setup_logging


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
    if args.state_url:  # the PostgreSQL backend (issue 16) opens its storage here when it lands
        raise SystemExit("cycle_bench: --state-url needs the PostgreSQL storage of issue 16")
    sim, base = start_simulator(args.accounts, args.latency, args.rate_limit, args.posts)
    runner, sink_port, received = await start_sink()
    tmp = Path(tempfile.mkdtemp(prefix="late-monitor-bench-"))
    try:
        config = tmp / "bench.toml"
        config.write_text(config_text(base, tmp / "state.db", sink_port, args))
        loaded = load_settings(str(config), environ={})
        setup_logging(loaded, stream=sys.stderr)
        store = Store.open(tmp / "state.db")
        async with client_from(loaded) as client, aiohttp.ClientSession() as control:
            deps = deps_from(loaded, client=client, store=store)
            first = await run_cycle(deps)
            steady: list[CycleResult] = []
            changed: list[int] = []
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
            },
            "steady": phase_summary(steady) if steady else None,
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
    result = asyncio.run(main(parser.parse_args()))
    result["bench_wall_s"] = time.perf_counter() - started
    print(json.dumps(result))
