"""Every command as a user runs it: a real process against the simulator and loopback sinks."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

from late_monitor.simulator import DEFAULT_KEY, Simulator
from tests.support.config import write_config
from tests.support.process import run_cli
from tests.support.sink import Sink


async def test_demo_plays_the_story_in_order_and_exits_0(base_env, tmp_path: Path) -> None:
    started = time.monotonic()
    ran = await run_cli("demo", env=base_env, cwd=tmp_path, limit=90)
    assert ran.code == 0, ran.output
    assert time.monotonic() - started < 60
    markers = [
        "=== [failure] Late: 1 account needs attention\n[FAILURE] twitter @acme",
        "=== [warning] Late: 1 account needs attention\n[WARNING] instagram acme.shop",
        "[WARNING] linkedin acme-corp (acc_li_acme): healthy - token expires in 6 days",
        "=== [failure] Late: the Late API is unreachable",
        "=== [success] Late: the Late API answers again",
        # the webhook's check may tell Twitter's recovery before the poll tells Instagram's
        "twitter @acme (acc_tw_acme): error -> healthy - recovered",
        "=== demo finished:",
        "Twitter @acme's news came through Late's webhook",
    ]
    positions = [ran.stdout.find(marker) for marker in markers]
    assert -1 not in positions, ran.stdout
    assert positions == sorted(positions)
    assert "instagram acme.shop (acc_ig_acme): warning -> healthy - recovered" in ran.stdout
    assert "details for" not in ran.stdout  # a webhook's alert needs no follow-up
    assert "Traceback" not in ran.output


async def test_check_gives_ok_warning_critical_and_unknown(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())

    async def check(*extra: str) -> tuple[int, str]:
        ran = await run_cli("check", "--config", config, *extra, env=base_env, cwd=tmp_path)
        return ran.code, ran.stdout

    code, out = await check()
    assert (code, out.splitlines()[0]) == (
        0,
        "LATE OK - all healthy of 5 | total=5 healthy=5 warning=0 error=0 "
        "needs_reconnect=0 expiring_7d=0",
    )
    sim.set("acc_00002", status="warning", issues=["Slow API"])
    code, out = await check()
    assert code == 1
    assert out.startswith("LATE WARNING - 1 warning of 5 |")
    assert "linkedin @linkedin_00002 (acc_00002): warning; Slow API" in out
    sim.break_account("acc_00004")
    code, out = await check()
    assert code == 2
    assert out.startswith("LATE CRITICAL - 1 error, 1 needs reconnect, 1 warning of 5 |")
    assert await check("--warning-only-exit") == (1, out)
    sim.api_key = "rotated"
    code, out = await check()
    assert code == 3
    assert out.startswith("LATE UNKNOWN - API key rejected")
    assert not (tmp_path / "state.db").exists()  # no state written, ever


async def test_check_is_unknown_when_the_api_hangs_and_keeps_its_timeout(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    from late_monitor.simulator import Fault

    sim.inject(Fault(kind="hang", delay=60, count=10))
    started = time.monotonic()
    ran = await run_cli(
        "check", "-t", "1.5", "--config", str(monitor_config()), env=base_env, cwd=tmp_path
    )
    assert ran.code == 3
    assert ran.stdout.startswith("LATE UNKNOWN - no answer from the Late API within 1.5s")
    assert time.monotonic() - started < 10


async def test_check_with_bad_config_is_unknown(base_env, tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", {"monitor": {"interval": "often"}})
    ran = await run_cli("check", "--config", str(bad), env=base_env, cwd=tmp_path)
    assert ran.code == 3
    assert ran.stdout.startswith("LATE UNKNOWN - bad configuration:")


async def test_test_notify_reports_each_destination(
    sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(
        notify={"urls": [sink.url("OKTOKEN1234"), "json://127.0.0.1:9/down/DOWNTOKEN99"]}
    )
    ran = await run_cli("test-notify", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 1
    lines = ran.stdout.splitlines()
    assert lines[0] == f"ok      json://127.0.0.1:{sink.port}/hook/***"
    assert lines[1].startswith("failed  json://127.0.0.1:9/down/***: ")
    assert "OKTOKEN1234" not in ran.output
    assert "DOWNTOKEN99" not in ran.output
    assert sink.titles() == ["Late monitor: test notification"]


async def test_status_json_matches_what_the_sink_received(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    sim.break_account("acc_00001")
    sim.set("acc_00003", status="warning")
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    ran = await run_cli("status", "--json", "--config", config, env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    report = json.loads(ran.stdout)
    noticed = {a["account_id"]: a["status"] for a in report["accounts"] if a["last_notice_at"]}
    assert noticed == {"acc_00001": "error", "acc_00003": "warning"}
    (message,) = sink.received
    named = {
        line.split("(")[1].split(")")[0]
        for line in message["message"].splitlines()
        if line.startswith("[")
    }
    assert named == set(noticed)
    assert report["outbox"] == []
    assert report["cycles"][0]["messages"] == 1
    last = report["cycles"][0]  # the file keeps epoch seconds; the report shows ISO 8601, UTC
    started, finished = (datetime.fromisoformat(last[k]) for k in ("started_at", "finished_at"))
    assert started.utcoffset() == timedelta(0)
    assert started <= finished
    table = await run_cli("status", "--config", config, env=base_env, cwd=tmp_path)
    assert "acc_00001" not in table.stdout  # the table shows usernames
    assert "@instagram_00001  error" in table.stdout


async def test_status_without_a_state_file_says_so(
    monitor_config, base_env, tmp_path: Path
) -> None:
    ran = await run_cli("status", "--config", str(monitor_config()), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "no state file at" in ran.stderr


async def test_config_check_masks_secrets_and_names_sources(
    sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(notify={"urls": [sink.url("URLTOKEN777")]})
    env = {**base_env, "LATE_MONITOR_MONITOR__INTERVAL": "2m"}
    ran = await run_cli("config", "check", "--config", str(config), env=env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert DEFAULT_KEY not in ran.output
    assert "URLTOKEN777" not in ran.output
    assert 'interval = "2m"    # from LATE_MONITOR_MONITOR__INTERVAL' in ran.stdout
    assert "api_key = (set, hidden)" in ran.stdout
    assert ran.stdout.rstrip().endswith("configuration OK")


async def test_config_check_lists_every_problem_and_exits_2(base_env, tmp_path: Path) -> None:
    bad = write_config(
        tmp_path / "bad.toml",
        {
            "late": {"api_key": "sk_should_not_print", "timeout": "-3s"},
            "notify": {"urls": ["nosuchscheme://SECRETPART123"]},
        },
    )
    ran = await run_cli("config", "check", "--config", str(bad), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "late.timeout" in ran.stderr
    assert "sk_should_not_print" not in ran.output
    bad.write_text(
        '[late]\napi_key = "sk_should_not_print"\n[notify]\n'
        'urls = ["nosuchscheme://SECRETPART123"]\n'
    )
    ran = await run_cli("config", "check", "--config", str(bad), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "notify.urls[0]: Apprise does not accept" in ran.stderr
    assert "SECRETPART123" not in ran.output


async def test_dry_run_prints_and_writes_nothing(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    sim.break_account("acc_00000")
    with sqlite3.connect(tmp_path / "state.db") as db:
        before = db.execute("SELECT count(*) FROM cycles").fetchone()[0]
    for _ in range(2):
        ran = await run_cli(
            "run", "--once", "--dry-run", "--config", config, env=base_env, cwd=tmp_path
        )
        assert ran.code == 0, ran.output
        assert "=== [failure] Late: 1 account needs attention" in ran.stdout
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT count(*) FROM cycles").fetchone()[0] == before
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert sink.received == []


async def test_bad_config_exits_2_with_one_line_per_problem(base_env, tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.toml", {"monitor": {"interval": "soon", "unknown": 1}})
    ran = await run_cli("run", "--once", "--config", str(bad), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert ran.stderr.splitlines() == [
        f"late-monitor: config error: {bad}: monitor.interval: a duration like '90s', '5m', "
        "'24h' or '7d' is expected",
        f"late-monitor: config error: {bad}: monitor.unknown: unknown key",
    ]
    missing = await run_cli(
        "--once", "--config", str(tmp_path / "nope.toml"), env=base_env, cwd=tmp_path
    )
    assert missing.code == 2
    assert missing.stderr.strip().endswith("nope.toml: config file not found")


async def test_ten_concurrent_runs_send_one_cycles_worth(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)
    sim.break_account("acc_00002")
    sim.latency = 0.2
    runs = await asyncio.gather(
        *(run_cli("--once", "--config", config, env=base_env, cwd=tmp_path) for _ in range(10))
    )
    assert all(r.code in (0, 1) for r in runs), [r.output for r in runs]
    assert not any("database is locked" in r.output or "Traceback" in r.output for r in runs)
    assert len(sink.received) == 1
    assert "acc_00002" in sink.received[0]["message"]


def test_every_command_help_shows_an_example() -> None:
    import argparse

    from late_monitor.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {}
    for name, sub in commands.choices.items():
        inner = next((a for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
        if inner is None:
            helps[name] = sub.format_help()
        for word, command in inner.choices.items() if inner else ():
            helps[f"{name} {word}"] = command.format_help()
    assert set(helps) == {
        "run",
        "check",
        "status",
        "test-notify",
        "config check",
        "webhooks setup",
        "webhooks status",
        "probe",
        "demo",
        "simulate",
        "reconnect",
        "silence add",
        "silence list",
        "silence expire",
        "ack",
        "migrate",
    }
    assert [name for name, text in helps.items() if "example" not in text] == []


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each command's help (and its subcommands'), by name."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {}
    for name, sub in commands.choices.items():
        helps[name] = sub.format_help()
        for inner in (a for a in sub._actions if isinstance(a, argparse._SubParsersAction)):
            helps.update({f"{name} {w}": c.format_help() for w, c in inner.choices.items()})
    return helps


def test_a_command_line_builds_only_its_command_and_reads_as_the_whole_one() -> None:
    from late_monitor.cli import build_parser

    whole = _helps(build_parser())
    for name in [name for name in whole if " " not in name]:
        alone = _helps(build_parser(name))
        assert {key: whole[key] for key in alone} == alone
        assert {key.split()[0] for key in alone} == {name}
    assert set(_helps(build_parser("no-such-command"))) == set(whole)  # argparse lists them


async def test_a_mistyped_command_is_answered_with_every_command(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    ran = await run_cli("stauts", env=base_env, cwd=tmp_path)
    assert ran.code == 2
    assert "invalid choice: 'stauts'" in ran.stderr
    assert all(name in ran.stderr for name in ("run", "status", "silence", "migrate"))
