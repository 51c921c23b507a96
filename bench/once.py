"""`run --once` as cron runs it: each run a fresh process, CPU and peak RSS measured from outside.

    python3 bench/once.py --accounts 100,10000,50000 --runs 5

Each size has its simulator in its own process (`late-monitor simulate`). A first `run
--once` records every account; then each run follows a 1% churn (detail = changed, budget
1,200/min, sweep off), the sizes taking turns. The CPU (user + system) and peak RSS of each
run are the child's own, from wait4(). Prints one JSON object: per size, medians over the
runs, the median of each round's CPU beyond the smallest size, and each run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from cycle_bench import compiled_env, start_simulator

from late_monitor.simulator import DEFAULT_KEY


def cli() -> list[str]:
    """The console script pip installed beside this Python, as a venv user runs it."""
    beside = Path(sys.executable).with_name("late-monitor")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "late_monitor"]


def measured(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run one process to its end; its wall time, CPU seconds and peak RSS (MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read() if process.stderr else b""
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited {process.returncode}: {stderr[-2000:]!r}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def churn(base: str, fraction: float, seed: int) -> int:
    url = f"{base}/_sim/churn?fraction={fraction}&seed={seed}"
    request = urllib.request.Request(url, method="POST")  # noqa: S310 (the loopback simulator)
    with urllib.request.urlopen(request) as answer:  # noqa: S310 (the loopback simulator)
        return int(json.load(answer)["changed"])


class Size:
    """One size's simulator, state file and command line."""

    def __init__(self, accounts: int, tmp: Path) -> None:
        self.accounts = accounts
        self.sim, self.base = start_simulator(accounts, 0.0, 100000)
        config = tmp / f"c{accounts}.toml"
        config.write_text(
            f'[late]\nbase_url = "{self.base}/api/v1"\napi_key = "{DEFAULT_KEY}"\n'
            'timeout = "120s"\nmax_requests_per_minute = 1200\n'
            '[monitor]\ndetail = "changed"\ndetail_every = "0"\n'
            f'[state]\npath = "{tmp}/state{accounts}.db"\n'
            '[notify]\nurls = ["console://"]\n'  # printed to /dev/null: nothing to wait for
            '[log]\nlevel = "warning"\n'
        )
        self.argv = [*cli(), "run", "--once", "--config", str(config)]
        self.each: list[dict[str, float]] = []

    def stop(self) -> None:
        self.sim.terminate()
        self.sim.wait()


def measure(sizes: list[int], runs: int, churn_fraction: float = 0.01) -> dict[str, Any]:
    """Each size's runs, in rounds: one run of every size per round, the order alternating,
    so that a slower minute of a shared machine weighs on every size alike. The CPU beyond
    the smallest size is the median of the rounds' differences."""
    tmp = Path(tempfile.mkdtemp(prefix="late-monitor-once-"))
    cases: list[Size] = []
    try:
        for accounts in sizes:
            cases.append(Size(accounts, tmp))
        env = compiled_env(str(tmp / "pycache"))
        firsts = [measured(case.argv, env) for case in cases]  # record every account
        for run in range(runs):
            for case in cases if run % 2 == 0 else cases[::-1]:
                changed = churn(case.base, churn_fraction, run)
                case.each.append({**measured(case.argv, env), "changed": changed})
    finally:
        for case in cases:
            case.stop()
        shutil.rmtree(tmp)
    smallest = cases[0].each
    return {
        "runs": runs,
        "sizes": [
            {
                "accounts": case.accounts,
                "first_run": first,
                "cpu_s": statistics.median(r["cpu_s"] for r in case.each),
                "cpu_beyond_smallest_s": statistics.median(
                    r["cpu_s"] - s["cpu_s"] for r, s in zip(case.each, smallest, strict=True)
                ),
                "wall_s": statistics.median(r["wall_s"] for r in case.each),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in case.each),
                "each": case.each,
            }
            for case, first in zip(cases, firsts, strict=True)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--accounts", default="100,50000", help="sizes, comma-separated; the first is the base"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()
    os.environ.pop("LATE_API_KEY", None)
    sizes = [int(n) for n in args.accounts.split(",")]
    print(json.dumps(measure(sizes, args.runs, args.churn), indent=2))


if __name__ == "__main__":
    main()
