"""Delivery of the outbox to real json:// sinks, with the clock injected instead of waited for."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from late_monitor.events import Event
from late_monitor.messages import CycleRecord
from late_monitor.notify import READ_TIMEOUT, Notifier
from late_monitor.outbox import (
    AssumeDelivered,
    Decision,
    Drop,
    Failure,
    Retry,
    SetAside,
    backoff_delay,
    decide,
    deliver_due,
)
from late_monitor.state import ApiHealth
from late_monitor.store import Store
from tests.support.sink import Sink
from tests.test_notify import degraded, recovered

DAY = 86400.0
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("attempts", "age", "failure", "unanswered", "expected"),
    [
        (1, 0, Failure.TRANSIENT, 0, Retry(30)),
        (2, 100, Failure.TRANSIENT, 0, Retry(60)),
        (10, 5000, Failure.TRANSIENT, 0, Retry(1800)),
        (7, DAY - 10, Failure.TRANSIENT, 0, Retry(10)),  # the last try falls on the deadline
        (8, DAY, Failure.TRANSIENT, 0, Drop("undelivered after 86400s (8 attempts)")),
        (1, 0, Failure.REFUSED, 0, SetAside(DAY)),
        (3, 5000, Failure.REFUSED, 0, SetAside(DAY)),
        (2, DAY + 1, Failure.REFUSED, 0, Drop("undelivered after 86400s (2 attempts)")),
        (1, 0, Failure.UNANSWERED, 0, Retry(30)),  # it may not have arrived: once more
        (
            2,
            40,
            Failure.UNANSWERED,
            1,
            AssumeDelivered("sent twice, no answer within the read timeout either time"),
        ),
        (3, 200, Failure.TRANSIENT, 1, Retry(120)),  # an earlier timeout: still not delivered
    ],
)
def test_retry_policy(
    attempts: int, age: float, failure: Failure, unanswered: int, expected: Decision
) -> None:
    decision = decide(
        attempts=attempts, age=age, failure=failure, retry_for=DAY, unanswered=unanswered
    )
    assert decision == expected


def test_backoff_doubles_from_30_seconds_up_to_30_minutes() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1800, 1800]


def commit(store: Store, notifier: Notifier, events: list[Event], at: float) -> int:
    """One cycle's commit of the messages these events make, at clock time `at`."""
    when = datetime.fromtimestamp(at, UTC)
    return store.commit_cycle(
        states={},
        changed=[],
        removed=[],
        api=ApiHealth(),
        messages=notifier.plan(events),
        record=CycleRecord(
            started_at=when, finished_at=when, outcome="ok", accounts=1, events=1, requests=1
        ),
    )


def states(path: Path) -> list[tuple[str, str, int, str | None]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT label, state, attempts, last_error FROM outbox ORDER BY id"
        ).fetchall()


async def test_a_digest_a_webhook_refuses_as_too_long_arrives_cut_and_the_size_is_kept(
    tmp_path: Path, sink: Sink
) -> None:
    sink.max_body = 600  # a generic webhook with a limit Apprise knows nothing of
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded(f"big{i:02}") for i in range(25)], clock.now)
    with capture_logs() as logs:
        first = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
        commit(store, notifier, [degraded(f"next{i:02}") for i in range(25)], clock.now)
        second = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert (first.delivered, second.delivered) == (1, 1)
    [cut, next_one] = [m["message"] for m in sink.received]
    assert cut.startswith("[FAILURE] twitter @big00")
    assert cut.rstrip().endswith("more accounts (see late-monitor status)")
    assert sink.posts == 3  # as is (refused), cut to 500 (taken); the next one cut at once
    assert "@next00" in next_one
    [shortened] = [e for e in logs if e["event"] == "notification_shortened"]
    assert shortened["sent_chars"] == 500


async def test_a_refused_message_is_set_aside_once_and_does_not_hold_back_the_next(
    tmp_path: Path, sink: Sink
) -> None:
    sink.max_body = 300  # this destination takes 300 characters; Apprise thinks 32,768
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded(f"big{i:02}") for i in range(10)], clock.now)
    with capture_logs() as logs:
        first = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
        clock.advance(60)
        commit(store, notifier, [degraded("small")], clock.now)
        second = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
        clock.advance(3600)
        third = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert (first.set_aside, first.failed, second.delivered, third.delivered) == (1, 1, 1, 0)
    (failure,) = first.failures
    assert failure.startswith(notifier.destinations[0].label)
    assert failure.endswith("(set aside)")
    # the refused digest as it was and cut to 500 characters (still refused), then the next
    # message once; no retries
    assert sink.posts == 3
    assert ["small" in m["message"] for m in sink.received] == [True]
    aside = [e for e in logs if e["event"] == "notification_set_aside"]
    assert len(aside) == 1
    assert aside[0]["log_level"] == "warning"
    assert aside[0]["status"] == 400
    assert [s[1] for s in states(tmp_path / "s.db")] == ["set_aside", "delivered"]

    clock.advance(DAY)  # a day later it is past retry_for: given up, with the reason
    with capture_logs() as logs:
        await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert sink.posts == 3
    (dropped,) = [e for e in logs if e["event"] == "notification_dropped"]
    assert "undelivered after 86400s" in dropped["reason"]
    assert "error=400" in dropped["reason"]


async def test_a_digest_longer_than_the_destination_takes_is_cut_at_an_entry_and_arrives(
    tmp_path: Path, sink: Sink
) -> None:
    sink.max_body = 2000  # as Discord
    notifier = Notifier(urls=[sink.url()], body_limits={"json": 2000})
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded(f"account{i:03}") for i in range(60)], clock.now)
    delivery = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert delivery.delivered == 1
    (message,) = sink.received
    body = message["message"]
    assert len(body) <= 2000
    *entries, last = body.split("\n")
    assert last == f"... and {60 - len(entries)} more accounts (see late-monitor status)"
    assert all(line.startswith("[FAILURE] twitter @account") for line in entries)
    assert len(entries) > 10


async def test_after_an_outage_held_messages_arrive_as_one_up_to_date_digest(
    tmp_path: Path, sink: Sink
) -> None:
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    port = sink.port
    await sink.stop()  # connection refused
    for events in ([degraded("a1")], [degraded("a2")], [recovered("a1")]):
        commit(store, notifier, events, clock.now)
        failed = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
        clock.advance(300)
    assert failed.failed == 3  # the three held rows were tried together, not one by one
    await sink.start(port)
    delivery = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert (delivery.delivered, delivery.merged) == (3, 3)
    (message,) = sink.received
    assert message["title"] == "Late: 1 need attention, 1 recovered (latest of 3 held messages)"
    assert message["type"] == "failure"
    lines = message["message"].splitlines()
    assert lines[0].startswith("[FAILURE] twitter @a2 (a2): healthy -> error")
    assert lines[1].startswith("[SUCCESS] twitter @a1 (a1): error -> healthy")
    assert len(lines) == 2  # a1's stale "healthy -> error" is gone
    assert {s[1] for s in states(tmp_path / "s.db")} == {"delivered"}
    assert await deliver_due(store, notifier, retry_for=DAY, clock=clock) == type(delivery)()


async def test_a_transient_failure_keeps_the_order_of_one_cycles_messages(
    tmp_path: Path, sink: Sink
) -> None:
    notifier = Notifier(urls=[sink.url()], group="account")
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded("a1"), degraded("a2")], clock.now)
    sink.fail_status = 503
    failed = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert (failed.failed, sink.posts) == (1, 1)  # the second waits behind the first
    sink.fail_status = None
    clock.advance(29)
    await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert sink.received == []  # not due yet: the clock says so, no row was rewritten
    clock.advance(1)
    delivered = await deliver_due(store, notifier, retry_for=DAY, clock=clock)
    assert delivered.delivered == 2
    assert ["(a1)" in m["message"] for m in sink.received] == [True, False]


@pytest.mark.parametrize(
    ("query", "bound"),
    [
        ("?rto=1", 2.4),  # ?rto=1 bounds the wait, not 4 s or 15 s
        ("?rto=0.8&cto=1", 2.4),  # read within a second of connect: kept a second apart
    ],
)
async def test_a_destination_slower_than_its_read_timeout_gets_a_message_at_most_twice(
    tmp_path: Path, sink: Sink, query: str, bound: float
) -> None:
    sink.slow = 2.5  # takes the message, answers after 2.5 s
    notifier = Notifier(urls=[sink.url() + query])
    await notifier.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded("a1")], clock.now)
    with capture_logs() as logs:
        for _ in range(6):  # an hour of retries, were they allowed
            started = time.monotonic()
            await deliver_due(store, notifier, retry_for=DAY, clock=clock)
            assert time.monotonic() - started < bound
            clock.advance(600)
    assert sink.posts == 2
    assert len(sink.received) == 2
    ((_, state, attempts, note),) = states(tmp_path / "s.db")
    assert (state, attempts) == ("delivered", 2)
    assert note is not None
    assert note.startswith("unconfirmed: ")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "notification_failed",
        "notification_unconfirmed",
    ]


async def test_a_destination_that_refuses_connections_is_retried_until_retry_for(
    tmp_path: Path, sink: Sink
) -> None:
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    await sink.stop()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, notifier, [degraded("a1")], clock.now)
    for _ in range(4):
        await deliver_due(store, notifier, retry_for=DAY, clock=clock)
        clock.advance(1800)
    assert states(tmp_path / "s.db")[0][1:3] == ("pending", 4)  # not "unanswered": refused


async def test_timeouts_come_from_the_url_and_bound_the_send(sink: Sink) -> None:
    notifier = Notifier(urls=[sink.url(), sink.url("OTHERTOKEN1") + "?rto=45&cto=2"])
    await notifier.load()
    default, slow = notifier.destinations
    assert (default.connect_timeout, default.read_timeout) == (4.0, READ_TIMEOUT)
    assert (slow.connect_timeout, slow.read_timeout) == (2.0, 45.0)
    assert slow.timeout > 47  # never cut short by a shorter overall limit
    assert slow.service.socket_read_timeout == 45.0


async def test_a_removed_destination_s_messages_go_where_their_type_is_routed_now(
    tmp_path: Path, sink: Sink, sink2: Sink
) -> None:
    old_url, kept_url, new_url = sink.url("OLDTOKEN001"), sink2.url(), sink.url("NEWTOKEN001")
    before = Notifier(urls=[old_url, kept_url])
    await before.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, before, [degraded("a1")], clock.now)
    sink.fail_status = 401  # the old URL's token was revoked
    first = await deliver_due(store, before, retry_for=DAY, clock=clock)
    assert (first.delivered, first.set_aside, first.failed) == (1, 1, 1)

    sink.fail_status = None
    after = Notifier(urls=[new_url, kept_url])  # the operator fixed the URL
    await after.load()
    clock.advance(60)  # long before the set-aside day is over
    with capture_logs() as logs:
        second = await deliver_due(store, after, retry_for=DAY, clock=clock)
    assert (second.rerouted, second.delivered) == (1, 1)
    assert [m["path"] for m in sink.received] == ["/hook/NEWTOKEN001"]
    assert len(sink2.received) == 1  # it had the message already: not sent twice
    assert sorted(s[1] for s in states(tmp_path / "s.db")) == ["delivered", "delivered", "rerouted"]
    (rerouted,) = [e for e in logs if e["event"] == "notification_rerouted"]
    assert rerouted["to"] == [after.destinations[0].label]


async def test_a_removed_destination_s_messages_are_dropped_when_no_route_takes_them(
    tmp_path: Path, sink: Sink, sink2: Sink
) -> None:
    before = Notifier(urls=[sink.url()])
    await before.load()
    store, clock = Store.open(tmp_path / "s.db"), Clock()
    commit(store, before, [degraded("a1")], clock.now)
    await sink.stop()
    await deliver_due(store, before, retry_for=DAY, clock=clock)
    after = Notifier(urls=[sink2.url()], routes={"failure": ["oncall"]})  # sink2 is untagged
    await after.load()
    with capture_logs() as logs:
        delivery = await deliver_due(store, after, retry_for=DAY, clock=clock)
    assert (delivery.dropped, sink2.posts) == (1, 0)
    (dropped,) = [e for e in logs if e["event"] == "notification_dropped"]
    assert dropped["reason"] == "destination no longer configured; none configured takes failure"
