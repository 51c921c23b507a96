"""One cycle, the single unit of work: fetch -> evaluate -> commit -> deliver.

`run --once` calls `run_cycle` once; the daemon schedules it. A crash anywhere loses nothing:
either the commit did not happen (the next cycle finds the same changes) or the outbox holds
what is still to be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import structlog

from late_monitor import control
from late_monitor.errors import (
    AuthRejected,
    BadPayload,
    LateApiError,
    LateMonitorError,
    ScopeConflict,
    StateBusy,
)
from late_monitor.events import Event, Kind, NotifyType
from late_monitor.health_list import QuietIndex
from late_monitor.heartbeat import Heartbeat
from late_monitor.impact import apply_impact, needing, tally
from late_monitor.late import LateClient
from late_monitor.messages import CycleRecord, PlannedMessage
from late_monitor.models import Detail, Snapshot
from late_monitor.notify import CONSOLE_URL, Notifier
from late_monitor.outbox import Delivery, deliver_due
from late_monitor.posts import Lookup
from late_monitor.quiet import QuietWindow
from late_monitor.reconnect import LinkMaker
from late_monitor.render import Extras
from late_monitor.rules import (
    Evaluation,
    Policy,
    api_failed,
    api_succeeded,
    apply_details,
    due_for_detail,
    evaluate,
    follow_ups,
    quiet_marks,
    remarked,
    unreadable_told,
)
from late_monitor.scope import Scope, check_scope
from late_monitor.state import AccountState, ApiHealth, evolved
from late_monitor.state_views import preload, status_counts, unquiet, with_changes
from late_monitor.storage import StateStore as Store

log = structlog.get_logger("late_monitor.cycle")

DetailMode = Literal["changed", "all", "never"]  # when to call /accounts/{id}/health
Outcome = Literal["ok", "api_failed", "auth_failed"]  # of a cycle's poll

DETAIL_CONCURRENCY = 8
DETAIL_SLICE = 5.0  # seconds of detail calls a cycle's news may wait for; the rest follow
QUIET_MARKS = "quiet_marks"  # meta: the settings the stored quiet marks were made under
QUIET_SLACK = 3600.0  # a mark ending within this of the index's read is not counted quiet


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
    detail: DetailMode = "changed"
    detail_every: float = 6 * 3600.0
    interval: float = 300.0
    max_requests_per_minute: int = 30
    retry_for: float = 86400.0
    lock_wait: float = 15.0
    clock: Callable[[], datetime] = utcnow
    quiet_hours: tuple[QuietWindow, ...] = ()
    heartbeat: Heartbeat | None = None
    impact_horizon: float = 72 * 3600.0  # [impact]: scheduled posts of failing accounts
    escalate_within: float = 2 * 3600.0
    impact_pages: int = 10
    public_url: str = ""  # [http] public_url: reconnect links point there
    link_expiry: float = 7 * 86400.0
    # accounts by status and platform after each commit (CycleResult.by_platform): the
    # daemon's status line and metrics show them; `run --once` only logs them at info
    counts: bool = True


@dataclass(frozen=True)
class CycleResult:
    outcome: Outcome
    accounts: int = 0
    by_platform: Mapping[tuple[str, str], int] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    messages: tuple[PlannedMessage, ...] = ()
    requests: int = 0
    duration: float = 0.0
    error: str | None = None
    unreadable: int = 0  # accounts listed with fields that could not be read
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


def scope_of_state(deps: CycleDeps) -> tuple[Scope, Scope | None, bool]:
    """The scope this configuration watches, the one the state file was written for, and
    whether the first narrows the second. Raises StateError when they differ otherwise, so
    the daemon can refuse at start what a cycle would refuse anyway."""
    scope = Scope.of(
        base_url=deps.client.base_url, profile_id=deps.profile_id, platforms=deps.platforms
    )
    recorded = Scope.load(deps.store.read_meta("scope"))
    narrowed = check_scope(
        recorded, scope, path=str(deps.store.path), workspace=deps.notifier.workspace
    )
    return scope, recorded, narrowed


async def run_cycle(deps: CycleDeps, *, dry_run: bool = False) -> CycleResult:
    """Poll once, record what changed with its notifications, then deliver what is due.

    The cycle lock is held throughout (one process polls at a time); the states are loaded
    only once the poll has answered, under the process's one writer, so that what a webhook
    committed meanwhile is what this poll is compared with."""
    try:
        async with deps.store.holding(deps.lock_wait):
            result = await _run_locked(deps, dry_run=dry_run)
    except LateMonitorError as exc:
        # another process running its cycle on the same file is not a failure to report
        if deps.heartbeat is not None and not dry_run and not isinstance(exc, StateBusy):
            await deps.heartbeat.beat(ok=False, note=str(exc))
        raise
    if deps.heartbeat is not None and not dry_run:
        await deps.heartbeat.beat(ok=result.outcome == "ok", note=result.error or "")
    return result


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
    try:
        scope, recorded, narrowed = scope_of_state(deps)
    except ScopeConflict as exc:
        if not dry_run:
            async with store.writing(deps.lock_wait):
                await _tell_conflict(deps, exc, started=started)
        raise

    snapshot: Snapshot | None = None
    failure: LateApiError | None = None
    fetched_at = deps.clock()
    marks = quiet_marks(deps.policy)
    tag = store.read_meta(QUIET_MARKS)  # only a cycle writes it, and this one holds the lock
    try:
        with watch.phase("fetch"):
            index = _quiet_index(deps, trusted=tag == marks and not narrowed)
            snapshot = await deps.client.health(
                profile_id=deps.profile_id, platforms=deps.platforms, quiet=index
            )
    except LateApiError as exc:
        # told by its message; its traceback would hold this frame (and the poll's index
        # and states) in a reference cycle until the collector's next pass
        failure = exc.with_traceback(None)

    async with store.writing(deps.lock_wait):
        with watch.phase("load"):
            previous = store.load_states(lazy=True)
            api = store.load_api_health()
        if api.scope_alerted:
            api = replace(api, scope_alerted=False)
        forgotten: frozenset[str] = frozenset()
        if narrowed:
            forgotten = frozenset(k for k, state in previous.items() if not scope.covers(state))
            previous = {k: state for k, state in previous.items() if k not in forgotten}
            log.info(
                "scope_narrowed",
                was=recorded.describe() if recorded else "",
                now=scope.describe(),
                accounts_forgotten=len(forgotten),
            )

        details: dict[str, Detail] = {}
        extras: dict[str, Extras] = {}
        lookup: Lookup | None = None
        error: str | None = None
        unreadable_count = 0
        evaluation = Evaluation(states=previous, changed=frozenset(), removed=frozenset())
        settled: tuple[int, ...] = ()  # silences whose end this cycle acts upon
        if isinstance(failure, AuthRejected):
            outcome: Outcome = "auth_failed"
            error = str(failure)
            api, events = api_failed(api, error=error, auth=True, policy=deps.policy)
        elif failure is not None:
            outcome, error = "api_failed", str(failure)
            api, events = api_failed(
                api,
                error=error,
                auth=False,
                policy=deps.policy,
                unreadable=isinstance(failure, BadPayload),
            )
        else:
            assert snapshot is not None
            outcome = "ok"
            if not snapshot.accounts and not snapshot.quiet and (deps.platforms or deps.profile_id):
                log.warning(  # a typo'd profile id or platform watches nothing, and says "ok"
                    "scope_matches_nothing",
                    platforms=list(deps.platforms),
                    profile_id=deps.profile_id,
                )
            now = deps.clock()
            with watch.phase("evaluate"):
                preload(previous, snapshot.accounts)
                evaluation = evaluate(
                    previous, snapshot, now=now, policy=deps.policy, fetched_at=fetched_at
                )
            with watch.phase("detail"):
                evented = _evented(evaluation) if deps.detail != "never" else []
                lookup = _lookup(deps, now)
                wanted = needing(evaluation.events, evaluation.states)
                details, _ = await asyncio.gather(  # the listing shares the detail calls' slice
                    _fetch_details(deps, evented, within=DETAIL_SLICE),
                    lookup.listing([evaluation.states[a] for a in wanted], within=DETAIL_SLICE),
                )
                evaluation = apply_details(evaluation, details, now=now, policy=deps.policy)
                evaluation = _detail_later(evaluation, [a for a in evented if a not in details])
                evaluation, extras = await _with_impact(deps, evaluation, lookup, now, dry_run)
                ended = control.after_poll(store, evaluation, now=now, record=not dry_run)
                evaluation, settled = ended.evaluation, ended.settled
                evaluation = remarked(evaluation, snapshot, now=now, policy=deps.policy)
            api, api_events = api_succeeded(api)
            api, unreadable = unreadable_told(api, snapshot, evaluation.states)
            for event in unreadable:
                log.warning("accounts_unreadable", accounts=len(api.unreadable), note=event.note)
            unreadable_count = len(snapshot.unreadable) + snapshot.unidentified
            events = [*api_events, *unreadable, *evaluation.events]
        if error:
            log.warning("poll_failed", outcome=outcome, error=error)

        with watch.phase("render"):
            messages = await _plan(deps, events, details, record=not dry_run, extras=extras)
        _log_events(events)

        requests = deps.client.requests - requests_before
        result = CycleResult(
            outcome=outcome,
            accounts=len(evaluation.states),
            by_platform={},  # counted below, by the store once it holds them
            events=tuple(events),
            messages=tuple(messages),
            requests=requests,
            error=error,
            unreadable=unreadable_count,
        )
        if dry_run:  # what would be sent: silenced and acked events left out, held ones shown
            shown = control.screen(store, events, now=deps.clock(), quiet=(), record=False).send
            await _print_dry_run(deps.notifier, shown, details, extras)
            result = replace(result, by_platform=status_counts(evaluation.states))
            return _finish(result, t0, watch)

        if index is None and tag not in (None, marks):
            # marks made under these settings are about to be committed: until the tag says
            # so (after the commit), no process may trust any mark (a crash in between)
            store.write_meta(QUIET_MARKS, None)
        with watch.phase("store"):
            store.commit_cycle(
                states=evaluation.states,
                changed=evaluation.changed,
                removed=evaluation.removed | forgotten,
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
        if recorded != scope:
            store.write_meta("scope", scope.dump())  # after the commit: a crash redoes this
        if outcome == "ok" and index is None and tag != marks:
            store.write_meta(QUIET_MARKS, marks)  # every listed account was marked under them
        if deps.counts or log.is_enabled_for(logging.INFO):  # 50,000 accounts: ~14 ms
            result = replace(result, by_platform=store.status_counts())
        control.after_commit(store, settled, now=deps.clock())
        with watch.phase("deliver"):
            delivery = await deliver_due(
                deps.store, deps.notifier, retry_for=deps.retry_for, clock=deps.clock
            )
    result = replace(result, delivery=delivery)
    if outcome == "ok" and deps.detail != "never" and lookup is not None:
        with watch.phase("enrich"):
            result = await _enrich(
                deps,
                result,
                evaluation.states,
                fetched=set(details),
                base=requests_before,
                lookup=lookup,
                snapshot=snapshot,
            )
    return _finish(result, t0, watch)


async def _enrich(
    deps: CycleDeps,
    result: CycleResult,
    states: Mapping[str, AccountState],
    *,
    fetched: set[str],
    base: int,
    lookup: Lookup,
    snapshot: Snapshot | None,
) -> CycleResult:
    """After the cycle's news is committed and sent: the details that did not fit in its
    slice (a big incident), and the rolling sweep, within the cycle's share of the request
    budget. What they reveal is committed and sent as a follow-up; a process stopped in
    between loses nothing, since the accounts still wanting detail are marked so."""
    targets = _detail_targets(deps, states, fetched=fetched, spent=lookup.requests)
    if not targets:
        return result
    details = await _fetch_details(deps, targets, within=None)
    if not details:
        return result
    # the cycle's listing, if its news did not need it, before the writer is held
    # the poll's states, read now: a webhook may have removed an account since the commit
    unhealthy = [s for a in details if (s := states.get(a)) is not None and not s.healthy]
    await lookup.listing(unhealthy, within=DETAIL_SLICE)
    async with deps.store.writing(deps.lock_wait):
        states = deps.store.load_states(lazy=True)  # again: a webhook may have committed
        now = deps.clock()
        before = Evaluation(states=states, changed=frozenset(), removed=frozenset())
        enriched = apply_details(before, details, now=now, policy=deps.policy)
        events = [*enriched.events, *follow_ups(states, enriched.states, details, enriched.events)]
        enriched = replace(enriched, events=tuple(events))
        enriched, extras = await _with_impact(deps, enriched, lookup, now, False)
        if snapshot is not None:
            enriched = remarked(enriched, snapshot, now=now, policy=deps.policy)
        events = list(enriched.events)
        messages, delivery = await record_and_send(
            deps,
            events,
            details,
            extras=extras,
            states=enriched.states,
            changed=enriched.changed,
            api=deps.store.load_api_health(),
            outcome="detail",
            started=now,
            requests=len(targets),
        )
    return replace(
        result,
        events=(*result.events, *events),
        messages=(*result.messages, *messages),
        requests=deps.client.requests - base,
        delivery=result.delivery + delivery,
    )


async def record_and_send(
    deps: CycleDeps,
    events: Sequence[Event],
    details: Mapping[str, Detail],
    *,
    states: Mapping[str, AccountState],
    changed: Iterable[str],
    api: ApiHealth,
    outcome: str,
    started: datetime,
    requests: int,
    accounts: int | None = None,
    error: str | None = None,
    removed: Iterable[str] = (),
    webhooks: Sequence[tuple[str, str]] = (),
    extras: Mapping[str, Extras] | None = None,
) -> tuple[list[PlannedMessage], Delivery]:
    """A commit outside the poll's own (a follow-up, a refusal, webhooks acted on): its
    messages, the changed states, the webhook deliveries it settles and a record in one
    transaction, then delivery if there is anything to send. The caller holds
    `store.writing`."""
    if extras is None:  # news without a poll (a webhook): links, no listing
        extras = links_for(deps, events, states, deps.clock())
    messages = await _plan(deps, events, details, record=True, extras=extras)
    _log_events(events)
    deps.store.commit_cycle(
        states=states,
        changed=changed,
        removed=removed,
        api=api,
        messages=messages,
        webhooks=webhooks,
        record=CycleRecord(
            started_at=started,
            finished_at=deps.clock(),
            outcome=outcome,
            accounts=len(states) if accounts is None else accounts,
            events=len(events),
            requests=requests,
            error=error,
        ),
    )
    if not messages:
        return messages, Delivery()
    delivery = await deliver_due(
        deps.store, deps.notifier, retry_for=deps.retry_for, clock=deps.clock
    )
    return messages, delivery


async def tell_news(
    deps: CycleDeps, events: Sequence[Event], *, outcome: str, started: datetime, requests: int
) -> None:
    """News that no poll brings (a look at Late's webhook or at the workspace's own account):
    recorded against the states as they are, and sent. The caller holds `store.writing`."""
    await record_and_send(
        deps,
        events,
        {},
        states=deps.store.load_states(),
        changed=(),
        api=deps.store.load_api_health(),
        outcome=outcome,
        started=started,
        requests=requests,
    )


async def _plan(
    deps: CycleDeps,
    events: Sequence[Event],
    details: Mapping[str, Detail],
    *,
    record: bool,
    extras: Mapping[str, Extras] | None = None,
) -> list[PlannedMessage]:
    """The messages for a batch of events, the one place every batch (the poll's, each
    follow-up's, the webhooks') becomes messages: silenced and acknowledged events are left
    out, those quiet hours hold are planned as held rows."""
    if not events or not deps.notifier.configured:
        return []
    screened = control.screen(
        deps.store, events, now=deps.clock(), quiet=deps.quiet_hours, record=record
    )
    if not screened.send and not screened.held:
        return []
    await deps.notifier.load()
    messages = deps.notifier.plan(screened.send, details, extras)
    if screened.held:
        held = deps.notifier.plan(screened.held, details, extras)
        messages += [replace(m, held_until=screened.held_until) for m in held]
    return messages


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


async def _tell_conflict(deps: CycleDeps, exc: ScopeConflict, *, started: datetime) -> None:
    """A monitor that can no longer poll must say so, once: another configuration (a one-off
    run with fewer platforms, say) has claimed the state file for its own scope."""
    states = deps.store.load_states()
    api = deps.store.load_api_health()
    if api.scope_alerted:
        return
    event = Event(Kind.SCOPE_CONFLICT, NotifyType.FAILURE, note=str(exc))
    await record_and_send(
        deps,
        [event],
        {},
        states=states,  # unchanged: only the message and the record are written
        changed=(),
        api=replace(api, scope_alerted=True),
        outcome="scope_refused",
        started=started,
        requests=0,
        accounts=0,  # nothing was polled
        error=str(exc),
    )


def _log_events(events: Sequence[Event]) -> None:
    if not log.is_enabled_for(logging.INFO):  # 500 calls dropped one by one cost ~8 ms
        return
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


def _lookup(deps: CycleDeps, now: datetime) -> Lookup:
    return Lookup(
        deps.client,
        now=now,
        horizon=deps.impact_horizon,
        max_pages=deps.impact_pages,
        profile_id=deps.profile_id,
    )


class _Ephemeral:
    """--dry-run writes nothing: its links are signed with a key that is thrown away."""

    def meta_setdefault(self, key: str, value: object) -> object:
        return value


def _link_maker(deps: CycleDeps, now: datetime, *, dry_run: bool) -> LinkMaker:
    return LinkMaker(
        _Ephemeral() if dry_run else deps.store,
        public_url=deps.public_url,
        base_url=deps.client.base_url,
        expiry=deps.link_expiry,
        now=now,
    )


def links_for(
    deps: CycleDeps,
    events: Sequence[Event],
    states: Mapping[str, AccountState],
    now: datetime,
) -> dict[str, Extras]:
    """How to fix each failing account of `events`, without a scheduled-post lookup."""
    links = _link_maker(deps, now, dry_run=False)
    return {a: Extras(None, links(states[a])) for a in needing(events, states)}


async def _with_impact(
    deps: CycleDeps, evaluation: Evaluation, lookup: Lookup, now: datetime, dry_run: bool
) -> tuple[Evaluation, dict[str, Extras]]:
    """What the failing accounts' scheduled posts (the cycle's one listing) and reconnect
    links add to their events: counts in their states, warnings raised to failures when a
    post is due soon. A recovered account's impact is cleared and its links are spent."""
    states = evaluation.states
    wanted = [states[a] for a in needing(evaluation.events, states)]
    listing = await lookup.listing(wanted, within=DETAIL_SLICE)
    impacts = tally(listing, wanted, now=now, horizon=deps.impact_horizon)
    updated, events, raised = apply_impact(
        states, evaluation.events, impacts, now=now, escalate_within=deps.escalate_within
    )
    for account_id in raised:
        log.info("alert_raised", account_id=account_id, reason="scheduled post due soon")
    for event in events:
        if event.kind is Kind.RECOVERED and event.account_id and event.account_id in states:
            updated[event.account_id] = evolved(
                states[event.account_id],
                recovered_at=now,
                scheduled_posts=None,
                next_post_at=None,
                impact_at=None,
            )
    links = _link_maker(deps, now, dry_run=dry_run)
    extras = {s.account_id: Extras(impacts[s.account_id], links(s)) for s in wanted}
    evaluation = replace(
        evaluation,
        states=with_changes(states, updated),
        changed=evaluation.changed | frozenset(updated),
        events=tuple(events),
    )
    return evaluation, extras


def _quiet_index(deps: CycleDeps, *, trusted: bool) -> QuietIndex | None:
    """The stored quiet accounts, by their entry's fingerprint: those a poll need not parse,
    judge or read. None unless the marks are `trusted`: not when they were made under other
    settings (a changed `token_expiry_warn` or `remind_every`: every account is judged, and
    marked anew) or the scope was narrowed (its accounts are judged against the new scope)."""
    if not trusted:
        return None
    # judged from the index's time to the poll's: a mark ending in between is not quiet
    return deps.store.quiet_index(after=deps.clock().timestamp() + QUIET_SLACK)


def _evented(evaluation: Evaluation) -> list[str]:
    """The accounts this poll has news of, each once, in the order of their events."""
    states = evaluation.states
    return list(
        dict.fromkeys(
            e.account_id for e in evaluation.events if e.account_id and e.account_id in states
        )
    )


def _detail_later(evaluation: Evaluation, missed: Sequence[str]) -> Evaluation:
    """Mark the accounts whose detail did not fit in the cycle's slice: fetched after the
    news is out, in this cycle or the next ones."""
    if not missed:
        return evaluation
    states = evaluation.states
    owed = {a: evolved(states[a], detail_due=True) for a in missed}
    return replace(
        evaluation, states=with_changes(states, owed), changed=evaluation.changed | frozenset(owed)
    )


def _detail_targets(
    deps: CycleDeps, states: Mapping[str, AccountState], *, fetched: set[str], spent: int = 0
) -> list[str]:
    """The accounts to fetch detail for once the cycle's news is out: those still owed one
    (oldest news first), then the rolling sweep, within the cycle's share of the budget."""
    if deps.detail == "all":
        return [account_id for account_id in states if account_id not in fetched]
    allowance = int(deps.max_requests_per_minute * deps.interval / 60) - 1 - len(fetched) - spent
    if allowance <= 0:
        return []
    owed = [s for s in unquiet(states) if s.detail_due and s.account_id not in fetched]
    owed.sort(key=lambda s: (s.last_notice_at or s.since, s.account_id))
    targets = [s.account_id for s in owed[:allowance]]
    if deps.detail_every <= 0 or not states:
        return targets
    per_cycle = math.ceil(len(states) * deps.interval / deps.detail_every)
    already = fetched | set(targets)
    count = min(per_cycle, allowance - len(targets))
    if not isinstance(states, dict):  # the committed states, not all read: the store orders
        return targets + deps.store.oldest_detail(count, skip=already)
    sweep = due_for_detail((s for s in states.values() if s.account_id not in already), count=count)
    return targets + sweep


async def _fetch_details(
    deps: CycleDeps, targets: Sequence[str], *, within: float | None
) -> dict[str, Detail]:
    """Detail for `targets`, as many as the budget gives `within` seconds (None: all)."""
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

    tasks = [asyncio.ensure_future(fetch(account_id)) for account_id in targets]
    _, pending = await asyncio.wait(tasks, timeout=within)
    if pending:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        log.info("detail_deferred", accounts=len(pending), slice_s=within)
    return details


async def _print_dry_run(
    notifier: Notifier,
    events: Sequence[Event],
    details: Mapping[str, Detail],
    extras: Mapping[str, Extras],
) -> None:
    """--dry-run: the messages go to the console destination instead of the real ones."""
    if not events:
        print("dry run: nothing to notify", flush=True)
        return
    console = Notifier(
        urls=[CONSOLE_URL], group=notifier.group, templates=notifier.renderer.templates
    )
    await console.load()
    for message in console.plan(events, details, extras):
        for key, _ in message.destinations:
            await console.send(
                key, title=message.title, body=message.body, notify_type=message.notify_type
            )
