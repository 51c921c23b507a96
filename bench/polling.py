"""Time to notify through polling: from a change at the simulator to the message at a sink.

    python3 bench/polling.py                           # 1,000 accounts, 20 changes, 60 s
    python3 bench/polling.py --accounts 10000 --changes 20 --interval 60

A change waits for the next poll, then the poll takes its own time to the message. The wait
is uniform over the interval whatever the daemon does (the change comes at a moment that has
nothing to do with the schedule), so waiting 60 s x N changes measures nothing but the clock.
This bench runs the real daemon (`late-monitor run`, its own process) polling every
`--poll-every` seconds, makes one account fail at a random moment of a poll's interval, and
measures the poll phase: from the poll's request at the simulator to the message at the sink.
The time to notify at `--interval` is then the poll phase plus a uniform wait, whose
distribution is computed exactly (each measured poll phase convolved with a fine grid over the
interval). The directly measured times at `--poll-every` are printed too, as a check of that
model at the short interval. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts

GRID = 1000  # points over the interval for the uniform wait


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def at_interval(phases: list[float], interval: float) -> dict[str, float]:
    """Median, p99 and worst of (uniform wait over `interval`) + (a measured poll phase)."""
    waits = [interval * (i + 0.5) / GRID for i in range(GRID)]
    total = [wait + phase for phase in phases for wait in waits]
    return {
        "median_s": round(statistics.median(total), 2),
        "p99_s": round(percentile(total, 0.99), 2),
        "worst_s": round(interval + max(phases), 2),
    }


async def measure(
    accounts: int, changes: int, poll_every: float, interval: float
) -> dict[str, Any]:
    arrived: list[float] = []
    new = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived.append(time.time())
        new.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink_port = runner.addresses[0][1]
    sim = Simulator(make_accounts(accounts), rate_limit=100000)
    await sim.start()
    rng = random.Random(17)
    phases: list[float] = []
    direct: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "late-monitor.toml"
            config.write_text(
                f'[late]\nbase_url = "{sim.base_url}"\napi_key = "{DEFAULT_KEY}"\n'
                "max_requests_per_minute = 1200\n"
                f'[monitor]\ninterval = "{poll_every}s"\ndetail = "changed"\n'
                f'[state]\npath = "{tmp}/state.db"\n'
                f'[notify]\nurls = ["json://127.0.0.1:{sink_port}/hook/BENCHTOKEN01"]\n'
                '[log]\nlevel = "error"\n'
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "late_monitor", "run", "--config", str(config),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await _polled(sim, 2)  # the first poll (every account first seen) is over
                for number, account_id in enumerate(list(sim.accounts)[:changes]):
                    await asyncio.sleep(rng.uniform(0, poll_every))
                    seen = len(arrived)
                    changed_at = time.time()
                    sim.break_account(account_id)
                    async with asyncio.timeout(poll_every + 60):
                        while len(arrived) <= seen:
                            new.clear()
                            await new.wait()
                    message_at = arrived[seen]
                    poll_at = min(
                        t for t, path, _ in sim.requests if path.endswith("/accounts/health")
                        and t >= changed_at
                    )  # fmt: skip
                    phases.append(message_at - poll_at)
                    direct.append(message_at - changed_at)
                    print(f"  change {number + 1}/{changes}", file=sys.stderr, flush=True)
            finally:
                process.terminate()
                await process.wait()
    finally:
        await sim.stop()
        await runner.cleanup()
    return {
        "accounts": accounts,
        "changes": changes,
        "poll_every_s": poll_every,
        "poll_phase": {
            "median_s": round(statistics.median(phases), 3),
            "p99_s": round(percentile(phases, 0.99), 3),
            "worst_s": round(max(phases), 3),
        },
        "measured_at_poll_every": {
            "median_s": round(statistics.median(direct), 3),
            "p99_s": round(percentile(direct, 0.99), 3),
            "model_median_s": at_interval(phases, poll_every)["median_s"],
        },
        "interval_s": interval,
        "at_interval": at_interval(phases, interval),
    }


async def _polled(sim: Simulator, count: int) -> None:
    async with asyncio.timeout(120):
        while sim.count("/accounts/health") < count:  # noqa: ASYNC110 (no event per path)
            await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--poll-every", type=float, default=2.0, help="the daemon's interval here")
    parser.add_argument("--interval", type=float, default=60.0, help="the interval reported")
    args = parser.parse_args()
    result = asyncio.run(measure(args.accounts, args.changes, args.poll_every, args.interval))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
