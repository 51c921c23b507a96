"""The daemon's resident memory and CPU time after a stretch of idling.

    python3 bench/daemon_idle.py --minutes 10      # 1,000 simulated accounts, 10 s interval

Starts the simulator and the real `late-monitor run` daemon as processes, waits, then reads
VmRSS from /proc/PID/status and utime + stime from /proc/PID/stat. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cycle_bench import start_simulator


def proc_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(status.split("VmRSS:")[1].split()[0])
    hwm_kb = int(status.split("VmHWM:")[1].split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": rss_kb / 1024,
        "peak_rss_mb": hwm_kb / 1024,
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--interval", default="10s")
    args = parser.parse_args()
    sim, base = start_simulator(args.accounts, 0.0, 600)
    tmp = Path(tempfile.mkdtemp(prefix="late-monitor-idle-"))
    config = tmp / "c.toml"
    config.write_text(
        f'[late]\nbase_url = "{base}/api/v1"\napi_key = "sk_sim_0123456789abcdef"\n'
        f'[monitor]\ninterval = "{args.interval}"\n[state]\npath = "{tmp}/state.db"\n'
        '[log]\nlevel = "warning"\n'
    )
    daemon = subprocess.Popen(
        [shutil.which("late-monitor") or "late-monitor", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(5)
        start = proc_figures(daemon.pid)
        time.sleep(args.minutes * 60)
        end = proc_figures(daemon.pid)
        polls = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sqlite3; print(sqlite3.connect('{tmp}/state.db')"
                ".execute('select count(*) from cycles').fetchone()[0])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        sim.terminate()
        shutil.rmtree(tmp)
    print(
        json.dumps(
            {
                "accounts": args.accounts,
                "interval": args.interval,
                "minutes": args.minutes,
                "polls": int(polls),
                "rss_after_mb": round(end["rss_mb"], 1),
                "rss_after_5s_mb": round(start["rss_mb"], 1),
                "peak_rss_mb": round(end["peak_rss_mb"], 1),
                "cpu_s_over_run": round(end["cpu_s"] - start["cpu_s"], 2),
                "daemon_exit": daemon.returncode,
            }
        )
    )


if __name__ == "__main__":
    main()
