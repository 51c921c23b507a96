"""Many workspaces in one daemon (issue 15): config, state, isolation, profile names, blind
spots and the monitor's own key, against real simulators and sinks on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from late_monitor.config import load_settings
from late_monitor.control import add_silence
from late_monitor.daemon import Daemon
from late_monitor.errors import ConfigError
from late_monitor.events import Kind
from late_monitor.messages import CycleRecord
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.simulator.faults import Fault
from late_monitor.state import AccountState, ApiHealth
from late_monitor.store import Store
from late_monitor.workspace_facts import KeyInfo, Profile, parse_keys, parse_profiles, review
from tests.support.clock import Clock
from tests.support.config import toml_value
from tests.support.process import daemon, free_port, run_cli
from tests.support.schema import assert_schema_is_fresh
from tests.support.sink import Sink

CORPUS = Path(__file__).parent / "corpus"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WEEK, DAY = 7 * 86400.0, 86400.0


def value(item: Any) -> str:
    """TOML for a value; table keys quoted (a profile name has spaces)."""
    if isinstance(item, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + "}"
    return toml_value(item)


def write(path: Path, top: dict[str, dict[str, Any]], workspaces: list[dict[str, Any]]) -> Path:
    """A config with [[workspaces]] tables (a workspace's `notify` becomes its sub-table)."""
    lines = []
    for section, values in top.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(item)}" for key, item in values.items()]
    for table in workspaces:
        lines.append("[[workspaces]]")
        notify = table.pop("notify", None)
        lines += [f"{key} = {value(item)}" for key, item in table.items()]
        if notify:
            lines.append("[workspaces.notify]")
            lines += [f"{key} = {value(item)}" for key, item in notify.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- configuration ----------------------------------------------------------------------


def test_workspaces_take_their_keys_from_table_file_variable_and_credential(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "beta.key"
    key_file.write_text("sk_beta_from_file\n")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "late-api-key-gamma").write_text("sk_gamma_credential")
    config = write(
        tmp_path / "c.toml",
        {"late": {"base_url": "http://127.0.0.1:1/api/v1", "max_requests_per_minute": 40}},
        [
            {"name": "alpha", "api_key": "sk_alpha_in_table"},
            {"name": "beta", "api_key_file": str(key_file), "max_requests_per_minute": 10},
            {"name": "gamma", "interval": "2m", "platforms": ["TikTok"]},
            {"name": "delta-co"},
        ],
    )
    loaded = load_settings(
        str(config),
        environ={
            "CREDENTIALS_DIRECTORY": str(credentials),
            "LATE_MONITOR_WORKSPACES__DELTA_CO__API_KEY": "sk_delta_variable",
        },
    )
    views = {view.workspace: view for view in loaded.workspaces}
    assert list(views) == ["alpha", "beta", "gamma", "delta-co"]
    assert {name: view.require_api_key() for name, view in views.items()} == {
        "alpha": "sk_alpha_in_table",
        "beta": "sk_beta_from_file",
        "gamma": "sk_gamma_credential",
        "delta-co": "sk_delta_variable",
    }
    assert views["delta-co"].api_key_source == "LATE_MONITOR_WORKSPACES__DELTA_CO__API_KEY"
    assert views["gamma"].api_key_source == "systemd credential late-api-key-gamma"
    assert views["beta"].settings.late.max_requests_per_minute == 10
    assert views["alpha"].settings.late.max_requests_per_minute == 40  # from [late]
    assert views["gamma"].settings.monitor.interval == 120
    assert views["gamma"].settings.late.platforms == ["tiktok"]
    assert all(view.label == view.workspace for view in views.values())
    assert loaded.named
    assert loaded.workspace_named("ALPHA") is views["alpha"]


def test_a_config_without_workspaces_is_one_implicit_workspace(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", {"late": {"api_key": "sk_single"}}, [])
    loaded = load_settings(str(config), environ={})
    assert loaded.workspaces == (loaded,)
    assert (loaded.workspace, loaded.label, loaded.named) == ("default", "", False)


@pytest.mark.parametrize(
    ("tables", "environ", "expected"),
    [
        (
            [{"name": "acme", "api_key": "a"}, {"name": "ACME", "api_key": "b"}],
            {},
            "workspaces[1].name: 'ACME' is already the name of another workspace ('acme')",
        ),
        (  # both would read LATE_MONITOR_WORKSPACES__A_B__API_KEY: one client's key for two
            [{"name": "a-b", "api_key": "a"}, {"name": "a_b", "api_key": "b"}],
            {},
            "workspaces[1].name: 'a_b' is already the name of another workspace ('a-b')",
        ),
        ([{"name": "acme co", "api_key": "a"}], {}, "workspaces.0.name: 'acme co': a workspace"),
        (
            [{"name": "acme", "api_key": "a", "api_key_file": "/k"}],
            {},
            "workspaces[acme]: api_key and api_key_file are both set; keep one",
        ),
        ([{"name": "acme", "colour": "red"}], {}, "workspaces.0.colour: unknown key"),
        (
            [{"name": "acme", "api_key": "a", "notify": {"routes": {"profile": ["x"]}}}],
            {},
            "profile routes are a table of profile name -> tags",
        ),
        (  # a bare string: said in the same words, not as two lines of type names
            [{"name": "acme", "api_key": "a", "notify": {"routes": {"profile": "x"}}}],
            {},
            "profile routes are a table of profile name -> tags",
        ),
    ],
)
def test_workspace_mistakes_are_one_line_naming_the_table(
    tmp_path: Path, tables: list[dict[str, Any]], environ: dict[str, str], expected: str
) -> None:
    config = write(tmp_path / "c.toml", {}, tables)
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ=environ)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


async def test_a_workspace_without_a_key_names_its_variable_and_credential(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    config = write(
        tmp_path / "c.toml",
        {"notify": {"urls": ["json://127.0.0.1:9/x"]}, "state": {"path": str(tmp_path / "s.db")}},
        [{"name": "acme", "api_key": "sk_acme"}, {"name": "beta-co"}],
    )
    env = {**base_env, "LATE_MONITOR_WORKSPACES__GAMMA__API_KEY": "sk_secret_never_shown"}
    ran = await run_cli("run", "--once", "--config", str(config), env=env, cwd=tmp_path)
    assert ran.code == 2
    assert (
        "workspaces[beta-co].api_key: no API key; set api_key or api_key_file in its "
        "[[workspaces]] table, LATE_MONITOR_WORKSPACES__BETA_CO__API_KEY, or the systemd "
        "credential late-api-key-beta-co"
    ) in ran.stderr
    assert "sk_secret_never_shown" not in ran.output


# -- the state file ---------------------------------------------------------------------


def test_a_state_file_of_the_previous_release_is_migrated_into_the_default_workspace(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    shutil.copy(CORPUS / "state-v5.db", path)  # written by 0.3 (schema 5), before workspaces
    store = Store.open(path)
    try:
        assert sorted(store.load_states()) == ["acc_1", "acc_2"]
        assert store.load_states()["acc_1"].status == "error"
        counted = {  # schema 7 keeps each account's platform beside its status
            (s.status, s.platform): 1 for s in store.load_states().values()
        }
        assert store.status_counts() == counted
        assert list(store.load_acks()) == ["acc_1"]
        assert [row.destination for row in store.pending_deliveries()] == ["k1"]
        assert store.read_meta("scope") == {"base_url": "http://x"}
        other = store.scoped("acme")
        assert other.load_states() == {}
        assert other.load_acks() == {}
        assert other.pending_deliveries() == []
        assert other.read_meta("scope") is None
        assert store.workspaces() == ["default"]
    finally:
        store.close()
    assert_schema_is_fresh(path, tmp_path)


def test_workspaces_keep_the_same_account_id_apart(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        record = CycleRecord(
            started_at=NOW, finished_at=NOW, outcome="ok", accounts=1, events=0, requests=1
        )
        for workspace, status in (("acme", "error"), ("beta", "healthy")):
            view = store.scoped(workspace)
            state = AccountState(
                account_id="acc_1",
                platform="tiktok",
                username="@t",
                status=status,
                needs_reconnect=False,
                can_post=True,
                since=NOW,
            )
            view.commit_cycle(
                states={"acc_1": state},
                changed=["acc_1"],
                removed=(),
                api=ApiHealth(consecutive_failures=3 if workspace == "acme" else 0),
                messages=(),
                record=record,
            )
        assert store.scoped("acme").load_states()["acc_1"].status == "error"
        assert store.scoped("beta").load_states()["acc_1"].status == "healthy"
        assert store.scoped("acme").load_api_health().consecutive_failures == 3
        assert store.scoped("beta").load_api_health().consecutive_failures == 0
        assert store.load_states() == {}  # the implicit workspace has none
        assert store.scoped("acme") is store.scoped("acme")
        assert store.workspaces() == ["acme", "beta"]
    finally:
        store.close()


# -- what a workspace's own Late account says (pure) -------------------------------------


def key(**changes: Any) -> KeyInfo:
    values: dict[str, Any] = {
        "name": "monitor",
        "preview": "sk_12345678...abcdef01",
        "expires_at": None,
        "scope": "full",
        "profiles": (),
        "permission": "read",
    }
    return KeyInfo(**(values | changes))


def test_the_key_in_use_is_found_by_its_preview() -> None:
    listed = parse_keys(
        {
            "apiKeys": [
                {"keyPreview": "sk_12345678...abcdef01", "scope": "bogus", "permission": None},
                {"keyPreview": "short"},
                "junk",
                {"name": "x"},
            ]
        }
    )
    assert len(listed) == 2
    assert listed[0].matches("sk_12345678_middle_abcdef01")
    assert not listed[0].matches("sk_12345678_middle_abcdef02")
    assert not listed[1].matches("short")
    assert (listed[0].scope, listed[0].permission) == ("full", "read-write")


def test_profiles_are_read_tolerantly() -> None:
    assert parse_profiles(
        {
            "profiles": [
                {"_id": "p1", "name": " Acme Coffee ", "isOverLimit": True},
                {"_id": "p2", "name": None},
                {"name": "no id"},
                7,
            ]
        }
    ) == [Profile("p1", "Acme Coffee", True), Profile("p2", "p2", False)]
    assert parse_profiles({"profiles": None}) == [] == parse_profiles([])


def test_key_expiry_is_told_once_per_threshold_and_again_for_a_new_date() -> None:
    expires = NOW + timedelta(days=5)
    told, events = review(
        {}, key=key(expires_at=expires), profiles=[], now=NOW, thresholds=(WEEK, DAY)
    )
    assert [(e.kind, str(e.notify_type)) for e in events] == [(Kind.KEY_EXPIRING, "warning")]
    assert "expires 2026-12-05 12:00 UTC (in 5 days)" in events[0].note
    again, events = review(
        told, key=key(expires_at=expires), profiles=[], now=NOW, thresholds=(WEEK, DAY)
    )
    assert events == []
    later = NOW + timedelta(days=4, hours=12)
    told, events = review(
        again, key=key(expires_at=expires), profiles=[], now=later, thresholds=(WEEK, DAY)
    )
    assert [e.kind for e in events] == [Kind.KEY_EXPIRING]
    gone = expires + timedelta(minutes=1)
    told, events = review(
        told, key=key(expires_at=expires), profiles=[], now=gone, thresholds=(WEEK, DAY, 0)
    )
    assert [str(e.notify_type) for e in events] == ["failure"]
    assert "expired" in events[0].note
    renewed = NOW + timedelta(days=365)
    _, events = review(
        told, key=key(expires_at=renewed), profiles=[], now=gone, thresholds=(WEEK, DAY)
    )
    assert events == []  # a new, far date: nothing to say until it comes near


def test_blind_spots_and_a_writable_key_are_told_once() -> None:
    scoped = key(scope="profiles", profiles=("Acme Coffee",), permission="read-write")
    profiles = [Profile("p1", "Acme Coffee"), Profile("p2", "Old Brand", over_limit=True)]
    told, events = review({}, key=scoped, profiles=profiles, now=NOW, thresholds=())
    assert sorted(e.kind for e in events) == sorted([Kind.BLIND_SPOT, Kind.KEY_WRITABLE])
    spot = next(e for e in events if e.kind is Kind.BLIND_SPOT)
    assert "limited to 1 profile (Acme Coffee)" in spot.note
    assert "1 profile is over the plan's limit (Old Brand)" in spot.note
    told, events = review(told, key=scoped, profiles=profiles, now=NOW, thresholds=())
    assert events == []
    # a listing that failed changes nothing; a new over-limit profile is news again
    told, events = review(told, key=None, profiles=None, now=NOW, thresholds=())
    assert events == []
    # one listing failing, then back: the other's blind spot is not told again, nor this one's
    for seen_key, seen_profiles in ((None, profiles), (scoped, None)):
        told, events = review(told, key=seen_key, profiles=seen_profiles, now=NOW, thresholds=())
        assert events == [], seen_key
        told, events = review(told, key=scoped, profiles=profiles, now=NOW, thresholds=())
        assert events == [], seen_key
    more = [*profiles, Profile("p3", "Third", over_limit=True)]
    told, events = review(told, key=scoped, profiles=more, now=NOW, thresholds=())
    assert [e.kind for e in events] == [Kind.BLIND_SPOT]
    # all clear: remembered silently, so that a new blind spot is told again later
    told, events = review(told, key=key(), profiles=[Profile("p1", "A")], now=NOW, thresholds=())
    assert events == []
    assert told["blind"] == ""


# -- one daemon, three workspaces -------------------------------------------------------

ADMIN = "admin-token-0123456789abcdef"


async def fetch(port: int, path: str, form: dict[str, str] | None = None) -> bytes:
    """GET (or with `form`, POST as the admin) a path of the daemon's HTTP server."""

    def call() -> bytes:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
        if form is not None:
            request.add_header("Authorization", f"Bearer {ADMIN}")
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (loopback)
            return bytes(answer.read())

    return await asyncio.to_thread(call)


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, Simulator]]:
    running = {
        "alpha": Simulator(make_accounts(3), api_key="sk_alpha_0123456789abcdef"),
        "beta": Simulator(make_accounts(3), api_key="sk_beta_0123456789abcdef"),
        "gamma": Simulator(make_accounts(6), api_key="sk_gamma_0123456789abcdef"),
    }
    for sim in running.values():
        await sim.start()
    yield running
    for sim in running.values():
        await sim.stop()


@pytest.fixture
async def sink3() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


async def test_one_daemon_keeps_three_workspaces_apart(
    tmp_path: Path,
    base_env: dict[str, str],
    sims: dict[str, Simulator],
    sink: Sink,
    sink2: Sink,
    sink3: Sink,
) -> None:
    """alpha's key is revoked, beta's API is down, gamma has an account that breaks: each
    sink hears only of its own workspace, with the workspace in every title; gamma's
    messages name the profile; /metrics, status and check speak per workspace."""
    sims["beta"].inject(Fault(status=503, count=100_000))
    gamma = sims["gamma"]
    gamma.profiles = {
        "prof_1": {"name": "Acme Coffee"},
        "prof_2": {"name": "Bolt Bikes"},
        "prof_3": {"name": "Old Brand", "isOverLimit": True},
    }
    gamma.key_info = {
        "scope": "full",
        "permission": "read-write",
        "expiresAt": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    }
    acme = tmp_path / "apprise.yml"  # gamma's destinations: acme's channel and the agency's
    acme.write_text(
        "urls:\n"
        f"  - json://127.0.0.1:{sink3.port}/acme/TOKENACME0001:\n"
        "      tag: acme\n"
        f"  - json://127.0.0.1:{sink3.port}/agency/TOKENAGENCY01\n"
    )
    port = free_port()
    config = write(
        tmp_path / "late-monitor.toml",
        {
            "late": {"timeout": "2s", "max_requests_per_minute": 600},
            "monitor": {"interval": "1s", "detail_every": "0", "api_failure_after": 2},
            "state": {"path": str(tmp_path / "state.db")},
            "http": {"listen": f"127.0.0.1:{port}", "admin_token": ADMIN},
            "log": {"level": "info", "format": "json"},
        },
        [
            {
                "name": "alpha",
                "base_url": sims["alpha"].base_url,
                "api_key": "sk_alpha_revoked_0000",
                "notify": {"urls": [sink.url()]},
            },
            {
                "name": "beta",
                "base_url": sims["beta"].base_url,
                "api_key": "sk_beta_0123456789abcdef",
                "notify": {"urls": [sink2.url()]},
            },
            {
                "name": "gamma",
                "base_url": gamma.base_url,
                "notify": {"config": str(acme), "routes": {"profile": {"acme coffee": ["acme"]}}},
            },
        ],
    )
    env = {**base_env, "LATE_MONITOR_WORKSPACES__GAMMA__API_KEY": "sk_gamma_0123456789abcdef"}
    received = sink3.received
    async with daemon(config, env, tmp_path) as running:
        await running.until(lambda: running.count("poll_completed") >= 6, limit=30)
        await running.until(lambda: any("first seen" in m["message"] or True for m in received))
        broken = next(a for a in gamma.accounts.values() if a.profile_id == "prof_1")
        other = next(a for a in gamma.accounts.values() if a.profile_id == "prof_2")
        gamma.break_account(broken.account_id)
        gamma.break_account(other.account_id)
        await running.until(lambda: sum("needs attention" in m["title"] for m in received) >= 2)
        await running.until(lambda: len(sink2.received) >= 1, limit=20)
        metrics = await fetch(port, "/metrics")
        overall = json.loads(await fetch(port, "/status"))
        one = json.loads(await fetch(port, "/status?workspace=GAMMA"))  # case aside
        page = (await fetch(port, "/?workspace=beta")).decode()
        acked = json.loads(
            await fetch(
                port, "/actions/ack", {"account_id": broken.account_id, "workspace": "gamma"}
            )
        )
        running.process.terminate()
        assert await running.wait() == 0
        log = "".join(running.lines)

    # the HTTP side speaks per workspace too
    assert set(overall["workspaces"]) == {"alpha", "beta", "gamma"}
    assert one["workspace"] == "gamma"
    assert len(one["accounts"]) == 6
    assert "<h1>late-monitor / beta</h1>" in page
    assert "href='/?workspace=gamma'" in page
    assert acked["ok"] is True
    store = Store.open(tmp_path / "state.db")
    try:
        assert list(store.scoped("gamma").load_acks()) == [broken.account_id]
        assert store.scoped("alpha").load_acks() == {}
    finally:
        store.close()

    # alpha: its revoked key, told to alpha's sink only
    assert [m["title"] for m in sink.received] == ["Late [alpha]: the Late API rejects the API key"]
    # beta: unreachable after 2 failed polls, told to beta's sink only
    assert sink2.titles() == ["Late [beta]: the Late API is unreachable"]
    # gamma: acme's channel hears of Acme Coffee alone; the agency's of everything else
    by_path: dict[str, list[dict[str, Any]]] = {"acme": [], "agency": []}
    for message in received:
        by_path[message["path"].split("/")[1]].append(message)
    assert all(m["title"].startswith("Late [gamma]: ") for m in received)
    acme_text = "".join(m["message"] for m in by_path["acme"])
    agency_text = "".join(m["message"] for m in by_path["agency"])
    assert f"Acme Coffee / {broken.platform} {broken.username}" in acme_text
    assert "Bolt Bikes" not in acme_text
    assert broken.account_id not in agency_text
    assert f"Bolt Bikes / {other.platform} {other.username}" in agency_text
    # the look at gamma's own account: told once, to the agency (no profile)
    assert agency_text.count("over the plan's limit (Old Brand)") == 1
    assert agency_text.count("make a new one") == 1
    assert agency_text.count("can write") == 1
    for text in (acme_text, agency_text):
        assert "alpha" not in text
        assert "beta" not in text
    # each workspace's own counters and labels
    lines = metrics.decode().splitlines()
    assert 'late_monitor_polls_total{outcome="auth_failed",workspace="alpha"}' in "\n".join(
        line.split(" ")[0] for line in lines
    )
    assert any(
        line.startswith('late_monitor_polls_total{outcome="api_failed",workspace="beta"}')
        for line in lines
    )
    assert any(
        line.startswith('late_monitor_polls_total{outcome="ok",workspace="gamma"}')
        for line in lines
    )
    for secret in (
        "sk_alpha_revoked_0000",
        "sk_beta_0123456789abcdef",
        "sk_gamma_0123456789abcdef",
    ):
        assert secret not in log

    status = await run_cli("status", "--json", "--config", str(config), env=env, cwd=tmp_path)
    assert status.code == 0, status.output
    report = json.loads(status.stdout)
    assert set(report["workspaces"]) == {"alpha", "beta", "gamma"}
    assert len(report["workspaces"]["gamma"]["accounts"]) == 6
    assert report["workspaces"]["alpha"]["accounts"] == []
    table = await run_cli("status", "--config", str(config), "-w", "gamma", env=env, cwd=tmp_path)
    assert table.code == 0, table.output
    assert broken.username in table.stdout, table.output
    assert "sk_gamma" not in table.output

    check = await run_cli("check", "--config", str(config), "-w", "alpha", env=env, cwd=tmp_path)
    assert check.code == 3, check.output
    assert "LATE UNKNOWN - API key rejected" in check.stdout, check.output
    check = await run_cli("check", "--config", str(config), "-w", "gamma", env=env, cwd=tmp_path)
    assert check.code == 2, check.output
    assert "2 error" in check.stdout, check.output
    nobody = await run_cli("check", "--config", str(config), "-w", "zeta", env=env, cwd=tmp_path)
    assert nobody.code == 3, nobody.output
    assert "no workspace named 'zeta'" in nobody.stdout, nobody.output


async def test_two_workspaces_of_one_user_share_its_budget_and_cron_runs_them_all(
    tmp_path: Path, base_env: dict[str, str], sink: Sink, sink2: Sink
) -> None:
    """Two profiles of one Late user (one key) as two workspaces: `run --once` polls both,
    each filtered to its profile, each message to its own sink, and both share one budget."""
    sim = Simulator(make_accounts(6))
    await sim.start()
    try:
        sim.break_account("acc_00001")  # prof_2
        sim.break_account("acc_00002")  # prof_3
        config = write(
            tmp_path / "c.toml",
            {
                "late": {
                    "api_key": DEFAULT_KEY,
                    "base_url": sim.base_url,
                    "max_requests_per_minute": 600,
                },
                "monitor": {"detail": "never"},
                "state": {"path": str(tmp_path / "state.db")},
                "log": {"level": "info", "format": "json"},
            },
            [
                {"name": "two", "profile_id": "prof_2", "notify": {"urls": [sink.url()]}},
                {"name": "three", "profile_id": "prof_3", "notify": {"urls": [sink2.url()]}},
            ],
        )
        ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 0, ran.output
        assert sink.titles() == ["Late [two]: 1 account needs attention"]
        assert sink2.titles() == ["Late [three]: 1 account needs attention"]
        assert "acc_00001" in sink.received[0]["message"]
        assert "acc_00002" in sink2.received[0]["message"]
        assert '"event": "budget_shared"' in ran.stderr + ran.stdout
        again = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
        assert again.code == 0
        assert len(sink.received) == len(sink2.received) == 1
        assert sim.count("/profiles") == 2  # once an hour per workspace, not per run
    finally:
        await sim.stop()


async def test_the_daemon_shares_one_users_budget_and_remembers_it_across_a_restart(
    tmp_path: Path, base_env: dict[str, str], sink: Sink, sink2: Sink
) -> None:
    """Two workspaces of one Late user in the daemon (not only `run --once`): they share a
    budget from the first look, and again after a restart within the hour (no new look)."""
    sim = Simulator(make_accounts(4))
    await sim.start()
    try:
        config = write(
            tmp_path / "c.toml",
            {
                "late": {"api_key": DEFAULT_KEY, "base_url": sim.base_url},
                "monitor": {"interval": "1h", "detail": "never"},
                "state": {"path": str(tmp_path / "state.db")},
                "log": {"level": "info", "format": "json"},
            },
            [
                {"name": "two", "profile_id": "prof_2", "notify": {"urls": [sink.url()]}},
                {"name": "three", "profile_id": "prof_3", "notify": {"urls": [sink2.url()]}},
            ],
        )
        for _ in range(2):  # the second start finds the look less than an hour old
            async with daemon(config, base_env, tmp_path) as running:
                await running.until(lambda: running.count("poll_completed") >= 2, limit=30)
                running.process.terminate()
                assert await running.wait() == 0
            assert running.count("budget_shared") == 1, "".join(running.lines)
        assert sim.count("/users") == 2  # one look per workspace, by the first process
    finally:
        await sim.stop()


async def test_check_gives_every_workspace_the_same_timeout_at_once(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator]
) -> None:
    """`check -t 4` over three workspaces whose APIs all hang answers UNKNOWN within about
    4 s, not 3 x 4 s: Nagios kills a plugin that outlives its own timeout. Timed against a
    one-workspace check on the same machine, so that a loaded machine's slow start counts on
    both sides (three clients' set-up took up to 4 s more under CI's load)."""
    for sim in sims.values():
        sim.inject(Fault(kind="hang", count=100))
    took = {}
    for count in (1, 3):
        config = write(
            tmp_path / f"c{count}.toml",
            {"state": {"path": str(tmp_path / "state.db")}},
            [
                {"name": name, "base_url": sim.base_url, "api_key": sim.api_key}
                for name, sim in list(sims.items())[:count]
            ],
        )
        started = asyncio.get_running_loop().time()
        ran = await run_cli("check", "-t", "4", "--config", str(config), env=base_env, cwd=tmp_path)
        took[count] = asyncio.get_running_loop().time() - started
        assert ran.code == 3, ran.output
        assert ran.stdout.count("no answer from the Late API within 4s") == count, ran.output
    assert took[3] < took[1] + 6, took  # at once; one after another: one's time + 8 s and more


def polls_of(running: Any, workspace: str) -> int:
    return sum(
        '"event": "poll_completed"' in line and f'"workspace": "{workspace}"' in line
        for line in running.lines
    )


async def test_a_reload_while_one_workspaces_api_hangs_holds_back_no_other(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink
) -> None:
    """alpha's API hangs (each request until late.timeout, three tries); a SIGHUP then must
    not stop beta's polls until alpha's cycle gives up, and a workspace the reload removes
    is polled no more."""
    sims["alpha"].inject(Fault(kind="hang", count=100_000))
    tables = [
        {"name": name, "base_url": sims[name].base_url, "api_key": sims[name].api_key}
        for name in ("alpha", "beta", "gamma")
    ]
    top: dict[str, dict[str, Any]] = {
        "late": {"timeout": "20s", "max_requests_per_minute": 6000},
        "monitor": {"interval": "1s", "detail": "never"},
        "notify": {"urls": [sink.url()]},
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"level": "info", "format": "json"},
    }
    config = write(tmp_path / "c.toml", top, [dict(t) for t in tables])
    async with daemon(config, base_env, tmp_path) as running:
        await running.until(lambda: polls_of(running, "beta") >= 2, limit=20)
        write(tmp_path / "c.toml", top, [dict(t) for t in tables[:2]])  # gamma goes
        running.signal(signal.SIGHUP)
        await running.until(lambda: running.count("config_reloaded") == 1, limit=10)
        before = polls_of(running, "beta"), polls_of(running, "gamma")
        await running.until(lambda: polls_of(running, "beta") >= before[0] + 3, limit=10)
        assert polls_of(running, "gamma") == before[1]


async def test_one_workspaces_hanging_destination_delays_no_others_alert(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink, sink2: Sink
) -> None:
    """alpha's destination takes every message and never answers (15 s a try); beta's news,
    at the same moment, reaches beta's sink within a few seconds, not after alpha's sends."""
    sink.hang = 20
    config = write(
        tmp_path / "c.toml",
        {
            "late": {"max_requests_per_minute": 6000},
            "monitor": {"interval": "1s", "detail": "never"},
            "state": {"path": str(tmp_path / "state.db")},
            "log": {"level": "info", "format": "json"},
        },
        [
            {
                "name": name,
                "base_url": sims[name].base_url,
                "api_key": sims[name].api_key,
                "notify": {"urls": [own.url()]},
            }
            for name, own in (("alpha", sink), ("beta", sink2))
        ],
    )
    async with daemon(config, base_env, tmp_path) as running:
        await running.until(lambda: polls_of(running, "beta") >= 2, limit=20)
        sims["alpha"].break_account("acc_00000")
        await running.until(lambda: sink.posts >= 1, limit=10)  # alpha's send now hangs
        sims["beta"].break_account("acc_00000")
        broke = asyncio.get_running_loop().time()
        await running.until(lambda: len(sink2.received) >= 1, limit=30)
        took = asyncio.get_running_loop().time() - broke
    assert sink2.titles() == ["Late [beta]: 1 account needs attention"]
    assert took < 10, took  # held back by alpha's send, it would wait its 15-s read timeout


def in_process(
    tmp_path: Path,
    sims: dict[str, Simulator],
    sinks: tuple[Sink, Sink],
    clock: Clock,
    **monitor: str,
) -> Daemon:
    """A daemon in this process, on `clock`, over alpha and beta, each with its own sink."""
    config = write(
        tmp_path / "c.toml",
        {
            "late": {"max_requests_per_minute": 6000},
            "monitor": {"detail": "never", **monitor},
            "state": {"path": str(tmp_path / "state.db")},
        },
        [
            {
                "name": name,
                "base_url": sims[name].base_url,
                "api_key": sims[name].api_key,
                "notify": {"urls": [own.url()]},
            }
            for name, own in zip(("alpha", "beta"), sinks, strict=True)
        ],
    )
    return Daemon(load_settings(str(config), environ={}), config_arg=str(config), clock=clock)


async def test_a_silence_that_ends_reannounces_in_every_workspace_it_held_back(
    tmp_path: Path, sims: dict[str, Simulator], sink: Sink, sink2: Sink
) -> None:
    """Silences are the daemon's: one over acc_00001 holds back alpha's and beta's; when it
    ends, each workspace announces its own still-broken account, not only the first to poll."""
    clock = Clock()
    daemon = in_process(tmp_path, sims, (sink, sink2), clock, remind_every="24h")
    try:
        for name in ("alpha", "beta"):
            await daemon.poll(name)
        add_silence(
            daemon.store,
            matchers={"account": ["acc_00001"]},
            ends_at=clock.now + timedelta(hours=2),
            reason="migrating",
            created_by="alice",
            now=clock.now,
        )
        for name in ("alpha", "beta"):
            sims[name].break_account("acc_00001")
        clock.advance(minutes=5)
        for name in ("alpha", "beta"):
            await daemon.poll(name)
        assert sink.received == sink2.received == []
        clock.advance(hours=2)
        for name in ("alpha", "beta"):
            await daemon.poll(name)
        assert sink.titles() == ["Late [alpha]: 1 account needs attention"]
        assert sink2.titles() == ["Late [beta]: 1 account needs attention"]
        assert "silence #1 ended" in sink2.received[0]["message"]
        clock.advance(minutes=5)
        for name in ("alpha", "beta"):
            await daemon.poll(name)
        assert len(sink.received) == len(sink2.received) == 1  # once each
    finally:
        for unit in daemon.units.values():
            await unit.deps.client.close()
        daemon.store.close()


async def test_a_workspace_removed_by_a_reload_leaves_no_stale_gauges(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink
) -> None:
    """After a reload drops gamma, /metrics stops showing its last success, accounts and
    outbox: an alert on `time() - last_successful_poll` would otherwise fire for it forever."""
    port = free_port()
    tables = [
        {"name": name, "base_url": sims[name].base_url, "api_key": sims[name].api_key}
        for name in ("beta", "gamma")
    ]
    top: dict[str, dict[str, Any]] = {
        "late": {"max_requests_per_minute": 6000},
        "monitor": {"interval": "1s", "detail": "never"},
        "notify": {"urls": [sink.url()]},
        "state": {"path": str(tmp_path / "state.db")},
        "http": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "info", "format": "json"},
    }
    config = write(tmp_path / "c.toml", top, [dict(t) for t in tables])
    async with daemon(config, base_env, tmp_path) as running:
        await running.until(lambda: polls_of(running, "gamma") >= 1, limit=20)
        assert 'workspace="gamma"' in (await fetch(port, "/metrics")).decode()
        write(tmp_path / "c.toml", top, [dict(tables[0])])
        running.signal(signal.SIGHUP)
        await running.until(lambda: running.count("config_reloaded") == 1, limit=10)
        polled = polls_of(running, "beta")
        await running.until(lambda: polls_of(running, "beta") > polled, limit=10)
        metrics = (await fetch(port, "/metrics")).decode()
    gauges = (
        "late_monitor_accounts{",
        "late_monitor_unreadable_accounts{",
        "late_monitor_outbox_pending{",
        "late_monitor_late_ratelimit_remaining{",
        "late_monitor_last_successful_poll_timestamp_seconds{",
    )
    assert [line for line in metrics.splitlines() if line.startswith(gauges)]  # beta's
    stale = [line for line in metrics.splitlines() if line.startswith(gauges) and "gamma" in line]
    assert stale == []


async def test_a_workspace_whose_scope_differs_from_its_state_is_named_with_the_way_out(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink
) -> None:
    """The single form's state becomes the 'default' workspace's; a [[workspaces]] table
    named default pointing elsewhere is refused naming that workspace, and the way out is
    another name (state.path is every workspace's)."""
    top: dict[str, dict[str, Any]] = {
        "late": {"api_key": sims["alpha"].api_key, "base_url": sims["alpha"].base_url},
        "notify": {"urls": [sink.url()]},
        "state": {"path": str(tmp_path / "state.db")},
        "monitor": {"detail": "never"},
    }
    single = write(tmp_path / "single.toml", top, [])
    ran = await run_cli("run", "--once", "--config", str(single), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    tables = [
        {"name": "default", "base_url": sims["beta"].base_url, "api_key": sims["beta"].api_key},
        {"name": "gamma", "base_url": sims["gamma"].base_url, "api_key": sims["gamma"].api_key},
    ]
    multi = write(tmp_path / "multi.toml", top, tables)
    ran = await run_cli("run", "--once", "--config", str(multi), env=base_env, cwd=tmp_path)
    assert ran.code == 2, ran.output
    (line,) = [line for line in ran.stderr.splitlines() if "was written for" in line]
    assert line.startswith("late-monitor: workspace default: state file "), line
    assert "give the workspace another name" in line, line
    assert "own state.path" not in line, line


async def test_test_notify_says_which_workspaces_destinations_it_tries(
    tmp_path: Path, base_env: dict[str, str], sink: Sink, sink2: Sink
) -> None:
    """Two workspaces whose destinations include the agency's channel: each test message
    there says which workspace's configuration reached it."""
    config = write(
        tmp_path / "c.toml",
        {"notify": {"urls": [sink.url()]}, "state": {"path": str(tmp_path / "state.db")}},
        [
            {"name": "acme", "api_key": "sk_acme_0123456789"},
            {"name": "bolt", "api_key": "sk_bolt_0123456789", "notify": {"urls": [sink2.url()]}},
        ],
    )
    ran = await run_cli("test-notify", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert sink.titles() == ["Late monitor [acme]: test notification"]
    assert sink2.titles() == ["Late monitor [bolt]: test notification"]


async def test_config_check_shows_the_top_level_destinations_workspaces_fall_back_to(
    tmp_path: Path, base_env: dict[str, str], sink: Sink, sink2: Sink
) -> None:
    config = write(
        tmp_path / "c.toml",
        {"notify": {"urls": [sink.url("AGENCYTOKEN01")]}},
        [
            {"name": "acme", "api_key": "sk_acme_0123456789"},
            {"name": "bolt", "api_key": "sk_bolt_0123456789", "notify": {"urls": [sink2.url()]}},
        ],
    )
    ran = await run_cli("config", "check", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    notify = ran.stdout.split("[notify]\n", 1)[1]
    urls = notify.splitlines()[0]
    assert urls.startswith(f'urls = ["json://127.0.0.1:{sink.port}/hook/***"]'), urls
    assert "AGENCYTOKEN01" not in ran.output


async def test_a_profile_route_that_names_no_profile_is_warned_about(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink
) -> None:
    """The client renamed its profile in Late: the route by the old name matches nothing,
    so its channel would hear nothing more; the look at the workspace says so."""
    gamma = sims["gamma"]
    gamma.profiles = {"prof_1": {"name": "Acme Coffee Co"}, "prof_2": {"name": "Bolt Bikes"}}
    config = write(
        tmp_path / "c.toml",
        {
            "monitor": {"detail": "never"},
            "state": {"path": str(tmp_path / "state.db")},
            "log": {"level": "info", "format": "json"},
        },
        [
            {
                "name": "gamma",
                "base_url": gamma.base_url,
                "api_key": gamma.api_key,
                "notify": {
                    "urls": [sink.url()],
                    "routes": {"profile": {"Acme Coffee": ["all"], "bolt bikes": ["all"]}},
                },
            }
        ],
    )
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    (line,) = [json.loads(x) for x in ran.stdout.splitlines() if "profile_route_unmatched" in x]
    assert "'Acme Coffee'" in line["problem"], line
    assert "'bolt bikes'" not in line["problem"], line  # matches, case aside


async def test_one_workspaces_hanging_destination_holds_back_no_others_retry(
    tmp_path: Path, sims: dict[str, Simulator], sink: Sink, sink2: Sink
) -> None:
    """The outbox job retries each workspace's undelivered messages at once: beta's retry
    does not wait for alpha's destination, which takes every message and never answers."""
    clock = Clock()
    daemon = in_process(tmp_path, sims, (sink, sink2), clock)
    try:
        sink.fail_status = sink2.fail_status = 500
        for name in ("alpha", "beta"):
            sims[name].break_account("acc_00001")
            await daemon.poll(name)  # each message waits in its outbox
        assert sink.received == sink2.received == []
        sink.fail_status, sink.hang = None, 20
        sink2.fail_status = None
        clock.advance(minutes=10)
        retry = asyncio.create_task(daemon.retry_outbox())
        started = asyncio.get_running_loop().time()
        for _ in range(600):  # up to 30 s
            if sink2.received:
                break
            await asyncio.sleep(0.05)
        took = asyncio.get_running_loop().time() - started
        assert sink2.titles() == ["Late [beta]: 1 account needs attention"]
        assert took < 10, took  # behind alpha's send: its 15-s read timeout or more
        sink.hang = 0
        await retry
    finally:
        for unit in daemon.units.values():
            await unit.deps.client.close()
        daemon.store.close()


async def test_every_workspaces_key_is_masked_like_the_single_key(
    tmp_path: Path, base_env: dict[str, str], sims: dict[str, Simulator], sink: Sink
) -> None:
    """A proxy that redirects to a URL carrying the key: the single form's key is masked in
    what is printed and logged, and so is each workspace's."""
    alpha = sims["alpha"]
    alpha.inject(Fault(kind="redirect", location=f"http://127.0.0.1:1/{alpha.api_key}/x", count=9))
    config = write(
        tmp_path / "c.toml",
        {
            "notify": {"urls": [sink.url()]},
            "state": {"path": str(tmp_path / "state.db")},
            "log": {"level": "debug", "format": "json"},
        },
        [{"name": "alpha", "base_url": alpha.base_url, "api_key": alpha.api_key}],
    )
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 1, ran.output
    assert "redirect to http://127.0.0.1:1/***/x" in ran.stderr, ran.output
    assert alpha.api_key not in ran.output
