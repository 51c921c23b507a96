"""Delivery of the outbox: due rows -> one send per destination -> marked, by a pure retry policy.

Rows are written with the cycle that made them (DESIGN: commit before send) and marked only after
the destination answered, so a crash between the two sends a row again and never loses it.
`now` comes from the caller's clock, so a test makes retries due by moving its clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum

import structlog

from late_monitor.errors import DeliveryError
from late_monitor.messages import PENDING, SET_ASIDE, OutboxRow
from late_monitor.notify import Notifier, merge_held
from late_monitor.storage import Outbox as Store

log = structlog.get_logger("late_monitor.outbox")

Clock = Callable[[], float | datetime]

SET_ASIDE_FOR = 86400.0  # a refused message is not tried again for a day


class Failure(StrEnum):
    REFUSED = "refused"  # 4xx: bad token or URL, too large; the same send would fail again
    TRANSIENT = "transient"  # not delivered: connection refused, 5xx, 429; try again later
    UNANSWERED = "unanswered"  # sent, no answer within the read timeout: it may have arrived


@dataclass(frozen=True, slots=True)
class Retry:
    retry_in: float


@dataclass(frozen=True, slots=True)
class SetAside:
    retry_in: float


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str


@dataclass(frozen=True, slots=True)
class AssumeDelivered:
    reason: str


Decision = Retry | SetAside | Drop | AssumeDelivered


def backoff_delay(attempts: int) -> float:
    """After the n-th failed attempt: 30 s, then doubling, capped at 30 minutes."""
    return float(min(30 * 2 ** max(attempts - 1, 0), 1800))


def decide(
    *, attempts: int, age: float, failure: Failure, retry_for: float, unanswered: int = 0
) -> Decision:
    """What to do with a row whose send just failed.

    `attempts` counts this one; `age` is seconds since the message was made; `unanswered` is
    how many earlier sends of it got no answer. A second unanswered send is taken as delivered
    (the destination is up, only slower than its timeout: a third copy helps nobody); past
    `retry_for` a row is dropped; a refusal is set aside for a day (it must not hold back the
    rows behind it); anything else is retried with backoff, the last try falling on the
    `retry_for` deadline.
    """
    if failure is Failure.UNANSWERED and unanswered >= 1:
        return AssumeDelivered("sent twice, no answer within the read timeout either time")
    left = retry_for - age
    if left <= 0:
        return Drop(f"undelivered after {retry_for:g}s ({attempts} attempts)")
    if failure is Failure.REFUSED:
        return SetAside(SET_ASIDE_FOR)
    return Retry(min(backoff_delay(attempts), left))


def failure_of(error: DeliveryError) -> Failure:
    if error.permanent:
        return Failure.REFUSED
    return Failure.UNANSWERED if error.unanswered else Failure.TRANSIENT


@dataclass(frozen=True)
class Delivery:
    """What one pass over the outbox did, counted in rows (messages to a destination)."""

    delivered: int = 0
    failed: int = 0  # sends that failed, set-aside rows included
    dropped: int = 0
    set_aside: int = 0
    rerouted: int = 0
    merged: int = 0  # rows delivered as part of a merged digest (also counted as delivered)
    unconfirmed: int = 0  # rows taken as delivered after two sends without an answer
    failures: tuple[str, ...] = ()
    per_destination: Mapping[tuple[str, bool], int] = field(default_factory=dict)

    def __add__(self, other: Delivery) -> Delivery:
        """Two passes as one (a cycle that delivers its news, then its follow-up)."""
        per_destination = Counter(self.per_destination)
        per_destination.update(other.per_destination)
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.type == "int"
        }
        return Delivery(
            **counts,
            failures=(*self.failures, *other.failures),
            per_destination=dict(per_destination),
        )


def epoch(clock: Clock) -> float:
    value = clock()
    return value.timestamp() if isinstance(value, datetime) else float(value)


async def deliver_pending(
    store: Store, notifier: Notifier, *, retry_for: float, clock: Clock, lock_wait: float
) -> Delivery:
    """The outbox-retry job: deliver what is due, holding the state file like a cycle does."""
    now = epoch(clock)
    next_at = store.next_attempt_at()
    if next_at is None or (next_at > now and store.oldest_pending() > now - retry_for):
        return Delivery()
    async with store.writing(lock_wait):
        return await deliver_due(store, notifier, retry_for=retry_for, clock=clock)


async def deliver_due(
    store: Store, notifier: Notifier, *, retry_for: float, clock: Clock
) -> Delivery:
    """Send every due outbox row; the caller holds the cycle lock.

    In order: rows older than `retry_for` are dropped; rows whose destination left the
    configuration go to the destinations that take their type now; then each destination is
    drained (concurrently with the others), see `_Drain`.
    """
    now = epoch(clock)
    tally = _Tally()
    rows = []
    for row in store.pending_deliveries():
        if now - row.created_at > retry_for:
            reason = f"undelivered after {retry_for:g}s ({row.attempts} attempts)"
            if row.last_error:
                reason += f"; last error: {row.last_error}"
            tally.drop(store, row, reason=reason, now=now)
        else:
            rows.append(row)
    if not rows:
        return tally.result()
    await notifier.load()
    if any(not notifier.knows(row.destination) for row in rows):
        for row in rows:
            if not notifier.knows(row.destination):
                _reroute(store, notifier, row, tally, now=now)
        rows = store.pending_deliveries()
    if all(row.next_attempt_at > now for row in rows):
        return tally.result()
    by_destination: defaultdict[str, list[OutboxRow]] = defaultdict(list)
    for row in rows:
        by_destination[row.destination].append(row)
    drain = _Drain(store, notifier, tally, retry_for=retry_for, clock=clock, now=now)
    await asyncio.gather(*(drain(group) for group in by_destination.values()))
    return tally.result()


def _reroute(
    store: Store, notifier: Notifier, row: OutboxRow, tally: _Tally, *, now: float
) -> None:
    """A row for a destination no longer configured goes where its type is routed now."""
    targets = [(d.key, d.label) for d in notifier.routed(row.notify_type)]
    if not targets:
        reason = f"destination no longer configured; none configured takes {row.notify_type}"
        tally.drop(store, row, reason=reason, now=now)
        return
    added = store.reroute(row.id, to=targets, now=now)
    tally.counts["rerouted"] += 1
    log.info(
        "notification_rerouted",
        message_id=row.message_id,
        destination=row.label,
        to=added,
    )


class _Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.per_destination: Counter[tuple[str, bool]] = Counter()
        self.failures: list[str] = []

    def drop(self, store: Store, row: OutboxRow, *, reason: str, now: float) -> None:
        store.mark_dropped(row.id, reason=reason, now=now)
        log.warning(
            "notification_dropped", message_id=row.message_id, destination=row.label, reason=reason
        )
        self.counts["dropped"] += 1

    def result(self) -> Delivery:
        c = self.counts
        return Delivery(
            delivered=c["delivered"],
            failed=c["failed"],
            dropped=c["dropped"],
            set_aside=c["set_aside"],
            rerouted=c["rerouted"],
            merged=c["merged"],
            unconfirmed=c["unconfirmed"],
            failures=tuple(self.failures),
            per_destination=dict(self.per_destination),
        )


class _Drain:
    """Drains one destination's rows.

    A set-aside row whose day is over is tried on its own and blocks nothing. Pending rows
    keep their order: nothing is sent while the oldest is not due, and a transient failure
    stops the destination until its retry. Pending rows from more than one cycle (the
    destination was failing meanwhile) go as ONE digest of each account's latest entry.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        tally: _Tally,
        *,
        retry_for: float,
        clock: Clock,
        now: float,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.tally = tally
        self.retry_for = retry_for
        self.clock = clock
        self.now = now

    async def __call__(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            if row.state == SET_ASIDE and row.next_attempt_at <= self.now:
                await self._send([row], row.title, row.body, row.notify_type)
        waiting = [row for row in rows if row.state == PENDING]
        if not waiting or waiting[0].next_attempt_at > self.now:
            return
        if len({row.cycle_id for row in waiting}) > 1:
            title, body, notify_type = merge_held(
                [(row.notify_type, row.body, row.entries) for row in waiting]
            )
            await self._send(waiting, title, body, notify_type)
            return
        for row in waiting:
            if row.next_attempt_at > self.now:
                return
            if not await self._send([row], row.title, row.body, row.notify_type):
                return

    async def _send(
        self, rows: Sequence[OutboxRow], title: str, body: str, notify_type: str
    ) -> bool:
        """One message for `rows`; False when the destination must wait (keep the order)."""
        key, label = rows[0].destination, rows[0].label
        ids = [row.message_id for row in rows]
        try:
            await self.notifier.deliver(key, title=title, body=body, notify_type=notify_type)
        except DeliveryError as exc:
            return self._failed(rows, exc)
        self.store.mark_delivered(*(row.id for row in rows), now=epoch(self.clock))
        log.info("notification_delivered", message_ids=ids, destination=label, rows=len(rows))
        self.tally.counts["delivered"] += len(rows)
        if len(rows) > 1:
            self.tally.counts["merged"] += len(rows)
        self.tally.per_destination[key, True] += len(rows)
        return True

    def _failed(self, rows: Sequence[OutboxRow], exc: DeliveryError) -> bool:
        failure, error, now = failure_of(exc), str(exc), epoch(self.clock)
        key, label = rows[0].destination, rows[0].label
        aside: list[OutboxRow] = []
        assumed: list[OutboxRow] = []
        retried: list[tuple[OutboxRow, float]] = []
        for row in rows:
            decision = decide(
                attempts=row.attempts + 1,
                age=now - row.created_at,
                failure=failure,
                retry_for=self.retry_for,
                unanswered=row.unanswered,
            )
            match decision:
                case SetAside():
                    aside.append(row)
                case AssumeDelivered():
                    assumed.append(row)
                case Drop(reason):
                    self.tally.drop(self.store, row, reason=reason, now=now)
                case Retry(retry_in):
                    retried.append((row, retry_in))
        counts = self.tally.counts
        self.tally.per_destination[key, False] += len(rows)
        if aside:
            self.store.mark_set_aside(
                *(row.id for row in aside), error=error, until=now + SET_ASIDE_FOR
            )
            log.warning(
                "notification_set_aside",
                message_ids=[row.message_id for row in aside],
                destination=label,
                error=error,
                status=exc.status,
                retry_in_s=SET_ASIDE_FOR,
            )
            counts["set_aside"] += len(aside)
            counts["failed"] += len(aside)  # `run --once` exits 1 and says why, this once
            self.tally.failures.append(f"{label}: {error} (set aside)")
        if assumed:
            self.store.mark_delivered(
                *(row.id for row in assumed), now=now, note=f"unconfirmed: {error}"
            )
            log.warning(
                "notification_unconfirmed",
                message_ids=[row.message_id for row in assumed],
                destination=label,
                error=error,
                hint="sent twice without an answer within the read timeout; if the "
                "destination is this slow, raise ?rto= in its URL",
            )
            counts["unconfirmed"] += len(assumed)
        if not retried:
            return True
        retry_in = min(delay for _, delay in retried)
        self.store.mark_failed(
            *(row.id for row, _ in retried),
            error=error,
            next_attempt_at=now + retry_in,
            unanswered=failure is Failure.UNANSWERED,
        )
        log.warning(
            "notification_failed",
            message_ids=[row.message_id for row, _ in retried],
            destination=label,
            error=error,
            attempt=max(row.attempts for row, _ in retried) + 1,
            retry_in_s=retry_in,
        )
        counts["failed"] += len(retried)
        self.tally.failures.append(f"{label}: {error}")
        return False
