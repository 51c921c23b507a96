"""Quiet marks: a poll leaves the accounts it finds listed unchanged, with nothing due, unparsed
and undecoded. It must tell exactly what the full rules tell, and store the same states.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from late_monitor import rules
from late_monitor.config import load_settings
from late_monitor.cycle import QUIET_MARKS
from late_monitor.daemon import Daemon
from late_monitor.messages import CycleRecord
from late_monitor.models import Observation, Snapshot
from late_monitor.rules import Policy, evaluate
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.state import AccountState, ApiHealth
from late_monitor.state_views import PollStates
from late_monitor.store import Store
from tests.support.config import write_config
from tests.support.sink import Sink

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


# -- the rules, alone ----------------------------------------------------------------------

observations = st.builds(
    Observation,
    account_id=st.sampled_from([f"a{i}" for i in range(6)]),
    platform=st.sampled_from(["twitter", "instagram"]),
    username=st.just("@u"),
    status=st.sampled_from(["healthy", "warning", "error", "suspended"]),
    needs_reconnect=st.booleans(),
    can_post=st.booleans(),
    token_valid=st.booleans(),
    can_fetch_analytics=st.booleans(),
    token_expires_at=st.none() | st.integers(0, 40).map(lambda d: T0 + timedelta(days=d)),
    issues=st.lists(st.sampled_from(["Token expired", "Rate limited"]), max_size=2).map(tuple),
)
policies = st.builds(
    Policy,
    confirm_after=st.integers(1, 2),
    remind_every=st.sampled_from([0.0, 3600.0, 86400.0]),
    token_expiry_warn=st.sampled_from([(), (86400.0,), (7 * 86400.0, 86400.0)]),
    notify_recovery=st.booleans(),
)


def listing(polled: list[Observation]) -> Snapshot:
    """A poll as the parser gives it: each entry's fingerprint beside its Observation (two
    entries with the same fields have the same bytes)."""
    accounts = {o.account_id: o for o in polled}
    return Snapshot(accounts=accounts, prints={k: repr(o).encode() for k, o in accounts.items()})


def quiet_part(snapshot: Snapshot, states: dict[str, AccountState], now: datetime) -> Snapshot:
    """What a poll that reads the quiet marks sees: the entries matching a quiet state's mark
    are left out, listed as quiet."""
    quiet = {
        k
        for k, listed in snapshot.prints.items()
        if (s := states.get(k)) is not None
        and s.listed == listed
        and s.quiet_until is not None
        and s.quiet_until > now.timestamp()
    }
    return Snapshot(
        accounts={k: o for k, o in snapshot.accounts.items() if k not in quiet},
        prints={k: p for k, p in snapshot.prints.items() if k not in quiet},
        quiet=frozenset(quiet),
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(observations, max_size=6), st.integers(1, 10 * 24)),
        min_size=2,
        max_size=6,
    ),
    policies,
)
def test_polls_that_skip_quiet_accounts_tell_and_keep_what_full_polls_do(
    polls: list[tuple[list[Observation], int]], policy: Policy
) -> None:
    full: dict[str, AccountState] = {}
    quick: dict[str, AccountState] = {}
    now = T0
    for polled, hours in polls:
        now += timedelta(hours=hours)
        snapshot = listing(polled)
        a = evaluate(full, snapshot, now=now, policy=policy)
        b = evaluate(quick, quiet_part(snapshot, quick, now), now=now, policy=policy)
        assert [(e.kind, e.account_id, e.note) for e in b.events] == [
            (e.kind, e.account_id, e.note) for e in a.events
        ]
        assert dict(b.states) == dict(a.states)
        assert b.removed == a.removed
        assert b.changed <= a.changed  # a quiet account is neither judged nor written
        full = {k: v for k, v in a.states.items() if k not in a.removed}
        quick = {k: v for k, v in b.states.items() if k not in b.removed}


@settings(max_examples=300, deadline=None)
@given(observations, policies, st.integers(0, 60 * 24))
def test_a_mark_ends_exactly_when_the_shortcut_stops_holding(
    obs: Observation, policy: Policy, hours: int
) -> None:
    snapshot = listing([obs])
    state = evaluate({}, snapshot, now=T0, policy=policy).states.get(obs.account_id)
    if state is None or state.quiet_until is None:
        return
    later = T0 + timedelta(hours=hours)
    horizon = rules._horizon(later, policy)
    assert rules._quiet(state, obs, later, policy, horizon) == (
        later.timestamp() < state.quiet_until
    )


def test_an_account_owed_its_detail_is_never_marked_quiet() -> None:
    obs = Observation(account_id="a1", platform="x", username="@u", status="healthy")
    first = evaluate({}, listing([obs]), now=T0, policy=Policy()).states["a1"]
    assert first.quiet_until is not None
    owed = {"a1": replace(first, detail_due=True)}
    again = evaluate(owed, listing([obs]), now=T0, policy=Policy()).states["a1"]
    assert again.detail_due
    assert again.quiet_until is None


# -- a daemon and cron against the simulator ------------------------------------------------

ACCOUNTS = 2400  # a body over 2 x BATCH_BYTES: entries are cut out and fingerprinted one by one


@pytest.fixture
async def big_sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(make_accounts(ACCOUNTS, now=T0), rate_limit=1_000_000)
    await simulator.start()
    yield simulator
    await simulator.stop()


async def started_sink() -> Sink:
    sink = Sink()
    await sink.start()
    return sink


def daemon(tmp_path: Path, name: str, sim: Simulator, sink: Sink, clock: Clock) -> Daemon:
    config = write_config(
        tmp_path / f"{name}.toml",
        {
            "late": {
                "base_url": sim.base_url,
                "api_key": DEFAULT_KEY,
                "timeout": "10s",
                "max_requests_per_minute": 100000,
            },
            "monitor": {"interval": "60s", "remind_every": "1d"},
            "state": {"path": str(tmp_path / f"{name}.db")},
            "notify": {"urls": [sink.url()]},
            "log": {"level": "warning"},
        },
    )
    return Daemon(load_settings(str(config), environ={}), config_arg=str(config), clock=clock)


async def closed(made: Daemon) -> None:
    await made.deps.client.close()
    made.store.close()


def said(sink: Sink) -> list[tuple[Any, ...]]:
    return [(m.get("title"), m.get("message"), m.get("type")) for m in sink.received]


async def test_cron_and_a_daemon_reading_quiet_marks_tell_what_full_polls_tell(
    tmp_path: Path, big_sim: Simulator
) -> None:
    """Three monitors over one simulator for ten weeks of polls: one that judges every
    account each poll (its marks ignored), a daemon that reads them, and cron: a new process
    (a new Daemon, its store opened afresh) each poll. Accounts change, tokens cross their
    thresholds, failing accounts are reminded of: all three send the same messages, at the
    same polls, and keep the same states."""
    clock = Clock()
    sinks = {name: await started_sink() for name in ("full", "daemon", "cron")}
    full = daemon(tmp_path, "full", big_sim, sinks["full"], clock)
    kept = daemon(tmp_path, "daemon", big_sim, sinks["daemon"], clock)
    rng = random.Random(7)
    try:
        quiet_seen = []
        for step in range(14):
            if step:
                clock.now += timedelta(hours=rng.randint(3 * 24, 8 * 24))  # ~10 weeks in all
                big_sim.churn(0.01, rng)
            full.store.write_meta(QUIET_MARKS, None)  # no index: every account judged
            await full.poll()
            await kept.poll()
            cron = daemon(tmp_path, "cron", big_sim, sinks["cron"], clock)
            try:
                quiet_seen.append(len(cron.store.quiet_index(after=clock.now.timestamp())))
                await cron.poll()
            finally:
                await closed(cron)
            assert said(sinks["daemon"]) == said(sinks["full"]), f"step {step}"
            assert said(sinks["cron"]) == said(sinks["full"]), f"step {step}"
        assert dict(kept.store.load_states()) == dict(full.store.load_states())
        told = " ".join(str(m.get("message")) for m in sinks["full"].received)
        assert "token expires in" in told  # thresholds were crossed while accounts were quiet
        assert "since 2026" in told  # and failing accounts reminded of
        assert min(quiet_seen[1:]) > ACCOUNTS // 2  # most accounts were quiet each poll
    finally:
        await closed(full)
        await closed(kept)
        for sink in sinks.values():
            await sink.stop()


def test_a_state_changed_by_anything_but_the_rules_loses_its_mark() -> None:
    """A webhook's claim, a detail, an impact count: each a `replace`, and the next poll
    judges the account in full (a mark made for the old state cannot be trusted)."""
    obs = Observation(account_id="a1", platform="x", username="@u", status="healthy")
    state = evaluate({}, listing([obs]), now=T0, policy=Policy()).states["a1"]
    assert state.listed is not None
    claimed = replace(state, status="error", claimed_at=T0)
    assert (claimed.listed, claimed.quiet_until) == (None, None)


def stored_quiet(tmp_path: Path, count: int) -> Store:
    """A state file of `count` accounts, all marked quiet by a first poll."""
    store = Store.open(tmp_path / "state.db")
    polled = [
        Observation(account_id=f"a{i:04d}", platform="x", username="@u", status="healthy")
        for i in range(count)
    ]
    first = evaluate({}, listing(polled), now=T0, policy=Policy())
    record = CycleRecord(T0, T0, "ok", count, 0, 1)
    store.commit_cycle(
        states=first.states,
        changed=first.changed,
        removed=(),
        api=ApiHealth(),
        messages=[],
        record=record,
    )
    return store


def test_accounts_missing_from_a_poll_are_read_together_not_one_query_each(
    tmp_path: Path,
) -> None:
    store = stored_quiet(tmp_path, 1200)
    reads: list[str] = []
    store._db.set_trace_callback(reads.append)  # the statements SQLite runs, as it runs them
    try:
        lazy = store.load_states(lazy=True)
        empty = Snapshot(accounts={})  # an empty listing: every account missing at once
        result = evaluate(lazy, empty, now=T0 + timedelta(minutes=5), policy=Policy())
    finally:
        store._db.set_trace_callback(None)
        store.close()
    assert len(result.states) == 1200  # kept a while, counted as absent
    assert sum(1 for sql in reads if sql.startswith("SELECT data")) <= 5


def test_a_poll_s_states_read_after_a_webhook_removed_one_say_it_is_gone(tmp_path: Path) -> None:
    store = stored_quiet(tmp_path, 3)
    lazy = store.load_states(lazy=True)
    states = PollStates({}, frozenset(lazy), lazy)
    other = Store.open(tmp_path / "state.db")  # the intake, removing an account meanwhile
    record = CycleRecord(T0, T0, "webhook", 2, 1, 0)
    other.commit_cycle(
        states={}, changed=(), removed=["a0001"], api=ApiHealth(), messages=[], record=record
    )
    other.close()
    try:
        assert states.get("a0001") is None
        assert states.get("a0002") is not None
    finally:
        store.close()
