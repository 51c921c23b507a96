"""One contract, two backends: every storage.StateStore method behaves the same on a SQLite file
and on PostgreSQL (a schema of its own per test), so that the two cannot drift."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from late_monitor.errors import StateBusy
from late_monitor.messages import CycleRecord, Entry, PlannedMessage
from late_monitor.rules import due_for_detail
from late_monitor.silences import Ack
from late_monitor.state import QUIET_FOREVER, AccountState, ApiHealth, marked
from late_monitor.state_views import with_changes
from late_monitor.storage import StateStore
from late_monitor.store import Store
from tests.support.state import T0
from tests.support.state import full_state as state

Opener = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another handle on the same state (as a second process would)."""
    opened: list[StateStore] = []
    if request.param == "sqlite":

        def make() -> StateStore:
            opened.append(Store.open(tmp_path / "state.db"))
            return opened[-1]

    else:
        from late_monitor.pg_store import PgStore

        url = request.getfixturevalue("pg_url")

        def make() -> StateStore:
            opened.append(PgStore.open(url))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> StateStore:
    return opener()


def record(**kw: object) -> CycleRecord:
    base: dict[str, object] = {
        "started_at": T0,
        "finished_at": T0,
        "outcome": "ok",
        "accounts": 1,
        "events": 1,
        "requests": 1,
    }
    base.update(kw)
    return CycleRecord(**base)  # type: ignore[arg-type]


def commit(store: StateStore, *messages: PlannedMessage, **kw: object) -> int:
    args: dict[str, object] = {
        "states": {},
        "changed": [],
        "removed": [],
        "api": ApiHealth(),
        "messages": list(messages),
        "record": record(),
    }
    args.update(kw)
    return store.commit_cycle(**args)  # type: ignore[arg-type]


def message(*keys: str, title: str = "Late: x", **kw: object) -> PlannedMessage:
    return PlannedMessage(
        "failure",
        title,
        "body",
        tuple((k, f"json://{k}") for k in keys),
        **kw,  # type: ignore[arg-type]
    )


def test_states_api_health_and_cycles_round_trip_to_another_handle(opener: Opener) -> None:
    first = opener()
    cycle_id = commit(
        first,
        states={"a1": state(), "a2": state("a2", status="healthy")},
        changed=["a1", "a2"],
        api=ApiHealth(2, True, False, "e"),
        record=record(error="boom", requests=3),
    )
    second = opener()
    assert second.load_states() == {"a1": state(), "a2": state("a2", status="healthy")}
    assert second.load_api_health() == ApiHealth(2, True, False, "e")
    [cycle] = second.recent_cycles()
    assert cycle["id"] == cycle_id
    assert (cycle["requests"], cycle["error"], cycle["started_at"]) == (3, "boom", T0.timestamp())


def test_removed_and_unchanged_accounts(store: StateStore) -> None:
    commit(store, states={"a1": state(), "a2": state("a2")}, changed=["a1", "a2"])
    commit(store, states={"a1": state(status="warning")}, changed=[], removed=["a2"])
    assert store.load_states() == {"a1": state()}  # not in `changed`: not written


def test_a_cached_view_sees_what_another_handle_committed(opener: Opener) -> None:
    first, second = opener(), opener()
    commit(first, states={"a1": state()}, changed=["a1"])
    version = second.data_version()
    assert second.load_states() == {"a1": state()}
    commit(first, states={"a1": state(status="healthy")}, changed=["a1"])
    assert second.data_version() != version
    assert second.load_states()["a1"].status == "healthy"


def test_meta_values_and_setdefault(opener: Opener) -> None:
    store = opener()
    assert store.read_meta("scope") is None
    store.write_meta("scope", {"base_url": "x", "platforms": ["a"]})
    store.write_meta("scope", {"base_url": "y", "platforms": []})
    assert store.read_meta("scope") == {"base_url": "y", "platforms": []}
    assert store.meta_setdefault("key", "first") == "first"
    assert opener().meta_setdefault("key", "second") == "first"


def test_outbox_rows_are_due_in_order_and_marked(store: StateStore) -> None:
    commit(store, message("k1", "k2"), message("k1", title="Late: y"))
    rows = store.pending_deliveries()
    assert [(r.destination, r.title) for r in rows] == [
        ("k1", "Late: x"),
        ("k1", "Late: y"),
        ("k2", "Late: x"),
    ]
    assert store.pending_count() == 3
    assert store.next_attempt_at() == T0.timestamp()
    assert store.oldest_pending() == T0.timestamp()
    store.mark_delivered(rows[0].id, rows[1].id, now=5.0, note="together")
    store.mark_failed(rows[2].id, error="down", next_attempt_at=9.0, unanswered=True)
    [left] = store.pending_deliveries()
    assert (left.attempts, left.unanswered, left.last_error) == (1, 1, "down")
    assert store.next_attempt_at() == 9.0
    store.mark_set_aside(left.id, error="refused", until=99.0)
    [aside] = store.pending_deliveries()
    assert (aside.state, aside.attempts) == ("set_aside", 2)
    store.mark_dropped(aside.id, reason="too old", now=100.0)
    assert store.pending_deliveries() == []
    assert store.pending_count() == 0
    assert store.next_attempt_at() is None
    assert store.oldest_pending() == float("inf")
    finished = store.outbox_rows(states=("delivered", "dropped"))
    assert sorted((r["state"], r["last_error"]) for r in finished) == [
        ("delivered", "together"),
        ("delivered", "together"),
        ("dropped", "too old"),
    ]


def test_entries_and_cycle_ids_reach_the_outbox_row(store: StateStore) -> None:
    entries = (Entry("a1", "failure", "a1 broke"), Entry("api", "success", "back"))
    cycle_id = commit(store, message("k1", accounts=("a1",), entries=entries))
    [row] = store.pending_deliveries()
    assert (row.entries, row.cycle_id, row.created_at) == (entries, cycle_id, T0.timestamp())


def test_reroute_adds_only_destinations_without_the_message(store: StateStore) -> None:
    commit(store, message("gone", "k2"))
    gone = next(r for r in store.pending_deliveries() if r.destination == "gone")
    added = store.reroute(gone.id, to=[("k2", "json://k2"), ("k3", "json://k3")], now=7.0)
    assert added == ["json://k3"]
    assert sorted(r.destination for r in store.pending_deliveries()) == ["k2", "k3"]
    [old] = store.outbox_rows(states=("rerouted",))
    assert "re-routed to json://k3" in old["last_error"]


def test_prune_drops_finished_history_and_keeps_what_is_pending(store: StateStore) -> None:
    commit(store, message("k1"))
    commit(store, message("k2"))
    commit(store)
    rows = store.pending_deliveries()
    store.mark_delivered(rows[0].id, now=T0.timestamp())
    pruned = store.prune(before=T0 + timedelta(days=1))
    assert pruned == 2  # the cycle without messages and the one whose message was delivered
    assert [r.destination for r in store.pending_deliveries()] == ["k2"]
    assert len(store.recent_cycles()) == 1


def test_held_rows_are_released_as_one_summary_per_destination(store: StateStore) -> None:
    until = T0.timestamp() + 3600
    commit(store, message("k1", held_until=until), message("k1", title="Late: y", held_until=until))
    assert store.pending_deliveries() == []
    assert len(store.held_rows()) == 2
    assert store.release_held(now=T0) == 0
    assert store.release_held(now=T0 + timedelta(hours=2)) == 1
    [summary] = store.pending_deliveries()
    assert summary.destination == "k1"
    assert store.held_rows() == []
    assert len(store.outbox_rows(states=("released",))) == 2


def test_webhooks_are_recorded_once_and_settled(opener: Opener) -> None:
    store, other = opener(), opener()
    assert store.record_webhook("h1", "account.disconnected", b"{1}", now=10.0)
    assert not other.record_webhook("h1", "account.disconnected", b"{1}", now=11.0)
    assert other.record_webhook("h2", "webhook.test", b"{2}", now=12.0)
    assert store.unprocessed_webhooks() == [("h1", b"{1}"), ("h2", b"{2}")]
    store.settle_webhooks([("h2", "ignored")], now=13.0)
    commit(store, webhooks=[("h1", "acted")])
    assert store.unprocessed_webhooks() == []
    recent = store.recent_webhooks()
    assert [(r["id"], r["outcome"], r["processed_at"]) for r in recent] == [
        ("h2", "ignored", 13.0),
        ("h1", "acted", T0.timestamp()),
    ]
    assert store.prune_webhooks(before=11.0) == 1
    assert [r["id"] for r in store.recent_webhooks()] == ["h2"]


def test_silences_are_added_noted_expired_and_settled(store: StateStore) -> None:
    silence_id = store.add_silence(
        matchers={"platform": ["twitter"]},
        reason="maintenance",
        created_by="ops",
        created_at=T0,
        ends_at=T0 + timedelta(hours=1),
    )
    store.note_silenced({silence_id: ["a1", "a2"]}, {silence_id: 2})
    store.note_silenced({silence_id: ["a2", "a3"]}, {silence_id: 1})
    [silence] = store.load_silences()
    assert (silence.silenced, silence.suppressed, silence.matchers) == (
        ("a1", "a2", "a3"),
        3,
        {"platform": ("twitter",)},
    )
    ended = store.expire_silence(silence_id, now=T0 + timedelta(minutes=5))
    assert ended is not None
    assert ended.expired_at == T0 + timedelta(minutes=5)
    assert store.expire_silence(999, now=T0) is None
    store.settle_silences([silence_id], prune_before=T0)
    assert store.load_silences()[0].settled
    store.settle_silences([], prune_before=T0 + timedelta(days=30))
    assert store.load_silences() == []


def test_acks_are_kept_replaced_and_removed(store: StateStore) -> None:
    ack = Ack("a1", ("error", True, False), "known", "ops", T0)
    store.add_ack(ack)
    store.add_ack(Ack("a2", ("warning", False, True), "x", "ops", T0))
    store.add_ack(Ack("a1", ("error", False, False), "still", "dev", T0 + timedelta(hours=1)))
    acks = store.load_acks()
    assert acks["a1"] == Ack("a1", ("error", False, False), "still", "dev", T0 + timedelta(hours=1))
    store.remove_acks(["a1", "nope"])
    assert list(store.load_acks()) == ["a2"]


async def test_the_cycle_lock_is_one_holders_and_free_when_it_closes(opener: Opener) -> None:
    first, second = opener(), opener()
    assert first.path == second.path
    async with first.writing(1.0):
        with pytest.raises(StateBusy):
            async with second.holding(0.3):
                pass
    first.close()
    async with second.writing(1.0):
        commit(second)
    assert second.leader
    assert len(second.recent_cycles()) == 1


async def test_one_process_tasks_share_the_cycle_lock(store: StateStore) -> None:
    async with store.holding(1.0):
        async with store.holding(0.1):  # a webhook processed while the cycle polls
            await asyncio.sleep(0)
        commit(store)
    assert len(store.recent_cycles()) == 1


def test_each_workspace_sees_its_own_accounts_outbox_acks_and_meta(store: StateStore) -> None:
    other = store.scoped("acme")
    assert store.scoped("acme") is other
    assert other.workspace == "acme"
    commit(store, message("k1"), states={"a1": state()}, changed=["a1"])
    commit(other, message("k2"), states={"a1": state(status="healthy")}, changed=["a1"])
    assert store.load_states()["a1"].status == "error"
    assert other.load_states()["a1"].status == "healthy"
    assert [r.destination for r in store.pending_deliveries()] == ["k1"]
    assert [r.destination for r in other.pending_deliveries()] == ["k2"]
    assert (store.pending_count(), len(other.recent_cycles())) == (1, 1)
    other.add_ack(Ack("a1", ("error", True, False), "known", "ops", T0))
    assert store.load_acks() == {}
    other.write_meta("scope", "acme's")
    assert store.read_meta("scope") is None
    store.add_silence(
        matchers={"platform": ["x"]},
        reason="r",
        created_by="ops",
        created_at=T0,
        ends_at=T0 + timedelta(hours=1),
    )
    assert len(other.load_silences()) == 1  # silences are everyone's
    assert store.workspaces() == ["acme", "default"]


def test_each_named_workspace_settles_a_silence_for_itself(store: StateStore) -> None:
    """A silence that ends is re-announced by every workspace it held back: one workspace's
    acting upon its end settles it for that workspace alone."""
    acme, bolt = store.scoped("acme"), store.scoped("bolt")
    silence_id = store.add_silence(
        matchers={"platform": ["x"]},
        reason="r",
        created_by="ops",
        created_at=T0,
        ends_at=T0 + timedelta(hours=1),
    )
    acme.settle_silences([silence_id], prune_before=T0)
    assert [s.settled for s in acme.load_silences()] == [True]
    assert [s.settled for s in bolt.load_silences()] == [False]
    bolt.settle_silences([silence_id], prune_before=T0)
    assert [s.settled for s in bolt.load_silences()] == [True]
    bolt.settle_silences([], prune_before=T0 + timedelta(days=30))
    assert store.load_silences() == []  # long ended: forgotten by everyone


async def test_each_workspace_has_its_own_writer(store: StateStore) -> None:
    """One workspace's writer (held while its cycle delivers) never holds back another's."""
    acme, bolt = store.scoped("acme"), store.scoped("bolt")
    async with acme.writing(1):
        async with asyncio.timeout(2), bolt.writing(1):
            pass  # another workspace commits meanwhile
        with pytest.raises(TimeoutError):  # the same workspace's second writer waits
            async with asyncio.timeout(0.2), acme.writing(1):
                pass


def quiet(account_id: str, until: float, **kw: object) -> AccountState:
    """A state the rules marked quiet until `until`, its entry's fingerprint made of its id."""
    return marked(state(account_id, **kw), account_id.encode().ljust(16, b"."), until)


def test_quiet_marks_are_kept_and_indexed_by_fingerprint(opener: Opener) -> None:
    first = opener()
    states = {
        "a1": quiet("a1", 2000.0),
        "a2": quiet("a2", QUIET_FOREVER, status="healthy"),
        "a3": quiet("a3", 1000.0),
        "a4": state("a4"),  # not quiet
    }
    commit(first, states=states, changed=list(states))
    second = opener()
    assert second.quiet_index(after=1500.0) == {b"a1" + b"." * 14: "a1", b"a2" + b"." * 14: "a2"}
    loaded = second.load_states()
    assert (loaded["a2"].listed, loaded["a2"].quiet_until) == (b"a2" + b"." * 14, QUIET_FOREVER)
    assert (loaded["a4"].listed, loaded["a4"].quiet_until) == (None, None)
    assert second.status_counts() == {("error", "twitter"): 3, ("healthy", "twitter"): 1}


def test_a_lazy_load_holds_every_state_and_reads_the_quiet_ones_when_asked(
    opener: Opener,
) -> None:
    states = {f"a{i}": quiet(f"a{i}", 5000.0) for i in range(1200)} | {"b": state("b")}
    commit(opener(), states=states, changed=list(states))
    lazy = opener().load_states(lazy=True)
    assert len(lazy) == 1201
    assert sorted(lazy) == sorted(states)
    assert "a7" in lazy
    assert "zz" not in lazy
    assert lazy["a7"] == states["a7"]
    assert lazy["a7"].quiet_until == 5000.0
    assert dict(lazy.items()) == states  # the rest fetched together, in chunks
    with pytest.raises(KeyError):
        lazy["zz"]


def test_a_commit_through_a_lazy_load_keeps_the_handles_view_right(opener: Opener) -> None:
    """A daemon keeps what it loaded lazily and lays each commit over it: what it then reads
    is what another handle reads from the store."""
    first = opener()
    states = {f"a{i}": quiet(f"a{i}", 5000.0) for i in range(10)}
    commit(first, states=states, changed=list(states))
    lazy = first.load_states(lazy=True)
    changed = {"a1": state("a1", status="healthy"), "new": state("new")}
    commit(first, states=with_changes(lazy, changed), changed=["a1", "new"], removed=["a2"])
    again = first.load_states(lazy=True)
    expected = {k: v for k, v in {**states, **changed}.items() if k != "a2"}
    assert dict(again.items()) == expected
    assert "a2" not in again
    assert len(again) == len(expected)
    assert first.load_states() == expected
    assert opener().load_states() == expected
    assert first.status_counts() == {("error", "twitter"): 9, ("healthy", "twitter"): 1}


def test_the_oldest_detail_is_the_rules_order_read_from_the_store(store: StateStore) -> None:
    """The detail sweep of a poll whose states were not all read asks the store: it must
    pick what rules.due_for_detail picks from the states themselves."""
    rng = random.Random(3)
    states = {}
    for i in range(300):
        since = T0 + timedelta(hours=rng.randint(0, 50), microseconds=rng.choice([0, 250000]))
        detail_at = rng.choice([None, T0 + timedelta(hours=rng.randint(0, 50))])
        states[f"a{i:03d}"] = state(f"a{i:03d}", since=since, detail_at=detail_at)
    commit(store, states=states, changed=list(states))
    skip = {f"a{i:03d}" for i in range(0, 300, 7)}
    for count in (0, 1, 25, 290):
        expected = due_for_detail((s for k, s in states.items() if k not in skip), count=count)
        assert store.oldest_detail(count, skip=skip) == expected


def test_text_no_json_reader_takes_is_kept_and_leaves_the_detail_order_readable(
    opener: Opener,
) -> None:
    """Late's text may hold a NUL (`\\u0000`), which PostgreSQL's jsonb refuses, and a
    lone half of a UTF-16 pair could reach a state only by mistake (bodies are mended as
    they are read): neither may break the queries that read the states' JSON (the detail
    sweep's order), nor come back other than it went in."""
    store = opener()
    odd = {
        "a1": state("a1", display_name="nul\x00here", issues=("x\x00",)),
        "a2": state("a2", username="@zoe\ud83d", detail_at=None),
        "a3": state("a3", detail_at=None),
    }
    commit(store, states=odd, changed=list(odd))
    assert store.oldest_detail(3) == due_for_detail(odd.values(), count=3)
    assert opener().load_states() == odd


# -- the quiet index a handle keeps between polls (marks.py) ------------------------------


def fp(account_id: str, version: str = "") -> bytes:
    """The fingerprint `quiet` gives `account_id`'s entry (`version`: a later entry's)."""
    return (account_id + version).encode().ljust(16, b".")


def remark(account_id: str, version: str, until: float, **kw: object) -> AccountState:
    """`account_id` marked quiet from a later entry of the listing."""
    return marked(state(account_id, **kw), fp(account_id, version), until)


MARKED = {
    "a1": quiet("a1", 2000.0),
    "a2": quiet("a2", QUIET_FOREVER),
    "a3": quiet("a3", 1000.0),
    "a4": quiet("a4", 3000.0),
    "a5": state("a5"),  # not quiet
}


def cycle(store: StateStore, changes: dict[str, AccountState], removed: list[str]) -> None:
    """Commit as a cycle does: `changes` laid over the states the handle holds."""
    states = with_changes(store.load_states(lazy=True), changes)
    commit(store, states=states, changed=list(changes), removed=removed)


def same_index(store: StateStore, fresh: StateStore) -> None:
    """`store`'s quiet index and lazy load are what a handle reading the store gives."""
    for after in (0.0, 999.0, 1000.0, 1500.0, 2500.0, 1e12):
        assert store.quiet_index(after=after) == fresh.quiet_index(after=after), after
    held, read = store.load_states(lazy=True), fresh.load_states(lazy=True)
    assert sorted(held) == sorted(read)
    assert dict(held.items()) == dict(read.items())


def test_marks_with_odd_ids_and_fingerprints_read_back_as_committed(opener: Opener) -> None:
    """Ids holding a newline, a comma or any letter, and fingerprints holding NUL, newline
    or bytes no text has, read back as committed, each paired with its account, expired
    marks left out."""
    prints = {
        "a\nb": b"\n" * 16,
        "ünï,cödé": b"\x00\xff\n," + b"\x80" * 12,
        "a1": b"\xff" * 16,
        "a2": bytes(range(16)),
        "gone": b"\x01" * 16,  # expired at 1000
    }
    states = {
        key: marked(state(key), listed, 1000.0 if key == "gone" else 5000.0)
        for key, listed in prints.items()
    } | {"plain": state("plain")}
    commit(opener(), states=states, changed=list(states))
    expected = {listed: key for key, listed in prints.items() if key != "gone"}
    assert opener().quiet_index(after=1500.0) == expected
    assert opener().quiet_index(after=500.0) == expected | {b"\x01" * 16: "gone"}
    assert opener().quiet_index(after=5000.0) == {}
    fresh = opener()
    fresh.quiet_index(after=1500.0)
    assert sorted(fresh.load_states(lazy=True)) == sorted(states)
    commit(opener(), states=states, removed=["a\nb"])
    again = opener()
    assert again.quiet_index(after=1500.0) == {k: v for k, v in expected.items() if v != "a\nb"}
    assert dict(again.load_states(lazy=True).items()) == {
        k: v for k, v in states.items() if k != "a\nb"
    }


def test_a_handles_own_commits_keep_its_quiet_index_equal_to_a_fresh_read(
    opener: Opener,
) -> None:
    daemon = opener()
    commit(daemon, states=MARKED, changed=list(MARKED))
    assert daemon.quiet_index(after=0.0) == {fp(k): k for k in ("a1", "a2", "a3", "a4")}
    changes = {
        "a1": remark("a1", "v2", 2500.0),  # a new entry, quiet again
        "a2": state("a2", status="warning"),  # judged in full: no mark
        "a5": quiet("a5", 4000.0),  # newly quiet
        "a6": quiet("a6", QUIET_FOREVER),  # a new account, quiet at once
    }
    cycle(daemon, changes, removed=["a4", "zz"])
    assert daemon.quiet_index(after=0.0) == {
        fp("a1", "v2"): "a1",
        fp("a3"): "a3",
        fp("a5"): "a5",
        fp("a6"): "a6",
    }
    same_index(daemon, opener())
    # a second poll of the same handle: its index is kept up to date commit after commit
    again = {"a3": state("a3"), "a6": remark("a6", "v2", 1200.0)}
    cycle(daemon, again, removed=["a5"])
    same_index(daemon, opener())


def test_another_handles_commit_of_marks_reaches_the_next_quiet_index(opener: Opener) -> None:
    """A stale quiet entry would leave a changed account unjudged (a missed alert): what
    another handle (process) committed is seen by the next read, whichever comes next."""
    daemon, other = opener(), opener()
    commit(daemon, states=MARKED, changed=list(MARKED))
    assert fp("a1") in daemon.quiet_index(after=0.0)
    daemon.load_states(lazy=True)
    changes = {
        "a1": state("a1", status="healthy"),  # no longer quiet: must be judged
        "a2": remark("a2", "v2", QUIET_FOREVER),
        "a5": quiet("a5", 5000.0),
    }
    commit(other, states=changes, changed=list(changes), removed=["a3"])
    assert daemon.quiet_index(after=0.0) == {
        fp("a2", "v2"): "a2",
        fp("a4"): "a4",
        fp("a5"): "a5",
    }
    same_index(daemon, opener())

    # and when this handle commits before it reads again, over the other's commit (its
    # states given whole, as a dict)
    commit(other, states={"a4": state("a4")}, changed=["a4"])
    whole = {**MARKED, **changes, "a4": state("a4"), "a7": quiet("a7", 9000.0)}
    del whole["a3"]
    commit(daemon, states=whole, changed=["a7"])
    index = daemon.quiet_index(after=0.0)
    assert fp("a4") not in index
    assert index[fp("a7")] == "a7"
    same_index(daemon, opener())


def test_a_removed_account_leaves_the_quiet_index(opener: Opener) -> None:
    daemon = opener()
    commit(daemon, states=MARKED, changed=list(MARKED))
    daemon.quiet_index(after=0.0)
    cycle(daemon, {}, removed=["a2", "a3"])
    assert daemon.quiet_index(after=0.0) == {fp("a1"): "a1", fp("a4"): "a4"}
    assert "a2" not in daemon.load_states(lazy=True)
    same_index(daemon, opener())


def test_marks_that_end_by_after_are_left_out_of_the_kept_index(opener: Opener) -> None:
    daemon = opener()
    commit(daemon, states=MARKED, changed=list(MARKED))
    daemon.quiet_index(after=0.0)  # now held
    assert set(daemon.quiet_index(after=1000.0).values()) == {"a1", "a2", "a4"}  # 1000: ended
    assert set(daemon.quiet_index(after=2000.0).values()) == {"a2", "a4"}
    assert set(daemon.quiet_index(after=2999.9).values()) == {"a2", "a4"}
    assert set(daemon.quiet_index(after=1e15).values()) == {"a2"}  # never ends
    cycle(daemon, {"a2": quiet("a2", 2500.0)}, removed=[])
    assert set(daemon.quiet_index(after=2600.0).values()) == {"a4"}
    same_index(daemon, opener())


def test_a_quiet_index_once_returned_is_not_changed_by_later_commits(opener: Opener) -> None:
    """The parser reads the index during a fetch, outside the write lock."""
    daemon = opener()
    commit(daemon, states=MARKED, changed=list(MARKED))
    index = daemon.quiet_index(after=0.0)
    kept = dict(index)
    cycle(daemon, {"a1": state("a1"), "a9": quiet("a9", 9e9)}, removed=[])
    assert index == kept
    assert fp("a9") in daemon.quiet_index(after=0.0)


def test_each_workspace_keeps_its_own_quiet_index(store: StateStore) -> None:
    acme = store.scoped("acme")
    commit(store, states=MARKED, changed=list(MARKED))
    commit(acme, states={"a1": quiet("a1", 9e9, platform="x")}, changed=["a1"])
    assert set(store.quiet_index(after=0.0).values()) == {"a1", "a2", "a3", "a4"}
    assert acme.quiet_index(after=0.0) == {fp("a1"): "a1"}
    cycle(acme, {"a2": quiet("a2", 9e9)}, removed=["a1"])
    cycle(store, {"a4": state("a4")}, removed=[])
    assert set(store.quiet_index(after=0.0).values()) == {"a1", "a2", "a3"}
    assert acme.quiet_index(after=0.0) == {fp("a2"): "a2"}
    assert sorted(acme.load_states(lazy=True)) == ["a2"]


def test_changed_rows_reach_the_store_whether_their_status_moved_or_not(opener: Opener) -> None:
    """SQLite writes a row that keeps its status without touching its status column: what
    a fresh handle reads and counts is every change all the same."""
    daemon = opener()
    first = {"a1": state("a1"), "a2": state("a2"), "a3": quiet("a3", 9e9)}
    commit(daemon, states=first, changed=list(first))
    for changes in (
        {"a1": state("a1", username="@kept"), "a2": state("a2", status="healthy")},
        {"a2": state("a2", status="healthy", platform="bluesky"), "a4": state("a4")},
        {"a3": state("a3", username="@x"), "a1": quiet("a1", 9e9, username="@kept")},
    ):
        cycle(daemon, changes, removed=[])
        fresh = opener()
        held = fresh.load_states()
        assert dict(daemon.load_states().items()) == held
        counted: dict[tuple[str, str], int] = {}
        for s in held.values():
            counted[(s.status, s.platform)] = counted.get((s.status, s.platform), 0) + 1
        assert fresh.status_counts() == counted
        assert daemon.status_counts() == counted
