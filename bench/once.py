"""`run --once` as cron runs it: each run a fresh process, CPU and peak RSS measured from outside.

    python3 bench/once.py --accounts 50000 --runs 5
    python3 bench/once.py --accounts 100 --runs 5

The simulator runs in its own process (`late-monitor simulate`). A first `run --once` records
every account; then each run follows a 1% churn (detail = changed, budget 1,200/min, sweep
off). The CPU (user + system) and peak RSS of each run are the child's own, from wait4().
Prints one JSON object: medians over the runs, and each run's figures.
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


def measure(accounts: int, runs: int, churn_fraction: float = 0.01) -> dict[str, Any]:
    sim, base = start_simulator(accounts, 0.0, 100000)
    tmp = Path(tempfile.mkdtemp(prefix="late-monitor-once-"))
    try:
        config = tmp / "c.toml"
        config.write_text(
            f'[late]\nbase_url = "{base}/api/v1"\napi_key = "{DEFAULT_KEY}"\n'
            'timeout = "120s"\nmax_requests_per_minute = 1200\n'
            '[monitor]\ndetail = "changed"\ndetail_every = "0"\n'
            f'[state]\npath = "{tmp}/state.db"\n'
            '[notify]\nurls = ["console://"]\n'  # printed to /dev/null: nothing to wait for
            '[log]\nlevel = "warning"\n'
        )
        argv = [*cli(), "run", "--once", "--config", str(config)]
        env = compiled_env(str(tmp / "pycache"))
        first = measured(argv, env)  # records every account, and caches the bytecode
        each = []
        for run in range(runs):
            changed = churn(base, churn_fraction, run)
            each.append({**measured(argv, env), "changed": changed})
    finally:
        sim.terminate()
        sim.wait()
        shutil.rmtree(tmp)
    return {
        "accounts": accounts,
        "runs": runs,
        "first_run": first,
        "cpu_s": statistics.median(r["cpu_s"] for r in each),
        "wall_s": statistics.median(r["wall_s"] for r in each),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in each),
        "each": each,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()
    os.environ.pop("LATE_API_KEY", None)
    print(json.dumps(measure(args.accounts, args.runs, args.churn), indent=2))


if __name__ == "__main__":
    main()
