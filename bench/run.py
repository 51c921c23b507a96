"""The late-monitor benchmark: cost per cycle, requests, memory, detail sweep and cold start.

    python3 bench/run.py                 # everything, ~5 minutes on 2 cores
    python3 bench/run.py --quick         # 1,000 and 10,000 accounts only, no sweep

Each case runs in its own process (bench/cycle_bench.py) so that its peak RSS is its own.
Writes bench/results/latest.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
IMPORT_FLOOR = "import aiohttp, apscheduler, structlog, pydantic_settings, apprise"


def case(*args: str) -> dict[str, Any]:
    print(f"  running cycle_bench {' '.join(args)}", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, str(HERE / "cycle_bench.py"), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def timed(argv: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=False, capture_output=True, **kwargs)
    return time.perf_counter() - started


def cold_start(runs: int = 5) -> dict[str, Any]:
    """`run --once` (100 accounts, one message to a loopback sink) against the import floor."""
    sys.path.insert(0, str(HERE))
    from cycle_bench import free_port, start_simulator  # the same helpers as every case

    print("  running cold start", file=sys.stderr, flush=True)
    sim, base = start_simulator(100, 0.0, 100000)
    sink_port = free_port()
    sink = subprocess.Popen(  # prints one line per message received
        [
            sys.executable,
            "-c",
            (
                "from aiohttp import web\n"
                "async def ok(request):\n"
                "    await request.read(); print('message', flush=True)\n"
                "    return web.Response(text='ok')\n"
                "app = web.Application(); app.router.add_post('/{t:.*}', ok)\n"
                f"web.run_app(app, host='127.0.0.1', port={sink_port}, print=None)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(1.0)
    # the script pip installed beside this Python, as a venv user runs it (not a pyenv shim)
    beside = Path(sys.executable).with_name("late-monitor")
    cli = str(beside) if beside.exists() else shutil.which("late-monitor") or "late-monitor"
    once, floor = [], []
    try:
        for index in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp) / "c.toml"
                config.write_text(
                    f'[late]\nbase_url = "{base}/api/v1"\napi_key = "sk_sim_0123456789abcdef"\n'
                    f'[state]\npath = "{tmp}/state.db"\n[monitor]\ndetail = "never"\n'
                    f'[notify]\nurls = ["json://127.0.0.1:{sink_port}/cold"]\n'
                    '[log]\nlevel = "warning"\n'
                )
                subprocess.run(  # one account unhealthy on first sight: exactly one message
                    [
                        sys.executable,
                        "-c",
                        f"import urllib.request; urllib.request.urlopen("
                        f"urllib.request.Request('{base}/_sim/churn?fraction=0.01&seed={index}', "
                        "method='POST'))",
                    ],
                    check=True,
                )
                once.append(timed([cli, "run", "--once", "--config", str(config)]))
                floor.append(timed([sys.executable, "-c", IMPORT_FLOOR]))
    finally:
        sim.terminate()
        sink.terminate()
    received = sink.communicate()[0].count("message")
    if received != runs:
        raise RuntimeError(f"cold start: the sink got {received} messages for {runs} runs")
    return {
        "run_once_s": statistics.median(once),
        "import_floor_s": statistics.median(floor),
        "ratio": statistics.median(once) / statistics.median(floor),
        "runs": runs,
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        "| accounts | wall/cycle | CPU/cycle (max) | fetch+parse | evaluate | detail (slice"
        " + after) | store | render | requests/cycle (changed) | peak RSS | state file |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["steady"]:
        s, cpu = r["steady"], r["steady"]["cpu_by_phase_s"]
        rows.append(
            f"| {r['accounts']:,} | {s['wall_s']:.2f} s | {s['cpu_s']:.3f} s ({s['cpu_max_s']:.2f})"
            " | "
            f"{cpu.get('fetch', 0):.3f} | {cpu.get('evaluate', 0):.3f} | "
            f"{cpu.get('detail', 0):.3f} + {cpu.get('enrich', 0):.3f}"
            f" | {cpu.get('store', 0):.3f} | {cpu.get('render', 0):.3f} | {s['requests']:.0f} "
            f"({r['changed_per_cycle']}) | {r['peak_rss_mb']:.0f} MB "
            f"| {r['state_file_mb']:.1f} MB |"
        )
    lines = ["\n".join(rows)]
    if sweep := results.get("sweep"):
        bound = sweep["accounts"] / sweep["budget_per_minute"] * 60
        wall = sweep["first_cycle"]["wall_s"]
        lines.append(
            f"Full detail sweep, {sweep['accounts']:,} accounts at {sweep['budget_per_minute']}"
            f" requests/min: {wall:.1f} s against a lower bound of {bound:.0f} s "
            f"({wall / bound:.2f}x), {sweep['first_cycle']['requests']} requests, "
            f"{sweep['http_429']} answered 429."
        )
    if cold := results.get("cold_start"):
        lines.append(
            f"Cold start of `run --once` (100 accounts, one message): {cold['run_once_s']:.2f} s"
            f" against the import floor {cold['import_floor_s']:.2f} s ({cold['ratio']:.2f}x),"
            f" median of {cold['runs']}."
        )
    return "\n\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    sizes = [1000, 10000] if args.quick else [1000, 10000, 50000]
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
        },
        "steady": [case("--accounts", str(n), "--cycles", str(args.cycles)) for n in sizes],
    }
    if not args.quick:
        results["sweep"] = case(
            "--accounts",
            "1000",
            "--cycles",
            "0",
            "--detail",
            "all",
            "--budget",
            "600",
            "--rate-limit",
            "600",
        )
    results["cold_start"] = cold_start()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
