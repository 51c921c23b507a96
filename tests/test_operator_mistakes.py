"""Settings an operator gets wrong: each is refused (or warned about) in one line that names the
key and where it was set, through the real command or daemon; secrets are never printed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from late_monitor.config import load_settings, parse_duration
from late_monitor.simulator import DEFAULT_KEY, Fault, Simulator
from tests.support.config import write_config
from tests.support.process import Ran, daemon, run_cli
from tests.support.sink import Sink


def config_errors(ran: Ran) -> list[str]:
    """stderr, which must hold nothing but `late-monitor: config error:` lines."""
    lines = ran.stderr.splitlines()
    assert all(line.startswith("late-monitor: config error: ") for line in lines), ran.output
    assert "Traceback" not in ran.output
    return [line.removeprefix("late-monitor: config error: ") for line in lines]


def log_events(ran: Ran, event: str) -> list[dict[str, object]]:
    found = []
    for line in ran.stdout.splitlines():
        if line.startswith("{") and (entry := json.loads(line))["event"] == event:
            found.append(entry)
    return found


# -- 1. base_url ------------------------------------------------------------------------


async def test_base_url_defaults_to_zernio_and_getlate_still_works_when_set(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    text = config.read_text().replace(f'base_url = "{sim.base_url}"\n', "")
    config.write_text(text)
    ran = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert 'base_url = "https://zernio.com/api/v1"    # from default' in ran.stdout
    env = {**base_env, "LATE_MONITOR_LATE__BASE_URL": "https://getlate.dev/api/v1"}
    ran = await run_cli("config", "check", "--config", str(config), env=env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert (
        'base_url = "https://getlate.dev/api/v1"    # from LATE_MONITOR_LATE__BASE_URL'
        in ran.stdout
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("zernio.com/api/v1", "'zernio.com/api/v1' has no scheme; use https://zernio.com/api/v1"),
        ("ftp://zernio.com/api/v1", "the scheme must be https:// (or http://), not ftp"),
        ("https:///api/v1", "has no valid host"),
    ],
)
async def test_base_url_without_an_http_scheme_exits_2_naming_the_key_and_file(
    value: str, says: str, sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(late={"base_url": value})
    for command in (["run", "--once"], ["config", "check"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 2
        (line,) = config_errors(ran)
        assert line.startswith(f"{config}: late.base_url: ")
        assert says in line
    assert sim.count() == 0
    assert not (tmp_path / "state.db").exists()


async def test_base_url_from_the_environment_names_the_variable(
    monitor_config, base_env, tmp_path: Path
) -> None:
    env = {**base_env, "LATE_MONITOR_LATE__BASE_URL": "zernio.com/api/v1"}
    ran = await run_cli("--once", "--config", str(monitor_config()), env=env, cwd=tmp_path)
    assert ran.code == 2
    assert config_errors(ran) == [
        "LATE_MONITOR_LATE__BASE_URL: late.base_url: 'zernio.com/api/v1' has no scheme; "
        "use https://zernio.com/api/v1"
    ]


async def test_credentials_in_base_url_are_refused_with_the_password_masked(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    # aiohttp will not send both URL credentials and our Bearer header: every poll crashed
    url = sim.base_url.replace("http://", "http://bob:Hunter2Secret@")
    config = monitor_config(late={"base_url": url})
    for command in (["run", "--once"], ["config", "check"], ["check"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert "Hunter2Secret" not in ran.output
        assert "http://bob:***@127.0.0.1" in ran.output
        assert ran.code == (3 if command == ["check"] else 2), ran.output
    assert sim.count() == 0


async def test_plain_http_to_a_remote_host_is_warned_about_once_at_start_and_by_config_check(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    loopback = await run_cli(
        "--once", "--config", str(monitor_config()), env=base_env, cwd=tmp_path
    )
    assert loopback.code == 0, loopback.output
    assert log_events(loopback, "base_url_insecure") == []
    # A remote host, but no API key: `run` warns at its start, then stops (exit 2) before
    # any request, so nothing ever leaves this machine.
    remote = "http://late.example.invalid/api/v1"
    config = monitor_config(late={"base_url": remote, "api_key": ""})
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    (warning,) = log_events(ran, "base_url_insecure")
    assert warning["problem"] == (
        f"{config}: late.base_url: plain http:// to a host that is not this machine sends the "
        "API key unencrypted; use https://"
    )
    config = monitor_config(late={"base_url": remote, "api_key": "sk_test_0123456789"})
    checked = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert checked.code == 0, checked.output
    assert checked.stderr.splitlines() == [f"late-monitor: warning: {warning['problem']}"]


# -- 3. the API key ---------------------------------------------------------------------


def _key_sources(tmp_path: Path, key: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """source name -> (extra [late] settings, extra environment) that give `key` from it."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(key)
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    (creds / "late-api-key").write_text(key)
    return {
        "toml": ({"api_key": key}, {}),
        "LATE_MONITOR_LATE__API_KEY": ({}, {"LATE_MONITOR_LATE__API_KEY": key}),
        "LATE_API_KEY": ({}, {"LATE_API_KEY": key}),
        "api_key_file": ({"api_key_file": str(key_file)}, {}),
        "credential": ({}, {"CREDENTIALS_DIRECTORY": str(creds)}),
    }


def _late_config(path: Path, late: dict[str, str]) -> Path:
    # JSON's string escapes are TOML's: the control characters survive the round trip
    path.write_text("[late]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in late.items()))
    return path


async def test_api_key_whitespace_around_it_is_stripped_from_every_source(
    sim: Simulator, base_env, tmp_path: Path
) -> None:
    for source, (late, env) in _key_sources(tmp_path, f"  {DEFAULT_KEY} \r\n").items():
        config = _late_config(tmp_path / "c.toml", {"base_url": sim.base_url, **late})
        ran = await run_cli("check", "--config", str(config), env={**base_env, **env}, cwd=tmp_path)
        assert (ran.code, ran.stdout[:7]) == (0, "LATE OK"), (source, ran.output)


@pytest.mark.parametrize(
    ("inner", "what"),
    [("\n", "a line break"), ("\r", "a line break"), (" ", "a space"), ("\x1b", "a control")],
)
async def test_api_key_with_a_character_inside_that_no_key_has_exits_2_naming_the_source(
    inner: str, what: str, sim: Simulator, base_env, tmp_path: Path
) -> None:
    key = f"sk_first_half{inner}second_half"
    names = {
        "toml": f"{tmp_path / 'c.toml'}: late.api_key",
        "LATE_MONITOR_LATE__API_KEY": "LATE_MONITOR_LATE__API_KEY",
        "LATE_API_KEY": "LATE_API_KEY",
        "api_key_file": f"late.api_key_file: {tmp_path / 'key.txt'}",
        "credential": f"credential: {tmp_path / 'creds' / 'late-api-key'}",
    }
    for source, (late, env) in _key_sources(tmp_path, key).items():
        config = _late_config(tmp_path / "c.toml", {"base_url": sim.base_url, **late})
        ran = await run_cli(
            "--once", "--config", str(config), env={**base_env, **env}, cwd=tmp_path
        )
        assert ran.code == 2, (source, ran.output)
        (line,) = config_errors(ran)
        assert line.startswith(f"{names[source]}: the API key contains {what}"), line
        assert "first_half" not in ran.output
        assert "second_half" not in ran.output
    assert sim.count() == 0


async def test_a_401_that_echoes_the_key_never_prints_it(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    body = json.dumps({"error": f"Invalid API key {DEFAULT_KEY}"})
    sim.inject(Fault(kind="status", status=401, body=body, count=5))
    ran = await run_cli("--once", "--config", str(monitor_config()), env=base_env, cwd=tmp_path)
    assert ran.code == 1
    assert "late-monitor: poll failed: GET /accounts/health: HTTP 401 Invalid API key ***" in (
        ran.stderr
    )
    assert DEFAULT_KEY not in ran.output


# -- 4. durations -----------------------------------------------------------------------

DURATION_KEYS = {
    "late": ["timeout"],
    "monitor": ["interval", "detail_every", "remind_every"],
    "notify": ["retry_for"],
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "inf", "-inf", "Infinity"])
def test_parse_duration_refuses_nan_and_infinity(value: object) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", '"nan"', '"inf"'])
async def test_nan_or_inf_in_any_duration_key_is_one_line_each(
    literal: str, sink: Sink, base_env, tmp_path: Path
) -> None:
    lines = []
    for section, keys in DURATION_KEYS.items():
        lines += [f"[{section}]", *(f"{key} = {literal}" for key in keys)]
    lines += ["[monitor]", f'token_expiry_warn = ["7d", {literal}]']
    lines += ["[notify]", f'urls = ["{sink.url()}"]', "[late]", 'api_key = "sk_x_12345"']
    config = tmp_path / "c.toml"
    config.write_text(_merge_sections(lines))
    ran = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 2
    problems = config_errors(ran)
    keys = [f"{s}.{k}" for s, ks in DURATION_KEYS.items() for k in ks]
    expected = [*keys, "monitor.token_expiry_warn.1"]
    assert sorted(line.split(": ")[1] for line in problems) == sorted(expected)
    assert all(line.startswith(f"{config}: ") for line in problems)


def _merge_sections(lines: list[str]) -> str:
    """TOML text from lines where a [section] may repeat: each section's keys together."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith("["):
            current = line
            sections.setdefault(current, [])
        else:
            sections[current].append(line)
    return "".join(
        f"{head}\n" + "".join(f"{kv}\n" for kv in body) for head, body in sections.items()
    )


async def test_an_infinite_interval_from_the_environment_names_the_variable(
    monitor_config, base_env, tmp_path: Path
) -> None:
    env = {**base_env, "LATE_MONITOR_MONITOR__INTERVAL": "inf"}
    ran = await run_cli("--once", "--config", str(monitor_config()), env=env, cwd=tmp_path)
    assert ran.code == 2
    assert config_errors(ran) == [
        "LATE_MONITOR_MONITOR__INTERVAL: monitor.interval: a duration must be a finite number "
        "of seconds, not nan or inf"
    ]


# -- 5. LATE_MONITOR_NOTIFY__URLS -------------------------------------------------------


async def test_notify_urls_variable_takes_one_url_or_a_comma_list_as_well_as_json(
    sink: Sink, sink2: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config(notify={"urls": []}))
    for value, sinks in [
        (sink.url("ONLYONE1234"), [sink]),
        (f"{sink.url('FIRST12345')},{sink2.url('SECOND1234')}", [sink, sink2]),
        (f" {sink.url('FIRST12345')} , {sink2.url('SECOND1234')} ", [sink, sink2]),
        (json.dumps([sink2.url("JSONLIST12")]), [sink2]),
    ]:
        env = {**base_env, "LATE_MONITOR_NOTIFY__URLS": value}
        ran = await run_cli("test-notify", "--config", config, env=env, cwd=tmp_path)
        assert ran.code == 0, ran.output
        assert ran.stdout.splitlines() == [
            f"ok      json://127.0.0.1:{s.port}/hook/***" for s in sinks
        ]
    assert len(sink.received) == 3
    assert len(sink2.received) == 3


def test_a_comma_inside_a_url_does_not_split_it() -> None:
    urls = "mailtos://user:pw@example.com?to=a@example.com,b@example.com, json://h/x?k=1,2"
    loaded = load_settings(None, environ={"LATE_MONITOR_NOTIFY__URLS": urls})
    assert [u.get_secret_value() for u in loaded.settings.notify.urls] == [
        "mailtos://user:pw@example.com?to=a@example.com,b@example.com",
        "json://h/x?k=1,2",
    ]


async def test_notify_urls_variable_with_broken_json_names_the_variable(
    monitor_config, base_env, tmp_path: Path
) -> None:
    env = {**base_env, "LATE_MONITOR_NOTIFY__URLS": '["json://h/SECRETTOKEN99"'}
    ran = await run_cli("--once", "--config", str(monitor_config()), env=env, cwd=tmp_path)
    assert ran.code == 2
    (line,) = config_errors(ran)
    assert line.startswith("LATE_MONITOR_NOTIFY__URLS: not valid JSON")
    assert "SECRETTOKEN99" not in ran.output


# -- 6. unknown LATE_MONITOR_ variables -------------------------------------------------


async def test_unknown_late_monitor_variables_are_warned_about_by_name_and_ignored(
    monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    env = {
        **base_env,
        "LATE_MONITOR_MONITR__INTERVAL": "1s",
        "LATE_MONITOR_MONITOR__INTERVALL": "1s",
        "LATE_MONITOR_CONFIG": str(config),
    }
    ran = await run_cli("run", "--once", env=env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    warned = sorted(str(w["problem"]) for w in log_events(ran, "unknown_variable_ignored"))
    assert warned == [
        "LATE_MONITOR_MONITOR__INTERVALL: not a late-monitor setting, ignored; did you mean "
        "LATE_MONITOR_MONITOR__INTERVAL?",
        "LATE_MONITOR_MONITR__INTERVAL: not a late-monitor setting, ignored; did you mean "
        "LATE_MONITOR_MONITOR__INTERVAL?",
    ]
    checked = await run_cli("config", "check", env=env, cwd=tmp_path)
    assert checked.code == 0, checked.output
    assert sorted(checked.stderr.splitlines()) == [f"late-monitor: warning: {w}" for w in warned]
    assert 'interval = "1m"    # from' in checked.stdout  # the typo changed nothing


# -- 7. --config before or after the command --------------------------------------------


async def test_config_option_works_before_and_after_every_command(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = str(monitor_config())
    elsewhere = tmp_path / "elsewhere"  # no ./late-monitor.toml to fall back on
    elsewhere.mkdir()
    for command in (["--once"], ["run", "--once"], ["status"], ["config", "check"], ["check"]):
        for args in (["--config", config, *command], [*command, "--config", config]):
            if command == ["--once"] and args[0] == "--once":
                args = ["--once", "-c", config]
            ran = await run_cli(*args, env=base_env, cwd=elsewhere)
            assert ran.code == 0, (args, ran.output)
    ran = await run_cli("--config", config, "test-notify", env=base_env, cwd=elsewhere)
    assert ran.code == 0, ran.output
    assert sink.titles() == ["Late monitor: test notification"]


async def test_config_option_alone_starts_the_daemon(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "late_monitor",
        "--config",
        str(monitor_config()),
        env=base_env,
        cwd=elsewhere,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            async for line in process.stdout:
                if b'"event": "poll_completed"' in line:
                    break
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- 8. check's usage errors are UNKNOWN ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["-t", "abc"], ["-t", "-5"], ["-t", "0"], ["-t", "nan"], ["--bogus"], ["extra"]],
)
async def test_check_usage_errors_are_unknown_in_one_line(
    args: list[str], monitor_config, base_env, tmp_path: Path
) -> None:
    for argv in (["check", *args], ["--config", str(monitor_config()), "check", *args]):
        ran = await run_cli(*argv, env=base_env, cwd=tmp_path)
        assert ran.code == 3
        (line,) = ran.stdout.splitlines()
        assert line.startswith("LATE UNKNOWN - bad usage: ")
        assert ran.stderr == ""


# -- 9. alerts that can go nowhere ------------------------------------------------------


def _apprise_yaml(path: Path, url: str, tag: str) -> Path:
    path.write_text(f"urls:\n  - {url}:\n      tag: {tag}\n")
    return path


async def test_route_to_a_tag_no_destination_has_is_refused_before_any_poll(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    destinations = _apprise_yaml(tmp_path / "apprise.yml", sink.url(), "oncall")
    config = monitor_config(
        notify={"urls": [], "config": str(destinations), "routes": {"failure": ["oncall", "teem"]}}
    )
    for command in (["config", "check"], ["run", "--once"], ["run"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 2, (command, ran.output)
        assert config_errors(ran) == [
            f"{config}: notify.routes.failure: no destination has the tag 'teem'"
        ]
    assert sim.count() == 0
    assert not (tmp_path / "state.db").exists()
    fixed = monitor_config(
        notify={"urls": [], "config": str(destinations), "routes": {"failure": ["oncall"]}}
    )
    ran = await run_cli("config", "check", "--config", str(fixed), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output


async def test_notify_config_that_is_missing_a_directory_or_empty_is_refused(
    monitor_config, base_env, tmp_path: Path
) -> None:
    (tmp_path / "empty.yml").write_text("# nothing yet\n")
    for value, says in [
        (tmp_path / "nope.yml", f"{tmp_path / 'nope.yml'} does not exist"),
        (tmp_path, f"{tmp_path} is a directory"),
        (tmp_path / "empty.yml", f"{tmp_path / 'empty.yml'} gives no destination"),
    ]:
        config = monitor_config(notify={"urls": [], "config": str(value)})
        for command in (["config", "check"], ["run", "--once"]):
            ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
            assert ran.code == 2, ran.output
            (line,) = config_errors(ran)
            assert line.startswith(f"{config}: notify.config: {says}"), line


async def test_no_destination_at_all_is_refused_except_by_dry_run(
    sim: Simulator, base_env, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.toml",
        {
            "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY},
            "state": {"path": str(tmp_path / "state.db")},
        },
    )
    for command in (["config", "check"], ["run", "--once"], ["run"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 2, (command, ran.output)
        (line,) = config_errors(ran)
        assert line.startswith(f"{config}: notify.urls: no destination, so alerts would go nowhere")
    assert sim.count() == 0
    sim.break_account("acc_00001")
    ran = await run_cli(
        "run", "--once", "--dry-run", "--config", str(config), env=base_env, cwd=tmp_path
    )
    assert ran.code == 0, ran.output
    assert "=== [failure] Late: 1 account needs attention" in ran.stdout


async def test_apprise_url_that_does_not_parse_is_refused_at_start_not_at_first_alert(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(notify={"urls": [sink.url(), "slack://NOTAVALIDSLACKTOKEN"]})
    for command in (["run", "--once"], ["run"], ["config", "check"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 2, (command, ran.output)
        assert config_errors(ran) == [
            f"{config}: notify.urls[1]: Apprise does not accept slack://... "
            "(unknown scheme or bad URL): An invalid Slack (second) Token (None) was specified."
        ]
        assert "NOTAVALIDSLACKTOKEN" not in ran.output
    assert sim.count() == 0
    assert not (tmp_path / "state.db").exists()


async def test_sighup_to_a_config_whose_alerts_go_nowhere_keeps_the_old_one(
    sim: Simulator,
    sink: Sink,
    daemon_config,
    base_env,
    tmp_path: Path,
) -> None:
    config = daemon_config()
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 1)
        for notify in (
            {"routes": {"failure": ["nobody"]}},
            {"urls": ["slack://NOTAVALIDSLACKTOKEN"]},
            {"urls": [], "config": str(tmp_path / "nope.yml")},
        ):
            daemon_config(notify=notify)
            failed = run.count("config_reload_failed")
            run.signal(signal.SIGHUP)
            await run.until(lambda f=failed: run.count("config_reload_failed") == f + 1)
        sim.break_account("acc_00002")
        await run.until(lambda: len(sink.received) == 1)  # still sending on the old config
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    problems = [line for line in run.lines if "config_reload_failed" in line]
    assert "notify.routes.failure: no destination has the tag 'nobody'" in problems[0]
    assert "notify.urls[0]: Apprise does not accept slack://" in problems[1]
    assert "nope.yml does not exist" in problems[2]
    assert run.count("config_reloaded") == 0


# -- a scope that matches nothing ----------------------------------------------------------


async def test_a_platform_typo_is_warned_about_and_check_does_not_call_it_ok(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(late={"platforms": ["Twitter", "twiter"]})
    checked = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert checked.code == 0, checked.output
    assert checked.stderr.splitlines() == [
        f"late-monitor: warning: {config}: late.platforms: 'twiter' is not a platform Late "
        "lists (did you mean 'twitter'?); no account matches it"
    ]
    assert 'platforms = ["twitter", "twiter"]' in checked.stdout  # "Twitter" read as twitter

    typo_only = monitor_config(late={"platforms": ["twiter"]})
    nagios = await run_cli("check", "--config", str(typo_only), env=base_env, cwd=tmp_path)
    assert nagios.code == 1
    assert nagios.stdout.strip() == (
        "LATE WARNING - no account matches the configured scope (platform twiter) | total=0"
    )
    polled = await run_cli("--once", "--config", str(typo_only), env=base_env, cwd=tmp_path)
    assert polled.code == 0, polled.output
    assert log_events(polled, "scope_matches_nothing") != []
