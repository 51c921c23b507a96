"""Many workspaces in one daemon: CPU per round and RSS (issue 15).

    python3 bench/workspaces.py                       # 100 workspaces x 500 accounts, 4 rounds
    python3 bench/workspaces.py --workspaces 10 --accounts 500 --rounds 3

One process serves N simulators (one Late account each, its own API key, on its own port);
one daemon watches them all as N [[workspaces]] (interval `--interval`, each workspace's own
budget of 1,200 requests/min, detail = changed, sweep off), sending to one json:// sink. Before
each round after the first, 1% of every workspace's accounts change status, so every round
has news in every workspace (N messages a round). Measured from outside: the daemon's CPU
(user + system, /proc/PID/stat) between the ends of consecutive rounds (a round ends when
every workspace's poll is logged), and its resident memory (VmRSS, and VmHWM: the peak).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from cycle_bench import free_port  # noqa: E402 (the same helper as every bench)

SIMULATORS = textwrap.dedent(
    """
    import asyncio, sys
    from late_monitor.simulator import Simulator, make_accounts

    async def main(count, accounts):
        sims = []
        for index in range(count):
            sim = Simulator(make_accounts(accounts), api_key=f"sk_ws{index:04d}_0123456789abcdef",
                            rate_limit=100000)
            await sim.start()
            sims.append(sim)
        print(" ".join(str(s.port) for s in sims), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)

SINK = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def ok(request):
        await request.read()
        return web.json_response({})
    app = web.Application()
    app.router.add_post("/{tail:.*}", ok)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def memory_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)


def write_config(path: Path, ports: list[int], sink: int, interval: int, state: Path) -> None:
    lines = [
        "[late]",
        "max_requests_per_minute = 1200",
        "[monitor]",
        f'interval = "{interval}s"',
        'detail_every = "0"',
        "[state]",
        f'path = "{state}"',
        "[notify]",
        f'urls = ["json://127.0.0.1:{sink}/hook"]',
        "[log]",
        'level = "info"',
        'format = "json"',
    ]
    for index, port in enumerate(ports):
        lines += [
            "[[workspaces]]",
            f'name = "ws{index:04d}"',
            f'base_url = "http://127.0.0.1:{port}/api/v1"',
            f'api_key = "sk_ws{index:04d}_0123456789abcdef"',
        ]
    path.write_text("\n".join(lines) + "\n")


def churn(ports: list[int], fraction: float, seed: int) -> None:
    for port in ports:
        url = f"http://127.0.0.1:{port}/_sim/churn?fraction={fraction}&seed={seed}-{port}"
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30).read()


def run(workspaces: int, accounts: int, rounds: int, interval: int) -> dict[str, Any]:
    sims = subprocess.Popen(
        [sys.executable, "-c", SIMULATORS, str(workspaces), str(accounts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    assert sims.stdout is not None
    ports = [int(p) for p in sims.stdout.readline().split()]
    work = Path(tempfile.mkdtemp(prefix="late-ws-bench-"))
    config = work / "late-monitor.toml"
    write_config(config, ports, sink_port, interval, work / "state.db")
    log = (work / "daemon.log").open("w+")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "late_monitor", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ends: list[tuple[float, float, float]] = []  # (cpu, rss, wall) at each round's end
    try:
        for index in range(rounds):
            if index:
                churn(ports, 0.01, index)
            want = workspaces * (index + 1)
            deadline = time.monotonic() + interval * 3 + 120
            while _polls(work / "daemon.log") < want:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the daemon did not finish a round; see " + str(log.name))
                time.sleep(0.05)
            ends.append((cpu_seconds(daemon.pid), memory_mb(daemon.pid)[0], time.monotonic()))
            print(f"  round {index + 1}: cpu {ends[-1][0]:.2f} s", file=sys.stderr, flush=True)
            if index + 1 < rounds:  # the next round starts at the next interval
                time.sleep(max(0.0, interval - 2))
        rss, peak = memory_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        for process in (sims, sink):
            process.kill()
    per_round = [b[0] - a[0] for a, b in itertools.pairwise(ends)]
    return {
        "workspaces": workspaces,
        "accounts_each": accounts,
        "rounds": rounds,
        "first_round_cpu_s": round(ends[0][0], 2),  # start-up (imports, Apprise) included
        "cpu_per_round_s": [round(c, 2) for c in per_round],
        "cpu_per_round_median_s": round(sorted(per_round)[len(per_round) // 2], 2)
        if per_round
        else None,
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "messages": _count(work / "daemon.log", '"event": "notification_delivered"'),
    }


def _polls(path: Path) -> int:
    return _count(path, '"event": "poll_completed"')


def _count(path: Path, needle: str) -> int:
    with path.open() as handle:
        return sum(1 for line in handle if needle in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--interval", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(run(args.workspaces, args.accounts, args.rounds, args.interval)))


if __name__ == "__main__":
    main()
