"""Time to the first message of a mass incident, from outside: `run --once` as cron runs it.

    python3 bench/incident.py                  # 200 accounts break at once, budget 30/min
    python3 bench/incident.py --accounts 1000 --budget 60

The simulator and a json:// sink run in this process on loopback; each `run --once` is a
fresh process. Prints one JSON line: seconds from the run's start to the first message at
the sink, and to the run's end (the details that follow it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts


async def measure(accounts: int, budget: int, interval: str) -> dict[str, Any]:
    arrived: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived.append(time.monotonic())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink_port = runner.addresses[0][1]
    sim = Simulator(make_accounts(accounts), rate_limit=max(budget * 2, 600))
    await sim.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "late-monitor.toml"
            config.write_text(
                f'[late]\nbase_url = "{sim.base_url}"\napi_key = "{DEFAULT_KEY}"\n'
                f"max_requests_per_minute = {budget}\n"
                f'[monitor]\ninterval = "{interval}"\ndetail = "changed"\ndetail_every = "0"\n'
                f'[state]\npath = "{tmp}/state.db"\n'
                f'[notify]\nurls = ["json://127.0.0.1:{sink_port}/hook/BENCHTOKEN01"]\n'
                '[log]\nlevel = "warning"\n'
            )

            async def once() -> float:
                started = time.monotonic()
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "late_monitor", "run", "--once", "--config",
                    str(config), stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await process.wait()
                return started

            await once()  # all healthy: recorded
            for account_id in sim.accounts:
                sim.break_account(account_id)
            seen = len(arrived)
            started = await once()
            ended = time.monotonic()
    finally:
        await sim.stop()
        await runner.cleanup()
    return {
        "accounts": accounts,
        "budget_per_minute": budget,
        "interval": interval,
        "first_message_s": round(arrived[seen] - started, 2) if len(arrived) > seen else None,
        "run_s": round(ended - started, 2),
        "messages": len(arrived) - seen,
        "detail_requests": sim.count("/health") - 2,  # all but the two list polls
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--budget", type=int, default=30, help="late.max_requests_per_minute")
    parser.add_argument(
        "--interval", default="1m", help="monitor.interval: sets the run's share of the budget"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.accounts, args.budget, args.interval))))


if __name__ == "__main__":
    main()
