"""Time to notify through Late's webhooks, from outside: a real daemon, signed POSTs, a sink.

    python3 bench/webhooks.py                     # 50 one by one, then 200/s for 5 s
    python3 bench/webhooks.py --single 200 --rate 200 --seconds 10 --accounts 10000

The simulator, a json:// sink and the sender run in this process on loopback; the daemon is
`late-monitor run` in its own process (poll interval 1 h: only webhooks tell anything).

- single: one `account.disconnected` at a time for a different account, a second apart (the
  daemon acts on deliveries at most once a second, so that a burst is one digest a second);
  the time from the start of the POST to the message at the sink. Median, p99 and worst.
- burst: `--rate` deliveries per second for `--seconds`, each for its own account: the HTTP
  answers (all must be 2xx), their latency, how many accounts the messages told (each must
  be told exactly once: named, or counted in a cut digest's "... and N more accounts"), the
  time from the last delivery to the last message, and the daemon's CPU seconds over it.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from late_monitor.intake import BATCH_EVERY
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.webhooks import sign

SECRET = "bench-secret-0123456789abcdef0123"  # noqa: S105 (a throwaway for the bench)
_ACCOUNT = re.compile(r"\((acc_\d+)\)")
_MORE = re.compile(r"\.\.\. and (\d+) more accounts")  # a digest cut to fit its destination


def delivery(account: str, number: int) -> bytes:
    return json.dumps(
        {
            "id": f"evt_bench_{number:07d}",
            "event": "account.disconnected",
            "account": {
                "accountId": account,
                "profileId": "prof_1",
                "platform": "twitter",
                "username": f"@{account}",
                "disconnectionType": "unintentional",
                "reason": "Token expired",
            },
            "timestamp": "2026-11-29T10:00:00.000Z",
        }
    ).encode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks


class Arrivals(list[tuple[float, str]]):
    """The messages at the sink (when, text), and an event set by each."""

    def __init__(self) -> None:
        super().__init__()
        self.new = asyncio.Event()

    async def until(self, done: Any, limit: float = 60) -> None:
        async with asyncio.timeout(limit):
            while not done():
                self.new.clear()
                await self.new.wait()


async def measure(single: int, rate: int, seconds: float, accounts: int = 0) -> dict[str, Any]:
    arrivals = Arrivals()

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        arrivals.append((time.perf_counter(), body.get("message", "")))
        arrivals.new.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink_port = runner.addresses[0][1]
    burst_count = int(rate * seconds)
    watched = max(accounts, single + burst_count + 10)
    sim = Simulator(make_accounts(watched))
    await sim.start()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        config = Path(tmp) / "late-monitor.toml"
        config.write_text(
            f'[late]\nbase_url = "{sim.base_url}"\napi_key = "{DEFAULT_KEY}"\n'
            f'[monitor]\ninterval = "1h"\ndetail = "never"\n'
            f'[state]\npath = "{tmp}/state.db"\n'
            f'[notify]\nurls = ["json://127.0.0.1:{sink_port}/hook/BENCHTOKEN01"]\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\n[webhooks]\nsecret = "{SECRET}"\n'
            '[log]\nlevel = "warning"\n'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "late_monitor", "run", "--config", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/webhooks/late"
        try:
            async with aiohttp.ClientSession() as http:
                await _ready(http, f"http://127.0.0.1:{port}/readyz")
                result = {
                    "accounts": watched,
                    "single": await _single(http, url, single, arrivals),
                    "burst": await _burst(http, url, rate, seconds, single, arrivals, process.pid),
                }
        finally:
            process.terminate()
            await process.wait()
    await sim.stop()
    await runner.cleanup()
    return result


async def _ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not become ready")


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> int:
    headers = {"Content-Type": "application/json", "X-Zernio-Signature": sign(SECRET, body)}
    async with http.post(url, data=body, headers=headers) as answer:
        await answer.read()
        return answer.status


async def _single(
    http: aiohttp.ClientSession, url: str, count: int, arrivals: Arrivals
) -> dict[str, Any]:
    latencies = []
    for number in range(count):
        before = len(arrivals)
        started = time.perf_counter()
        assert await _post(http, url, delivery(f"acc_{number:05d}", number)) == 200
        await arrivals.until(lambda: len(arrivals) > before)  # noqa: B023 (awaited here)
        latencies.append(arrivals[before][0] - started)
        await asyncio.sleep(BATCH_EVERY)  # isolated changes: a burst is batched (see burst)
    return {
        "webhooks": count,
        "median_s": round(statistics.median(latencies), 4),
        "p99_s": round(percentile(latencies, 0.99), 4),
        "worst_s": round(max(latencies), 4),
    }


async def _burst(
    http: aiohttp.ClientSession,
    url: str,
    rate: int,
    seconds: float,
    offset: int,
    arrivals: Arrivals,
    pid: int,
) -> dict[str, Any]:
    count = int(rate * seconds)
    before = len(arrivals)
    cpu_before = cpu_seconds(pid)
    answers: list[tuple[int, float]] = []

    async def one(number: int) -> None:
        started = time.perf_counter()
        status = await _post(http, url, delivery(f"acc_{offset + number:05d}", offset + number))
        answers.append((status, time.perf_counter() - started))

    tasks = []
    started = time.perf_counter()
    for number in range(count):
        due = started + number / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(one(number)))
    await asyncio.gather(*tasks)
    last_sent = time.perf_counter()
    sent_for = last_sent - started
    expected = {f"acc_{offset + n:05d}" for n in range(count)}

    def named() -> list[str]:
        return [a for _, text in arrivals[before:] for a in _ACCOUNT.findall(text)]

    def unnamed() -> int:  # counted by a cut digest's last line instead of named
        return sum(int(n) for _, text in arrivals[before:] for n in _MORE.findall(text))

    with contextlib.suppress(TimeoutError):  # then the figures say what is missing
        await arrivals.until(lambda: len(set(named()) & expected) + unnamed() >= count)
    told = named()
    answer_times = [elapsed for _, elapsed in answers]
    return {
        "webhooks": count,
        "offered_per_s": rate,
        "sent_per_s": round(count / sent_for, 1),
        "answers_2xx": sum(1 for status, _ in answers if 200 <= status < 300),
        "answer_median_s": round(statistics.median(answer_times), 4),
        "answer_p99_s": round(percentile(answer_times, 0.99), 4),
        "messages": len(arrivals) - before,
        "accounts_told": len(set(told)) + unnamed(),  # named, plus "... and N more"
        "accounts_named": len(set(told)),
        "accounts_told_twice": len(told) - len(set(told)),
        "last_message_after_last_webhook_s": round(arrivals[-1][0] - last_sent, 3),
        "daemon_cpu_s": round(cpu_seconds(pid) - cpu_before, 2),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=50)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=0, help="accounts watched (at least all)")
    args = parser.parse_args()
    result = asyncio.run(measure(args.single, args.rate, args.seconds, args.accounts))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
