"""Late API faults through the real `run --once`: state kept, nothing false reported, one alert."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from late_monitor.simulator import DEFAULT_KEY, Fault, Simulator
from tests.faults.secrets import assert_no_secrets
from tests.support.process import run_cli
from tests.support.sink import Sink

FAULTS = {
    "500 burst": Fault(status=500, count=100),
    "502 with an HTML body": Fault(
        status=502,
        body="<html><h1>502 Bad Gateway</h1></html>",
        content_type="text/html",
        count=100,
    ),
    "hang past the timeout": Fault(kind="hang", delay=30, count=100),
    "connection dropped": Fault(kind="drop", count=100),
    "truncated JSON": Fault(kind="truncate", count=100),
    "JSON of the wrong shape": Fault(kind="shape", count=100),
    "429 longer than we wait": Fault(status=429, headers={"Retry-After": "3600"}, count=100),
}
EXPECTED_LOG = {
    "500 burst": "HTTP 500",
    "502 with an HTML body": "HTTP 502",
    "hang past the timeout": "no answer within 0.5s",
    "connection dropped": "GET /accounts/health",
    "truncated JSON": "body starts:",
    "JSON of the wrong shape": "accounts: Field required",
    "429 longer than we wait": "rate limited for",
}
# Late answered, but not in the documented shape: said as such, never as "unreachable"
UNREADABLE = {"truncated JSON", "JSON of the wrong shape"}
# Requests the server sees per run: 3 attempts, 1 for what retrying cannot fix. A dropped
# connection is re-sent once by aiohttp itself (idempotent GET), so the server sees 2 per attempt.
ATTEMPTS = {
    "truncated JSON": 1,
    "JSON of the wrong shape": 1,
    "429 longer than we wait": 1,
    "connection dropped": 6,
}


def accounts_table(state: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(state) as db:
        return db.execute("SELECT account_id, status, data FROM accounts ORDER BY 1").fetchall()


@pytest.mark.parametrize("name", list(FAULTS))
async def test_a_failing_api_keeps_state_reports_nothing_false_and_alerts_once(
    name: str, sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config(late={"timeout": "0.5s"}, log={"level": "debug"}))
    state = tmp_path / "state.db"
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    sim.break_account("acc_00001")
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert len(sink.received) == 1
    before = accounts_table(state)

    fault = FAULTS[name]
    sim.inject(Fault(**{**fault.__dict__, "path": "/accounts/health"}))
    seen = sim.count("/accounts/health")
    runs = [
        await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path) for _ in range(4)
    ]
    for ran in runs:
        assert ran.code == 1, ran.output
        assert "poll_failed" in ran.stdout
        assert EXPECTED_LOG[name] in ran.stdout
        assert "Traceback" not in ran.output
        assert_no_secrets(ran, DEFAULT_KEY, "SINKTOKEN0001")
    assert accounts_table(state) == before
    assert sim.count("/accounts/health") - seen == 4 * ATTEMPTS.get(name, 3)
    alert = (
        "Late: Late answered in a shape late-monitor cannot read"
        if name in UNREADABLE
        else "Late: the Late API is unreachable"
    )
    assert [m["title"] for m in sink.received[1:]] == [alert]

    sim.faults.clear()
    healed = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    assert healed.code == 0, healed.output
    assert [m["title"] for m in sink.received[2:]] == ["Late: the Late API answers again"]
    assert "acc_00001" not in sink.received[-1]["message"]  # not "recovered": still broken
    assert accounts_table(state)[1][1] == "error"


async def test_connection_refused_is_a_failed_poll(
    sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = str(monitor_config(late={"base_url": f"http://127.0.0.1:{port}/api/v1"}))
    runs = [
        await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path) for _ in range(3)
    ]
    assert [r.code for r in runs] == [1, 1, 1]
    assert all("cannot connect to 127.0.0.1" in r.stderr for r in runs)
    assert sink.titles() == ["Late: the Late API is unreachable"]


async def test_429_with_retry_after_is_waited_out_within_the_budget(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    sim.inject(
        Fault(
            status=429,
            body='{"error": "Rate limit exceeded"}',
            headers={"Retry-After": "1"},
            path="/accounts/health",
        )
    )
    ran = await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert "late_rate_limited" in ran.stdout
    assert sim.count("/accounts/health") == 2
    assert sink.received == []


async def test_an_empty_list_removes_nothing_for_three_polls_and_fifteen_minutes(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    sim.inject(Fault(kind="empty", path="/accounts/health"))
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert sink.received == []
    assert len(accounts_table(tmp_path / "state.db")) == 5

    sim.accounts.clear()
    for _ in range(3):  # three polls in a row, but seconds apart: not yet 15 minutes
        assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert sink.received == []
    kept = accounts_table(tmp_path / "state.db")
    assert len(kept) == 5
    assert all(json.loads(data)["absent_polls"] == 3 for _, _, data in kept)
    # the removal itself, once 15 minutes have passed too: tests/test_rules.py
