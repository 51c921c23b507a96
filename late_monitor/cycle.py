"""One cycle, the single unit of work: fetch -> evaluate -> commit -> deliver.

`run --once` calls `run_cycle` once; the daemon schedules it. A crash anywhere loses nothing:
either the commit did not happen (the next cycle finds the same changes) or the outbox holds
what is still to be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import attrgetter

import structlog

from late_monitor.errors import AuthRejected, LateApiError, StateBusy
from late_monitor.late import LateClient
from late_monitor.models import Detail
from late_monitor.notify import CONSOLE_URL, Notifier
from late_monitor.outbox import Delivery, deliver_due
from late_monitor.rules import (
    Evaluation,
    Event,
    Policy,
    api_failed,
    api_succeeded,
    apply_details,
    due_for_detail,
    evaluate,
)
from late_monitor.store import CycleRecord, PlannedMessage, Store

log = structlog.get_logger("late_monitor.cycle")

DETAIL_CONCURRENCY = 8
_STATUS_PLATFORM = attrgetter("status", "platform")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CycleDeps:
    """Everything a cycle needs, built once by the CLI or the daemon."""

    client: LateClient
    store: Store
    notifier: Notifier
    policy: Policy
    profile_id: str = ""
    platforms: tuple[str, ...] = ()
    detail: str = "changed"
    detail_every: float = 6 * 3600.0
    interval: float = 300.0
    max_requests_per_minute: int = 30
    retry_for: float = 86400.0
    lock_wait: float = 15.0
    clock: Callable[[], datetime] = utcnow


@dataclass(frozen=True)
class CycleResult:
    outcome: str  # ok | api_failed | auth_failed
    accounts: int = 0
    by_platform: Mapping[tuple[str, str], int] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    messages: tuple[PlannedMessage, ...] = ()
    requests: int = 0
    duration: float = 0.0
    error: str | None = None
    delivery: Delivery = field(default_factory=Delivery)
    timings: Mapping[str, float] = field(default_factory=dict)  # wall seconds per phase
    cpu: Mapping[str, float] = field(default_factory=dict)  # CPU seconds per phase

    @property
    def by_status(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (status, _), count in self.by_platform.items():
            counts[status] += count
        return dict(counts)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "ok" and not self.delivery.failed else 1


async def _acquire(store: Store, wait: float) -> int:
    deadline = time.monotonic() + wait
    while (fd := store.try_lock()) is None:
        if time.monotonic() >= deadline:
            raise StateBusy(
                f"another late-monitor is running a cycle on {store.path}; gave up after {wait:g}s"
            )
        await asyncio.sleep(0.1)
    return fd


async def run_cycle(deps: CycleDeps, *, dry_run: bool = False) -> CycleResult:
    """Poll once, record what changed with its notifications, then deliver what is due."""
    fd = await _acquire(deps.store, deps.lock_wait)
    try:
        return await _run_locked(deps, dry_run=dry_run)
    finally:
        deps.store.release_lock(fd)


class Stopwatch:
    """Wall and CPU time spent in each phase of a cycle. CPU is the whole process's, so that
    the work handed to threads (Apprise's loading and sending) counts too."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


async def _run_locked(deps: CycleDeps, *, dry_run: bool) -> CycleResult:
    started = deps.clock()
    t0 = time.perf_counter()
    watch = Stopwatch()
    requests_before = deps.client.requests
    store = deps.store
    with watch.phase("load"):
        previous = store.load_states()
        api = store.load_api_health()

    details: dict[str, Detail] = {}
    error: str | None = None
    evaluation = Evaluation(states=previous, changed=frozenset(), removed=frozenset())
    try:
        with watch.phase("fetch"):
            snapshot = await deps.client.health(
                profile_id=deps.profile_id, platforms=deps.platforms
            )
    except AuthRejected as exc:
        outcome, error = "auth_failed", str(exc)
        api, events = api_failed(api, error=error, auth=True, policy=deps.policy)
    except LateApiError as exc:
        outcome, error = "api_failed", str(exc)
        api, events = api_failed(api, error=error, auth=False, policy=deps.policy)
    else:
        outcome = "ok"
        now = deps.clock()
        with watch.phase("evaluate"):
            evaluation = evaluate(previous, snapshot, now=now, policy=deps.policy)
        with watch.phase("detail"):
            details = await _fetch_details(deps, evaluation)
            evaluation = apply_details(evaluation, details, now=now, policy=deps.policy)
        api, api_events = api_succeeded(api)
        events = [*api_events, *evaluation.events]
    if error:
        log.warning("poll_failed", outcome=outcome, error=error)

    messages: list[PlannedMessage] = []
    with watch.phase("render"):
        if events and deps.notifier.configured:
            await deps.notifier.load()
            messages = deps.notifier.plan(events, details)
    for event in events:
        log.info(
            "event_detected",
            kind=str(event.kind),
            account_id=event.account_id,
            notify_type=str(event.notify_type),
            old_status=event.old_status,
            new_status=event.new_status,
            note=event.note or None,
        )

    by_platform = Counter(map(_STATUS_PLATFORM, evaluation.states.values()))
    requests = deps.client.requests - requests_before
    result = CycleResult(
        outcome=outcome,
        accounts=len(evaluation.states),
        by_platform=dict(by_platform),
        events=tuple(events),
        messages=tuple(messages),
        requests=requests,
        error=error,
    )
    if dry_run:
        await _print_dry_run(deps.notifier, events, details)
        return _finish(result, t0, watch)

    with watch.phase("store"):
        store.commit_cycle(
            states=evaluation.states,
            changed=evaluation.changed,
            removed=evaluation.removed,
            api=api,
            messages=messages,
            record=CycleRecord(
                started_at=started,
                finished_at=deps.clock(),
                outcome=outcome,
                accounts=len(evaluation.states),
                events=len(events),
                requests=requests,
                error=error,
            ),
        )
    with watch.phase("deliver"):
        delivery = await deliver_due(
            deps.store, deps.notifier, retry_for=deps.retry_for, clock=deps.clock
        )
    return _finish(replace(result, delivery=delivery), t0, watch)


def _finish(result: CycleResult, t0: float, watch: Stopwatch) -> CycleResult:
    duration = time.perf_counter() - t0
    log.info(
        "poll_completed",
        outcome=result.outcome,
        accounts=result.accounts,
        **{f"status_{key}": value for key, value in sorted(result.by_status.items())},
        events=len(result.events),
        messages=len(result.messages),
        requests=result.requests,
        delivered=result.delivery.delivered,
        delivery_failed=result.delivery.failed,
        duration_ms=round(duration * 1000, 1),
    )
    return replace(result, duration=duration, timings=watch.wall, cpu=watch.cpu)


def _detail_targets(deps: CycleDeps, evaluation: Evaluation) -> list[str]:
    if deps.detail == "never":
        return []
    states = evaluation.states
    if deps.detail == "all":
        return list(states)
    evented = list(
        dict.fromkeys(
            e.account_id for e in evaluation.events if e.account_id and e.account_id in states
        )
    )
    if deps.detail_every <= 0 or not states:
        return evented
    per_cycle = math.ceil(len(states) * deps.interval / deps.detail_every)
    allowance = int(deps.max_requests_per_minute * deps.interval / 60) - 1 - len(evented)
    already = set(evented)
    sweep = due_for_detail(
        (s for s in states.values() if s.account_id not in already),
        count=min(per_cycle, max(allowance, 0)),
    )
    return evented + sweep


async def _fetch_details(deps: CycleDeps, evaluation: Evaluation) -> dict[str, Detail]:
    targets = _detail_targets(deps, evaluation)
    if not targets:
        return {}
    gate = asyncio.Semaphore(DETAIL_CONCURRENCY)
    details: dict[str, Detail] = {}

    async def fetch(account_id: str) -> None:
        async with gate:
            try:
                details[account_id] = await deps.client.account_health(account_id)
            except LateApiError as exc:
                log.info("detail_failed", account_id=account_id, error=str(exc))

    await asyncio.gather(*(fetch(account_id) for account_id in targets))
    return details


async def _print_dry_run(
    notifier: Notifier, events: Sequence[Event], details: Mapping[str, Detail]
) -> None:
    """--dry-run: the messages go to the console destination instead of the real ones."""
    if not events:
        print("dry run: nothing to notify", flush=True)
        return
    console = Notifier(urls=[CONSOLE_URL], group=notifier.group)
    await console.load()
    for message in console.plan(events, details):
        for key, _ in message.destinations:
            await console.send(
                key, title=message.title, body=message.body, notify_type=message.notify_type
            )
