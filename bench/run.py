"""The late-monitor benchmark: every figure of the README's performance table, in one run.

    python3 bench/run.py                  # every section but sweep, ~14 minutes on 2 cores
    python3 bench/run.py --quick          # small sizes: checks every bench still works (CI)
    python3 bench/run.py --only once,cold # some sections (names below)
    python3 bench/run.py --pg-url postgresql://bench@127.0.0.1/bench   # adds PostgreSQL

Sections, each measured from outside (its own processes, so each peak RSS is its own):
  steady     the daemon's warm cycle (bench/cycle_bench.py) at 1,000 / 10,000 / 50,000
  sweep      a full detail sweep of 1,000 accounts at 600 requests/min (only with --only)
  once       `run --once`, a fresh process per run, at 100 / 10,000 / 50,000 (bench/once.py)
  cold       cold `run --once` (100 accounts, one message) against the import floor
  webhooks   time to notify through a webhook, one at a time and at 200/s (bench/webhooks.py)
  polling    time to notify through polling at a 60 s interval (bench/polling.py)
  incident   a mass incident at the default budget, 30 requests/min (bench/incident.py)
  workspaces 100 workspaces of 500 accounts in one daemon, when the config has [[workspaces]]
  postgres   cycle CPU at 10,000 accounts on PostgreSQL against SQLite, when --pg-url is given
Every size-dependent figure is taken at two sizes or more, so the table shows how cost grows.
Writes bench/results/latest.json (quick: quick.json) and prints the Markdown tables. Timings
are medians over repeats; --quick asserts that each bench ran and told what it should, never
a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
IMPORT_FLOOR = "import aiohttp, apscheduler, structlog, pydantic_settings, apprise"
# The same imports, started and ended as late-monitor's command line does (no garbage
# collection while importing: late_monitor/startup.py; no teardown: cli.entry). For
# comparison only: what we add to the libraries themselves. The target is the plain floor.
LEAN_FLOOR = f"import gc, os; gc.disable(); {IMPORT_FLOOR}; os._exit(0)"
SECTIONS = (
    "steady",
    "sweep",
    "once",
    "cold",
    "webhooks",
    "polling",
    "incident",
    "workspaces",
    "postgres",
)


def bench(script: str, *args: str) -> dict[str, Any]:
    """Run one bench script in its own process; the JSON object it printed."""
    print(f"  running {script} {' '.join(args)}", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    text = out.stdout.strip()
    try:
        return dict(json.loads(text))
    except ValueError:  # a bench that printed lines before its JSON line
        return dict(json.loads(text.splitlines()[-1]))


def case(*args: str) -> dict[str, Any]:
    return bench("cycle_bench.py", *args)


def timed(argv: list[str], **kwargs: Any) -> float:
    return timed_cpu(argv, **kwargs)[0]


def timed_cpu(argv: list[str], **kwargs: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=False, capture_output=True, **kwargs)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def cold_start(runs: int = 5) -> dict[str, Any]:
    """`run --once` (100 accounts, one message to a loopback sink) against the import floor,
    after one run of each to cache bytecode (not counted).

    The ratio is the median of per-pair ratios: each run of ours is paired with a run of the
    floor just before or after it (the order alternates, so neither always goes first), and
    a pair sees the same load. On this shared machine the floor alone moved 0.89-1.19 s
    between runs; a ratio of two medians taken over different moments moved with it, the
    pairs' ratio much less. The same processes are measured as before; the medians of each
    are reported too, and the CPU time (user + system) of each process, which the other
    processes on the machine disturb less than the wall time. A last process, for comparison
    only, makes the floor's imports started and ended as our command line is (LEAN_FLOOR)."""
    sys.path.insert(0, str(HERE))
    from cycle_bench import (  # the same helpers as every case
        compiled_env,
        free_port,
        start_simulator,
    )

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
    once, floor, quiet, lean = [], [], [], []  # (wall, cpu) of each process
    cache = tempfile.TemporaryDirectory(prefix="late-monitor-pyc-")
    env = compiled_env(cache.name)
    try:
        for index in range(-1, runs):  # run -1 compiles and caches, and is not counted
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
                        f"urllib.request.Request('{base}/_sim/churn?fraction=0.01"
                        f"&seed={index + 1}', "
                        "method='POST'))",
                    ],
                    check=True,
                )
                ours = [cli, "run", "--once", "--config", str(config)]
                if index % 2:
                    floor_s = timed_cpu([sys.executable, "-c", IMPORT_FLOOR], env=env)
                    once_s = timed_cpu(ours, env=env)
                else:
                    once_s = timed_cpu(ours, env=env)
                    floor_s = timed_cpu([sys.executable, "-c", IMPORT_FLOOR], env=env)
                quiet_s = timed_cpu(ours, env=env)  # nothing new: no message, no Jinja2
                lean_s = timed_cpu([sys.executable, "-c", LEAN_FLOOR], env=env)
                if index >= 0:
                    floor.append(floor_s)
                    once.append(once_s)
                    quiet.append(quiet_s)
                    lean.append(lean_s)
    finally:
        sim.terminate()
        sink.terminate()
        cache.cleanup()
    received = sink.communicate()[0].count("message")
    if received != runs + 1:
        raise RuntimeError(f"cold start: the sink got {received} messages for {runs} runs")

    def ratio(ours: list[tuple[float, float]], part: int) -> float:
        return statistics.median(a[part] / b[part] for a, b in zip(ours, floor, strict=True))

    def median(values: list[tuple[float, float]], part: int) -> float:
        return statistics.median(value[part] for value in values)

    return {
        "run_once_s": median(once, 0),
        "import_floor_s": median(floor, 0),
        "ratio": ratio(once, 0),  # the median of the pairs' ratios (see the docstring)
        "ratio_of_medians": median(once, 0) / median(floor, 0),
        "run_once_cpu_s": median(once, 1),
        "import_floor_cpu_s": median(floor, 1),
        "cpu_ratio": ratio(once, 1),
        "quiet_run_once_s": median(quiet, 0),
        "quiet_ratio": ratio(quiet, 0),
        "lean_floor_s": median(lean, 0),  # see LEAN_FLOOR
        "ratio_to_lean_floor": statistics.median(
            a[0] / b[0] for a, b in zip(once, lean, strict=True)
        ),
        "runs": runs,
        "pairs": [  # (wall, cpu) of ours and of the floor, in the order run
            {"ours": list(a), "floor": list(b), "floor_first": bool(i % 2)}
            for i, (a, b) in enumerate(zip(once, floor, strict=True))
        ],
    }


def once(sizes: list[int], runs: int) -> dict[str, Any]:
    result = bench("once.py", "--accounts", ",".join(map(str, sizes)), "--runs", str(runs))
    for row in result["sizes"]:  # each run's CPU kept, in round order: an outlier shows
        row["cpu_each_s"] = [round(run["cpu_s"], 3) for run in row.pop("each")]
    return result


def webhooks(sizes: list[tuple[int, int, int, float]]) -> list[dict[str, Any]]:
    return [
        bench(
            "webhooks.py",
            "--accounts",
            str(accounts),
            "--single",
            str(single),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        )
        for accounts, single, rate, seconds in sizes
    ]


def polling(sizes: list[int], changes: int, poll_every: float) -> list[dict[str, Any]]:
    return [
        bench(
            "polling.py",
            "--accounts",
            str(n),
            "--changes",
            str(changes),
            "--poll-every",
            str(poll_every),
            "--interval",
            "60",
        )
        for n in sizes
    ]


def incident(sizes: list[int], budget: int) -> list[dict[str, Any]]:
    """A run holds its share of the budget for the details that follow the first message:
    at 30/min that is most of a minute, so --quick spends a larger budget."""
    return [bench("incident.py", "--accounts", str(n), "--budget", str(budget)) for n in sizes]


def workspaces_supported() -> bool:
    from late_monitor.config import Settings

    return "workspaces" in Settings.model_fields


def postgres_supported() -> bool:
    from late_monitor.config import StateSettings

    return "url" in StateSettings.model_fields


def workspaces(quick: bool) -> dict[str, Any]:
    """Many workspaces in one daemon: CPU per round and RSS (issue 15; bench/workspaces.py),
    at 10 and 100 workspaces of 500 accounts. Runs when this build has `[[workspaces]]`."""
    if not workspaces_supported():
        return {"skipped": "this build's config has no [[workspaces]]"}
    # (workspaces, accounts each, rounds, interval: long enough for a round of them all)
    sizes = [(2, 100, 2, 3)] if quick else [(10, 500, 3, 10), (100, 500, 3, 30)]
    return {
        "sizes": [
            bench(
                "workspaces.py",
                "--workspaces",
                str(count),
                "--accounts",
                str(accounts),
                "--rounds",
                str(rounds),
                "--interval",
                str(interval),
            )
            for count, accounts, rounds, interval in sizes
        ]
    }


def postgres(url: str, quick: bool) -> dict[str, Any]:
    """Cycle CPU at 10,000 accounts on PostgreSQL next to SQLite (issue 16; target 1.5x).
    Runs when --pg-url is given and this build's config has `[state] url`."""
    if not url:
        return {"skipped": "no --pg-url (or LATE_MONITOR_BENCH_PG_URL) given"}
    if not postgres_supported():
        return {"skipped": "this build's config has no [state] url"}
    sizes = [1000] if quick else [1000, 10000]
    cycles = "1" if quick else "5"
    rows = []
    for n in sizes:
        sqlite = case("--accounts", str(n), "--cycles", cycles)
        pg = case("--accounts", str(n), "--cycles", cycles, "--state-url", url)
        rows.append(
            {
                "accounts": n,
                "sqlite_cpu_s": sqlite["steady"]["cpu_s"],
                "postgres_cpu_s": pg["steady"]["cpu_s"],
                "ratio": pg["steady"]["cpu_s"] / max(sqlite["steady"]["cpu_s"], 1e-9),
                "postgres_peak_rss_mb": pg["peak_rss_mb"],
            }
        )
    return {"sizes": rows}


def steady_table(results: dict[str, Any]) -> str:
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
    return "\n".join(rows)


def targets_table(results: dict[str, Any]) -> str:
    """One row per figure of issue 17: what is measured, the target, the figure."""
    rows = ["| figure | target | measured |", "|---|---|---|"]
    if once_ := results.get("once"):
        for r in once_["sizes"]:
            rows.append(
                f"| `run --once` at {r['accounts']:,} accounts, CPU beyond the smallest run "
                f"({once_['sizes'][0]['accounts']:,}); peak RSS | <= 0.8 s; <= 100 MB (50,000) "
                f"| {r['cpu_beyond_smallest_s']:.2f} s ({r['cpu_s']:.2f} s in all, "
                f"{r['wall_s']:.1f} s wall); {r['peak_rss_mb']:.0f} MB |"
            )
    if cold := results.get("cold_start"):
        rows.append(
            f"| cold `run --once`, 100 accounts, one message, against `{IMPORT_FLOOR}` "
            f"| <= 1.15x | {cold['ratio']:.2f}x (median of {cold['runs']} paired runs' ratios; "
            f"medians {cold['run_once_s']:.2f} s / {cold['import_floor_s']:.2f} s"
            + (
                f"; CPU {cold['run_once_cpu_s']:.2f} s / {cold['import_floor_cpu_s']:.2f} s = "
                f"{cold['cpu_ratio']:.2f}x"
                if "cpu_ratio" in cold
                else ""
            )
            + ") |"
        )
        if "quiet_ratio" in cold:
            rows.append(
                "| the same with nothing new (no message to write: no Jinja2; Apprise's plugin "
                "is loaded all the same, to check the URLs) | - | "
                f"{cold['quiet_run_once_s']:.2f} s, {cold['quiet_ratio']:.2f}x |"
            )
        if "ratio_to_lean_floor" in cold:
            rows.append(
                "| the one-message run against the floor started and ended as our command "
                "line does (no garbage collection while importing, no teardown): what we add "
                f"to the libraries | - | {cold['lean_floor_s']:.2f} s, "
                f"{cold['ratio_to_lean_floor']:.2f}x |"
            )
    for w in results.get("webhooks", []):
        single, burst = w["single"], w["burst"]
        rows.append(
            f"| time to notify, webhook, one at a time ({single['webhooks']}; "
            f"{w['accounts']:,} accounts watched) | median < 1 s | median "
            f"{single['median_s']:.3f} s, p99 {single['p99_s']:.3f} s, worst "
            f"{single['worst_s']:.3f} s |"
        )
        rows.append(
            f"| webhooks at {burst['offered_per_s']}/s for {burst['webhooks']} "
            f"({w['accounts']:,} accounts) | every one answered 2xx and told once "
            f"| {burst['answers_2xx']} 2xx at {burst['sent_per_s']}/s, answer p99 "
            f"{burst['answer_p99_s']:.3f} s; {burst['accounts_told']} told "
            f"({burst['accounts_told_twice']} twice) in {burst['messages']} messages, the last "
            f"{burst['last_message_after_last_webhook_s']:.2f} s after the last webhook; "
            f"daemon CPU {burst['daemon_cpu_s']:.2f} s |"
        )
    for p in results.get("polling", []):
        at, phase = p["at_interval"], p["poll_phase"]
        rows.append(
            f"| time to notify, polling every {p['interval_s']:.0f} s ({p['accounts']:,} "
            f"accounts; wait uniform + poll phase over {p['changes']} changes) | - | median "
            f"{at['median_s']:.1f} s, p99 {at['p99_s']:.1f} s (poll phase median "
            f"{phase['median_s']:.3f} s, p99 {phase['p99_s']:.3f} s) |"
        )
    for i in results.get("incident", []):
        first = "none" if i["first_message_s"] is None else f"{i['first_message_s']:.1f} s"
        rows.append(
            f"| incident: {i['accounts']:,} accounts fail at once, budget "
            f"{i['budget_per_minute']}/min, first message after the `run --once` starts "
            f"| <= 30 s | {first} (run {i['run_s']:.0f} s, {i['messages']} messages, "
            f"{i['detail_requests']} detail requests) |"
        )
    for w in (results.get("workspaces") or {}).get("sizes", []):
        rows.append(
            f"| {w['workspaces']} workspaces of {w['accounts_each']} accounts in one daemon "
            "(1% change per round) | - | CPU per round "
            f"{w['cpu_per_round_median_s']} s (rounds: {w['cpu_per_round_s']}); RSS "
            f"{w['rss_mb']:.0f} MB, peak {w['peak_rss_mb']:.0f} MB |"
        )
    for p in (results.get("postgres") or {}).get("sizes", []):
        rows.append(
            f"| cycle CPU at {p['accounts']:,} accounts, PostgreSQL against SQLite | <= 1.5x | "
            f"{p['postgres_cpu_s']:.3f} s / {p['sqlite_cpu_s']:.3f} s = {p['ratio']:.2f}x |"
        )
    for name in ("workspaces", "postgres"):
        if "skipped" in (section := results.get(name) or {}):
            rows.append(f"| {name} | - | not measured: {section['skipped']} |")
    return "\n".join(rows)


def table(results: dict[str, Any]) -> str:
    lines = []
    if results.get("steady"):
        lines.append(steady_table(results))
    if sweep := results.get("sweep"):
        bound = sweep["accounts"] / sweep["budget_per_minute"] * 60
        wall = sweep["first_cycle"]["wall_s"]
        lines.append(
            f"Full detail sweep, {sweep['accounts']:,} accounts at {sweep['budget_per_minute']}"
            f" requests/min: {wall:.1f} s against a lower bound of {bound:.0f} s "
            f"({wall / bound:.2f}x), {sweep['first_cycle']['requests']} requests, "
            f"{sweep['http_429']} answered 429."
        )
    lines.append(targets_table(results))
    return "\n\n".join(lines)


def check_quick(results: dict[str, Any]) -> None:
    """--quick: each bench ran and told what it should. Never a time."""
    for row in results["once"]["sizes"]:
        assert row["cpu_s"] > 0, row
        assert row["peak_rss_mb"] > 0, row
    for w in results["webhooks"]:
        assert w["burst"]["answers_2xx"] == w["burst"]["webhooks"], w
        assert w["burst"]["accounts_told"] == w["burst"]["webhooks"], w
    for p in results["polling"]:
        assert p["poll_phase"]["median_s"] >= 0, p
    for i in results["incident"]:
        assert i["first_message_s"] is not None, i
        assert i["messages"] >= 1, i
    for w in results["workspaces"].get("sizes", []):
        assert w["messages"] >= w["workspaces"], w  # news in every workspace, each told


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; asserts no times")
    parser.add_argument("--cycles", type=int, default=3, help="steady cycles per size")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LATE_MONITOR_BENCH_PG_URL", ""),
        help="a throwaway PostgreSQL database for the postgres section",
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) - {""} if args.only else set(SECTIONS) - {"sweep"}
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.quick:
        only.discard("sweep")
    everything = only == set(SECTIONS) - {"sweep"}
    quick = args.quick
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": os.getloadavg(),
        },
    }
    cycles = "1" if quick else str(args.cycles)
    plan: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "steady",
            "steady",
            lambda: [
                case("--accounts", str(n), "--cycles", cycles)
                for n in ([1000] if quick else [1000, 10000, 50000])
            ],
        ),
        (
            "sweep",
            "sweep",
            lambda: case(
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
            ),
        ),
        (
            "once",
            "once",
            lambda: once([100, 1000] if quick else [100, 10000, 50000], 1 if quick else 5),
        ),
        ("cold", "cold_start", lambda: cold_start(1 if quick else 11)),
        (
            "webhooks",
            "webhooks",
            lambda: webhooks(
                [(100, 3, 20, 1.0)] if quick else [(1000, 200, 200, 5.0), (10000, 25, 200, 5.0)]
            ),
        ),
        (
            "polling",
            "polling",
            lambda: polling([100] if quick else [1000, 10000], 3 if quick else 20, 1.0),
        ),
        (
            "incident",
            "incident",
            lambda: incident([50] if quick else [200, 1000], 1200 if quick else 30),
        ),
        ("workspaces", "workspaces", lambda: workspaces(quick)),
        ("postgres", "postgres", lambda: postgres(args.pg_url, quick)),
    ]
    results["section_wall_s"] = {}
    for section, key, run in plan:
        if section in only:
            began = time.perf_counter()
            print(f"[{section}] ...", file=sys.stderr, flush=True)
            results[key] = run()
            took = round(time.perf_counter() - began, 1)
            results["section_wall_s"][section] = took
            print(f"[{section}] {took:.0f} s", file=sys.stderr, flush=True)
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_after"] = os.getloadavg()
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / ("quick.json" if quick else "latest.json")).write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\n{results['date']}, {results['bench_wall_s']:.0f} s in all.")
    if quick and everything:
        check_quick(results)


if __name__ == "__main__":
    main()
