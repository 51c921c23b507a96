"""SIGKILL at random moments while accounts churn: nothing lost, nothing sent more than twice.

The full run is `LATE_MONITOR_KILLS=60 python3 -m pytest tests/faults/test_crash.py`; CI runs
a shorter loop (LATE_MONITOR_KILLS defaults to 20) on every submission.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from late_monitor.simulator import Simulator, make_accounts
from tests.support.config import write_config
from tests.support.process import spawn_daemon
from tests.support.sink import Sink

KILLS = int(os.environ.get("LATE_MONITOR_KILLS", "20"))
SEED = int(os.environ.get("LATE_MONITOR_SEED", "20261129"))
EPOCH = 2.5  # seconds each churned state is held; the daemon polls every 0.4 s


@dataclass(frozen=True)
class Transition:
    account_id: str
    old: str
    new: str
    at: float


@pytest.mark.timeout(60 + int(KILLS * EPOCH * 2))
async def test_sigkill_anywhere_loses_no_transition_and_duplicates_at_most_once(
    tmp_path: Path, sink: Sink, base_env: dict[str, str]
) -> None:
    rng = random.Random(SEED)
    sim = Simulator(make_accounts(8))
    await sim.start()
    config = write_config(
        tmp_path / "late-monitor.toml",
        {
            "late": {
                "base_url": sim.base_url,
                "api_key": sim.api_key,
                "timeout": "5s",
                "max_requests_per_minute": 6000,
            },
            "monitor": {"interval": "0.4s", "detail_every": "0", "remind_every": "0"},
            "state": {"path": str(tmp_path / "state.db")},
            "notify": {"urls": [sink.url()]},
            "log": {"level": "warning", "format": "json"},
        },
    )
    truth: list[Transition] = []
    accounts = sorted(sim.accounts)
    try:
        process = await spawn_daemon(config, env=base_env, cwd=tmp_path)
        await asyncio.sleep(1.5)
        for _ in range(KILLS):
            epoch_start = time.monotonic()
            for account_id in rng.sample(accounts, rng.randint(1, 3)):
                old = sim.accounts[account_id].status
                new = rng.choice([s for s in ("healthy", "warning", "error") if s != old])
                sim.set(account_id, status=new)
                truth.append(Transition(account_id, old, new, epoch_start))
            await asyncio.sleep(rng.uniform(0.05, EPOCH - 1.2))
            process.send_signal(signal.SIGKILL)
            await process.wait()
            process = await spawn_daemon(config, env=base_env, cwd=tmp_path)
            # A state no poll saw cannot be told: the next change waits until the new
            # process has finished a poll (its second request), however slow its start.
            async with asyncio.timeout(20):
                await sim.started(len(sim.authorizations) + 2)
            await asyncio.sleep(max(0.0, epoch_start + EPOCH - time.monotonic()))
        await asyncio.sleep(2.5)  # quiet: let the last state be seen and sent
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        await sim.stop()

    messages = [m["message"] for m in sink.received]
    missed = [
        t
        for t in truth
        if not any(
            f"({t.account_id}): {t.old} -> {t.new}" in m["message"]
            for m in sink.received
            if m["at"] >= t.at
        )
    ]
    longest_repeat, run = 1, 1
    for previous, current in pairwise(messages):
        run = run + 1 if current == previous else 1
        longest_repeat = max(longest_repeat, run)
    duplicates = sum(1 for p, c in pairwise(messages) if p == c)
    print(
        f"\nkills={KILLS} transitions={len(truth)} messages={len(messages)} "
        f"duplicated={duplicates} missed={len(missed)}"
    )
    assert missed == []
    assert longest_repeat <= 2
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone() == (0,)
        statuses = dict(db.execute("SELECT account_id, status FROM accounts").fetchall())
    assert statuses == {a: sim.accounts[a].status for a in accounts}
