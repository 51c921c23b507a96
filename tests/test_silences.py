"""Silences and acks: recorded but not sent, what is never silenced, and what happens at the end."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from late_monitor.control import Refused, add_ack, add_silence, expire_silence
from late_monitor.events import Event, Kind, NotifyType
from late_monitor.rules import Evaluation
from late_monitor.silences import Ack, Silence, matches, reannounce, screen, stale_acks
from late_monitor.simulator import Simulator
from late_monitor.simulator.faults import Fault
from late_monitor.state import AccountState
from late_monitor.status import status_report
from late_monitor.store import Store
from tests.support.clock import T0, Clock, clocked_daemon
from tests.support.process import run_cli
from tests.support.schema import assert_schema_is_fresh
from tests.support.sink import Sink

CORPUS = Path(__file__).parent / "corpus"

QUIET = {"monitor": {"detail": "never", "remind_every": "24h"}}


def _state(
    account_id: str = "a1", *, status: str = "error", platform: str = "tiktok"
) -> AccountState:
    return AccountState(
        account_id=account_id,
        platform=platform,
        username="@x",
        status=status,
        needs_reconnect=False,
        can_post=True,
        since=T0,
        profile_id="prof_1",
    )


def _silence(**matchers: tuple[str, ...]) -> Silence:
    return Silence(
        id=1,
        matchers=matchers,
        reason="r",
        created_by="me",
        created_at=T0,
        ends_at=T0 + timedelta(hours=2),
    )


@pytest.mark.parametrize(
    ("matchers", "event", "silenced"),
    [
        ({"account": ("a1",)}, Event(Kind.DEGRADED, NotifyType.FAILURE, _state()), True),
        ({"account": ("a2",)}, Event(Kind.DEGRADED, NotifyType.FAILURE, _state()), False),
        ({"account": ("a1", "a2")}, Event(Kind.DEGRADED, NotifyType.FAILURE, _state()), True),
        # AND across keys
        (
            {"platform": ("tiktok",), "kind": ("reminder",)},
            Event(Kind.DEGRADED, NotifyType.FAILURE, _state()),
            False,
        ),
        (
            {"platform": ("tiktok",), "kind": ("reminder",)},
            Event(Kind.REMINDER, NotifyType.FAILURE, _state()),
            True,
        ),
        ({"profile": ("prof_1",)}, Event(Kind.DEGRADED, NotifyType.FAILURE, _state()), True),
        # recoveries and the API's own events only when the kind is named
        ({"account": ("a1",)}, Event(Kind.RECOVERED, NotifyType.SUCCESS, _state()), False),
        (
            {"account": ("a1",), "kind": ("recovered",)},
            Event(Kind.RECOVERED, NotifyType.SUCCESS, _state()),
            True,
        ),
        ({"platform": ("tiktok",)}, Event(Kind.API_UNREACHABLE, NotifyType.FAILURE), False),
        ({"kind": ("degraded",)}, Event(Kind.AUTH_FAILED, NotifyType.FAILURE), False),
        ({"kind": ("api_unreachable",)}, Event(Kind.API_UNREACHABLE, NotifyType.FAILURE), True),
        ({"kind": ("auth_failed",)}, Event(Kind.AUTH_FAILED, NotifyType.FAILURE), True),
    ],
)
def test_a_silence_matches_on_every_key_and_protected_kinds_only_by_name(
    matchers: dict[str, tuple[str, ...]], event: Event, silenced: bool
) -> None:
    assert matches(_silence(**matchers), event) is silenced


def test_a_silence_holds_only_between_its_start_and_its_end() -> None:
    silence = _silence(account=("a1",))
    event = Event(Kind.DEGRADED, NotifyType.FAILURE, _state())
    assert screen([event], [silence], {}, T0 - timedelta(seconds=1)).send == (event,)
    assert screen([event], [silence], {}, T0).silenced == ((event, 1),)
    assert screen([event], [silence], {}, T0 + timedelta(hours=2)).send == (event,)


def test_an_ack_holds_reminders_of_its_condition_only_and_goes_stale_when_it_changes() -> None:
    state = _state()
    ack = Ack("a1", state.condition, "known", "me", T0)
    reminder = Event(Kind.REMINDER, NotifyType.FAILURE, state)
    token = Event(Kind.TOKEN_EXPIRING, NotifyType.WARNING, state)
    out = screen([reminder, token], [], {"a1": ack}, T0)
    assert (out.send, out.acked) == ((token,), (reminder,))
    assert stale_acks({"a1": ack}, {"a1": state}) == []
    assert stale_acks({"a1": ack}, {"a1": _state(status="warning")}) == ["a1"]
    assert stale_acks({"a1": ack}, {}) == ["a1"]


def test_the_end_of_a_silence_reannounces_what_it_held_back_unless_still_covered() -> None:
    ended = Silence(
        id=1,
        matchers={"platform": ("tiktok",)},
        reason="r",
        created_by="me",
        created_at=T0,
        ends_at=T0 + timedelta(hours=1),
        silenced=("a1", "a2", "a3", "gone"),
    )
    other = Silence(
        id=2,
        matchers={"account": ("a3",)},
        reason="r",
        created_by="me",
        created_at=T0,
        ends_at=T0 + timedelta(hours=9),
    )
    states = {
        "a1": _state("a1"),
        "a2": _state("a2", status="healthy"),
        "a3": _state("a3"),
    }
    now = T0 + timedelta(hours=1)
    result = reannounce(
        Evaluation(states=states, changed=frozenset(), removed=frozenset()), [ended, other], {}, now
    )
    assert [(e.kind, e.account_id) for e in result.evaluation.events] == [(Kind.REMINDER, "a1")]
    assert "silence #1 ended" in result.evaluation.events[0].note
    assert result.evaluation.states["a1"].last_notice_at == now
    assert result.evaluation.changed == {"a1"}
    assert result.settled == (1,)  # the other one has not ended


async def test_a_silenced_account_is_recorded_but_not_sent_and_status_says_so(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(monitor_config, clock, **QUIET) as daemon:
        await daemon.poll()
        add_silence(
            daemon.store,
            matchers={"account": ["acc_00001"]},
            ends_at=clock.now + timedelta(hours=2),
            reason="migrating",
            created_by="alice",
            now=clock.now,
        )
        sim.break_account("acc_00001")
        sim.break_account("acc_00002")
        clock.advance(minutes=1)
        await daemon.poll()
        assert len(sink.received) == 1
        assert "acc_00002" in sink.received[0]["message"]
        assert "acc_00001" not in sink.received[0]["message"]
        report = status_report(daemon.store, now=clock.now)
        account = next(a for a in report["accounts"] if a["account_id"] == "acc_00001")
        assert account["status"] == "error"  # recorded
        assert account["silenced_by"] == [1]
        (silence,) = report["silences"]
        assert silence["suppressed"] >= 1
        assert silence["accounts_silenced"] == ["acc_00001"]
        assert (silence["state"], silence["created_by"], silence["reason"]) == (
            "active",
            "alice",
            "migrating",
        )

        sim.heal("acc_00001")  # its recovery is not silenced: the silence does not name it
        clock.advance(minutes=1)
        await daemon.poll()
        assert len(sink.received) == 2
        assert "recovered" in sink.received[1]["message"]


async def test_the_api_being_unreachable_is_told_despite_a_silence_on_every_platform(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(
        monitor_config, clock, monitor={"detail": "never", "api_failure_after": 1}
    ) as daemon:
        await daemon.poll()
        add_silence(
            daemon.store,
            matchers={"platform": sorted({a.platform for a in sim.accounts.values()})},
            ends_at=clock.now + timedelta(hours=2),
            reason="everything is noisy today",
            created_by="bob",
            now=clock.now,
        )
        sim.inject(Fault(path="/accounts/health", status=500, count=20))
        clock.advance(minutes=1)
        await daemon.poll()
        assert [m["title"] for m in sink.received] == ["Late: the Late API is unreachable"]


async def test_when_a_silence_ends_its_still_unhealthy_account_is_announced_at_once(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(monitor_config, clock, **QUIET) as daemon:
        await daemon.poll()
        add_silence(
            daemon.store,
            matchers={"account": ["acc_00001"]},
            ends_at=clock.now + timedelta(hours=2),
            reason="migrating",
            created_by="alice",
            now=clock.now,
        )
        sim.break_account("acc_00001")
        clock.advance(minutes=5)
        await daemon.poll()
        clock.advance(minutes=60)
        await daemon.poll()
        assert sink.received == []
        clock.advance(minutes=56)  # past the end; remind_every (24 h) is far away
        await daemon.poll()
        assert len(sink.received) == 1
        assert "acc_00001" in sink.received[0]["message"]
        assert "silence #1 ended" in sink.received[0]["message"]
        clock.advance(minutes=5)
        await daemon.poll()
        assert len(sink.received) == 1  # once, not every poll after the end

        # kept 7 days for the record, then forgotten
        clock.advance(days=6)
        await daemon.poll()
        assert [s.id for s in daemon.store.load_silences()] == [1]
        clock.advance(days=1, minutes=1)
        await daemon.poll()
        assert daemon.store.load_silences() == []


async def test_expiring_a_silence_by_hand_reannounces_at_the_next_poll(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(monitor_config, clock, **QUIET) as daemon:
        await daemon.poll()
        add_silence(
            daemon.store,
            matchers={"platform": [sim.accounts["acc_00003"].platform], "kind": ["degraded"]},
            ends_at=clock.now + timedelta(days=1),
            reason="vendor outage",
            created_by="alice",
            now=clock.now,
        )
        sim.set("acc_00003", status="error")
        clock.advance(minutes=1)
        await daemon.poll()
        assert sink.received == []
        expire_silence(daemon.store, 1, now=clock.now)
        with pytest.raises(Refused):
            expire_silence(daemon.store, 99, now=clock.now)
        clock.advance(minutes=1)
        await daemon.poll()
        assert len(sink.received) == 1
        assert "acc_00003" in sink.received[0]["message"]
        report = status_report(daemon.store, now=clock.now)
        assert report["silences"][0]["state"] == "expired"
        assert report["silences"][0]["expired_by_hand"] is True


async def test_an_ack_stops_reminders_until_the_condition_changes_then_clears_itself(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with clocked_daemon(
        monitor_config, clock, monitor={"detail": "never", "remind_every": "1h"}
    ) as daemon:
        await daemon.poll()
        sim.set("acc_00002", status="warning")
        clock.advance(minutes=1)
        await daemon.poll()
        assert len(sink.received) == 1
        with pytest.raises(Refused, match="healthy"):
            add_ack(daemon.store, "acc_00001", reason="", created_by="me", now=clock.now)
        add_ack(daemon.store, "acc_00002", reason="client knows", created_by="me", now=clock.now)
        assert status_report(daemon.store, now=clock.now)["acks"][0]["reason"] == "client knows"
        for _ in range(3):  # three reminder periods: none sent
            clock.advance(hours=1, minutes=1)
            await daemon.poll()
        assert len(sink.received) == 1

        sim.set("acc_00002", status="error")  # worse: told, and the ack is gone
        clock.advance(minutes=1)
        await daemon.poll()
        assert len(sink.received) == 2
        assert "warning -> error" in sink.received[1]["message"]
        assert daemon.store.load_acks() == {}
        clock.advance(hours=1, minutes=1)
        await daemon.poll()
        assert len(sink.received) == 3  # reminders are back
        assert "error since" in sink.received[2]["message"]


async def test_silences_from_the_cli_are_shared_by_every_process_using_the_state(
    sim: Simulator,
    sink: Sink,
    monitor_config: Callable[..., Path],
    base_env: dict[str, str],
    tmp_path: Path,
) -> None:
    config = str(monitor_config(monitor={"detail": "never"}))
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    env = {**base_env, "USER": "carol"}
    added = await run_cli(
        "silence", "add", "--config", config, "--account", "acc_00004", "--for", "2h",
        "--reason", "moving the page to a new owner", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert added.code == 0, added.output
    assert added.stdout.startswith("silence #1 added: account=acc_00004 until ")
    listed = await run_cli("silence", "list", "--config", config, env=env, cwd=tmp_path)
    assert listed.code == 0
    assert "#1  active  account=acc_00004" in listed.stdout
    assert "carol" in listed.stdout
    assert "moving the page" in listed.stdout
    sim.break_account("acc_00004")
    dry = await run_cli("--once", "--dry-run", "--config", config, env=base_env, cwd=tmp_path)
    assert "dry run: nothing to notify" in dry.stdout  # what would be sent, silences applied
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert sink.received == []
    status = await run_cli("status", "--json", "--config", config, env=base_env, cwd=tmp_path)
    report = json.loads(status.stdout)
    account = next(a for a in report["accounts"] if a["account_id"] == "acc_00004")
    assert (account["status"], account["silenced_by"]) == ("error", [1])
    table = await run_cli("status", "--config", config, env=base_env, cwd=tmp_path)
    row = next(
        line for line in table.stdout.splitlines() if "acc_00004" in line or "_00004" in line
    )
    assert row.rstrip().endswith("silenced #1")
    assert "Silences: 1 active" in table.stdout

    bad = await run_cli(
        "silence", "add", "--config", config, "--kind", "degradd", "--for", "1h",
        "--reason", "x", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert bad.code == 2
    assert "kind 'degradd' is not an event kind" in bad.stderr
    both = await run_cli(
        "silence", "add", "--config", config, "--account", "a", "--reason", "x",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert (both.code, "give one of --for or --until" in both.stderr) == (2, True)

    expired = await run_cli("silence", "expire", "1", "--config", config, env=env, cwd=tmp_path)
    assert expired.code == 0, expired.output
    assert (await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)).code == 0
    assert len(sink.received) == 1
    assert "acc_00004" in sink.received[0]["message"]

    acked = await run_cli("ack", "acc_00004", "--config", config, env=env, cwd=tmp_path)
    assert acked.code == 0, acked.output
    missing = await run_cli("ack", "acc_nope", "--config", config, env=env, cwd=tmp_path)
    assert (missing.code, "no account 'acc_nope'" in missing.stderr) == (2, True)


@pytest.mark.parametrize(
    ("version", "newer_tables"),
    [
        (3, ("silences", "acks", "webhook_events")),  # what 0.1.0 wrote
        (4, ("silences", "acks")),  # with webhooks, before operator control
        (5, ()),  # with operator control, before workspaces
    ],
)
def test_an_older_state_file_is_migrated_and_keeps_its_accounts(
    tmp_path: Path, version: int, newer_tables: tuple[str, ...]
) -> None:
    """A file written before operator control gets the silences and acks tables in place."""
    path = tmp_path / f"v{version}.db"
    shutil.copy(CORPUS / "state-v5.db", path)  # written by the release before workspaces
    with sqlite3.connect(path) as db:  # back to what that version wrote
        db.execute("DELETE FROM acks")
        for table in newer_tables:
            db.execute(f"DROP TABLE {table}")
        db.execute(f"PRAGMA user_version = {version}")
    store = Store.open(path)
    try:
        assert store.load_states()["acc_1"].status == "error"
        add_ack(store, "acc_1", reason="known", created_by="me", now=T0)
        assert list(store.load_acks()) == ["acc_1"]
        assert store.load_silences() == []
    finally:
        store.close()
    assert_schema_is_fresh(path, tmp_path)
