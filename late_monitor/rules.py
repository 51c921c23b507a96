"""The pure core: from the previous states and a new poll, the new states and the events.

Nothing here does I/O or reads a clock; `now` comes from the caller. Everything that decides
whether somebody is woken up lives in this module.

Invariant of the fast path: `_quiet(prev, obs, ...)` is True only when `_full(prev, obs, ...)`
would return `(prev, [])`: nothing observed differs from the state (`_verbatim_unchanged` and
the condition), nothing is pending confirmation, and no clock-driven notice (a token threshold,
a reminder) is due. A rule added to `_full` that can fire on an unchanged observation must be
mirrored in `_quiet`; `test_the_quiet_shortcut_agrees_with_the_full_rules` checks the two
agree on random histories.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from late_monitor.events import Event, Kind, NotifyType
from late_monitor.models import UNKNOWN_PLATFORM, Detail, Observation, Snapshot
from late_monitor.state import (
    HEALTHY,
    QUIET_FOREVER,
    AccountState,
    ApiHealth,
    Condition,
    evolved,
    is_healthy,
    known_status,
    marked,
    rank,
)
from late_monitor.state_views import PollStates, absent, preload, with_changes

_BASELINE: Condition = (HEALTHY, False, True)
MANY_REMOVED = 10  # more removals than this in one poll are told in one line


@dataclass(frozen=True, slots=True)
class Policy:
    """The `[monitor]` settings the rules need, durations in seconds."""

    confirm_after: int = 1
    token_expiry_warn: tuple[float, ...] = (7 * 86400.0, 86400.0)
    remind_every: float = 86400.0
    notify_recovery: bool = True
    notify_first_seen: bool = True
    api_failure_after: int = 3
    claim_grace: float = 60.0  # a poll fetched sooner after a webhook's news does not judge it
    vanish_polls: int = 3  # when most accounts vanish at once: polls and seconds to wait
    vanish_wait: float = 900.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one poll: every state, what changed, and the events."""

    states: Mapping[str, AccountState]
    changed: frozenset[str]
    removed: frozenset[str]
    events: tuple[Event, ...] = field(default_factory=tuple)


def type_for_status(condition: Condition) -> NotifyType:
    status, needs_reconnect, can_post = condition
    if rank(status) >= 2 or needs_reconnect or not can_post:
        return NotifyType.FAILURE
    return NotifyType.WARNING if rank(status) >= 1 else NotifyType.INFO


def reminder_type(state: AccountState) -> NotifyType:
    """The notify type of a reminder about an account in this state."""
    return type_for_status(state.condition)


def transition(old: Condition, new: Condition, state: AccountState, policy: Policy) -> list[Event]:
    """The events of one account's condition changing from `old` to `new`."""
    old_status, old_reconnect, old_post = old
    new_status, new_reconnect, new_post = new
    events: list[Event] = []

    def add(kind: Kind, notify_type: NotifyType, note: str = "") -> None:
        events.append(Event(kind, notify_type, state, old_status, new_status, note))

    if not known_status(new_status):
        if new_status != old_status:
            note = f"status changed to {new_status!r} (not a status late-monitor knows)"
            add(Kind.STATUS_UNKNOWN, NotifyType.WARNING, note)
    elif rank(new_status) > rank(old_status):
        add(Kind.DEGRADED, NotifyType.FAILURE if rank(new_status) >= 2 else NotifyType.WARNING)
    if new_reconnect and not old_reconnect:
        add(Kind.RECONNECT_NEEDED, NotifyType.FAILURE)
    if old_post and not new_post and new_status == old_status:
        add(Kind.POSTING_BLOCKED, NotifyType.FAILURE)
    if is_healthy(new) and not is_healthy(old):
        if policy.notify_recovery:
            add(Kind.RECOVERED, NotifyType.SUCCESS)
    elif known_status(new_status) and rank(new_status) < rank(old_status):
        add(Kind.IMPROVED, NotifyType.INFO)
    return events


def _token_events(
    state: AccountState,
    previous_expiry: datetime | None,
    now: datetime,
    policy: Policy,
    *,
    silent: bool,
) -> tuple[AccountState, list[Event]]:
    expires = state.token_expires_at
    warned = state.token_warned if expires == previous_expiry else ()
    if expires is None or not policy.token_expiry_warn:
        return (evolved(state, token_warned=()) if state.token_warned else state), []
    remaining = (expires - now).total_seconds()
    crossed = {t for t in policy.token_expiry_warn if remaining <= t}
    if previous_expiry is not None and expires > previous_expiry:
        # Late refreshed the token: what its new expiry is already within is not news, and
        # a short-lived token that Late keeps refreshing never warns.
        refreshed = tuple(sorted(crossed, reverse=True))
        if refreshed != state.token_warned:
            state = evolved(state, token_warned=refreshed)
        return state, []
    if crossed <= set(warned):
        return (state if warned == state.token_warned else evolved(state, token_warned=warned)), []
    new_warned = tuple(sorted(set(warned) | crossed, reverse=True))
    state = evolved(state, token_warned=new_warned)
    if silent:
        return state, []
    note = "token expired" if remaining <= 0 else f"token expires in {_human(remaining)}"
    return state, [Event(Kind.TOKEN_EXPIRING, NotifyType.WARNING, state, note=note)]


def _human(seconds: float) -> str:
    if seconds >= 86400:
        days = seconds / 86400
        return f"{days:.0f} days" if days >= 2 else f"{seconds / 3600:.0f} hours"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(seconds / 60, 1):.0f} minutes"


def _verbatim_unchanged(state: AccountState, obs: Observation) -> bool:
    """The fields a poll copies as they are (not subject to confirmation) are the same."""
    return (
        state.token_expires_at == obs.token_expires_at
        and state.issues == obs.issues
        and state.token_valid == obs.token_valid
        and state.username == obs.username
        and state.display_name == obs.display_name
        and state.platform == obs.platform
        and state.profile_id == obs.profile_id
        and state.can_fetch_analytics == obs.can_fetch_analytics
        and state.absent_polls == 0
    )


def _observe(state: AccountState, obs: Observation) -> AccountState:
    """Copy what a poll says verbatim (not subject to confirmation) into the state."""
    if _verbatim_unchanged(state, obs):
        return state
    return evolved(
        state,
        token_valid=obs.token_valid is not False,
        token_expires_at=obs.token_expires_at,
        issues=obs.issues,
        username=obs.username,
        display_name=obs.display_name,
        platform=obs.platform,
        profile_id=obs.profile_id,
        can_fetch_analytics=bool(obs.can_fetch_analytics),
        absent_polls=0,
        absent_since=None,
    )


def _first_seen(
    obs: Observation, now: datetime, policy: Policy
) -> tuple[AccountState, list[Event]]:
    """A new account (the caller has checked that its status could be read). A flag that
    Late left unreadable takes the value of a healthy account until a poll says otherwise."""
    assert obs.status is not None
    state = AccountState(
        account_id=obs.account_id,
        platform=obs.platform,
        username=obs.username,
        status=obs.status,
        needs_reconnect=bool(obs.needs_reconnect),
        can_post=obs.can_post is not False,
        since=now,
        token_valid=obs.token_valid is not False,
        token_expires_at=obs.token_expires_at,
        issues=obs.issues,
        display_name=obs.display_name,
        profile_id=obs.profile_id,
        can_fetch_analytics=obs.can_fetch_analytics is not False,
    )
    events = (
        [
            replace(event, old_status=None, first_seen=True)
            for event in transition(_BASELINE, state.condition, state, policy)
        ]
        if policy.notify_first_seen
        else []
    )
    state, token = _token_events(state, None, now, policy, silent=not policy.notify_first_seen)
    events = [replace(e, account=state) for e in events] + token
    if events:
        state = evolved(state, last_notice_at=now)
        events = [replace(e, account=state) for e in events]
    return state, events


def _horizon(now: datetime, policy: Policy) -> datetime:
    """Tokens expiring after this are within no threshold yet (`_quiet`'s cheap test)."""
    return now + timedelta(seconds=max(policy.token_expiry_warn, default=0.0))


def _quiet(
    prev: AccountState, obs: Observation, now: datetime, policy: Policy, horizon: datetime
) -> bool:
    """The common case, decided cheaply: nothing observed changed and no clock-driven notice
    (token threshold, reminder) is due. Evaluating 50,000 unchanged accounts is then ~3x
    faster than the full path, which gives the same answer for them."""
    if not (
        obs.status == prev.status
        and obs.needs_reconnect == prev.needs_reconnect
        and obs.can_post == prev.can_post
        and prev.pending is None
        and prev.claimed_at is None
        and _verbatim_unchanged(prev, obs)
    ):
        return False
    expires = prev.token_expires_at
    if expires is not None and policy.token_expiry_warn:
        if not prev.token_warned:  # the usual case: due once the widest threshold is reached
            if expires <= horizon:
                return False
        else:
            unwarned = [t for t in policy.token_expiry_warn if t not in prev.token_warned]
            if unwarned and (expires - now).total_seconds() <= max(unwarned):
                return False
    if policy.remind_every > 0 and not (
        prev.status == HEALTHY and not prev.needs_reconnect and prev.can_post
    ):
        last = prev.last_notice_at or prev.since
        if (now - last).total_seconds() >= policy.remind_every:
            return False
    return True


def quiet_marks(policy: Policy) -> list[float]:
    """The settings a quiet mark depends on: marks made under others are not to be trusted."""
    return [*policy.token_expiry_warn, -1.0, policy.remind_every]


def _quiet_until(state: AccountState, policy: Policy) -> float:
    """From when (epoch seconds) `_quiet` stops holding for `state` and the entry it was
    judged from: the next token threshold or reminder. `_quiet(state, obs, t)` is True
    exactly for t before it (a property test holds the two together)."""
    until = QUIET_FOREVER
    expires = state.token_expires_at
    if expires is not None and policy.token_expiry_warn:
        unwarned = [t for t in policy.token_expiry_warn if t not in state.token_warned]
        if unwarned:
            until = expires.timestamp() - max(unwarned)
    if policy.remind_every > 0 and not state.healthy:
        last = state.last_notice_at or state.since
        until = min(until, last.timestamp() + policy.remind_every)
    return until


def _mark(
    state: AccountState,
    obs: Observation,
    listed: bytes | None,
    now: datetime,
    policy: Policy,
    horizon: datetime,
) -> AccountState:
    """`state`, judged from `obs` (whose entry's fingerprint is `listed`), marked quiet until
    its next clock-driven notice when the same entry would tell nothing new before then."""
    if listed is None or state.detail_due or not _quiet(state, obs, now, policy, horizon):
        return marked(state, None, None)  # (detail owed: the cycle looks for it among the rest)
    return marked(state, listed, _quiet_until(state, policy))


def _next(
    prev: AccountState, obs: Observation, now: datetime, policy: Policy, horizon: datetime
) -> tuple[AccountState, Sequence[Event]]:
    if _quiet(prev, obs, now, policy, horizon):
        return prev, ()  # no new list per quiet account: 50,000 of them woke the GC
    return _full(prev, obs, now, policy)


def _full(
    prev: AccountState, obs: Observation, now: datetime, policy: Policy
) -> tuple[AccountState, list[Event]]:
    """Every rule for one seen-before account; `_quiet` short-cuts the cases where this
    returns (prev, []) unchanged (a property test holds it to that)."""
    state = _observe(prev, obs)
    if prev.claimed_at is not None:
        state = evolved(state, claimed_at=None)  # a poll has now seen it, agreeing or not
    new: Condition = (  # `_resolved` has filled what Late left unsaid; the fallbacks say so
        prev.status if obs.status is None else obs.status,
        prev.needs_reconnect if obs.needs_reconnect is None else obs.needs_reconnect,
        prev.can_post if obs.can_post is None else obs.can_post,
    )
    events: list[Event] = []
    if new == prev.condition:
        if prev.pending is not None:
            state = evolved(state, pending=None, pending_count=0)
    else:
        count = prev.pending_count + 1 if prev.pending == new else 1
        if count >= policy.confirm_after:
            state = state.entering(new, at=now)
            events = transition(prev.condition, new, state, policy)
            if prev.claimed_at is not None:
                events = corrected(prev, new, state, events)
        else:
            state = evolved(state, pending=new, pending_count=count)

    if prev.can_fetch_analytics and obs.can_fetch_analytics is False:
        events.append(
            Event(
                Kind.ANALYTICS_LOST,
                NotifyType.WARNING,
                state,
                note="analytics can no longer be fetched",
            )
        )
    state, token = _token_events(state, prev.token_expires_at, now, policy, silent=False)
    events += token
    if not events and not state.healthy and policy.remind_every > 0:
        last = state.last_notice_at or state.since
        if (now - last).total_seconds() >= policy.remind_every:
            note = f"{state.status} since {state.since:%Y-%m-%d %H:%M} UTC"
            events.append(Event(Kind.REMINDER, type_for_status(state.condition), state, note=note))
    if events:
        state = evolved(state, last_notice_at=now)
        events = [replace(e, account=state) for e in events]
    return state, events


def corrected(
    prev: AccountState, new: Condition, state: AccountState, events: list[Event]
) -> list[Event]:
    """A poll that finds an account better than a webhook said: not a recovery (nothing was
    fixed) but a correction of the earlier alert."""
    if not (is_healthy(new) or (known_status(new[0]) and rank(new[0]) < rank(prev.status))):
        return events
    kept = [e for e in events if e.kind not in (Kind.RECOVERED, Kind.IMPROVED)]
    when = f"{prev.claimed_at:%H:%M} UTC" if prev.claimed_at else "earlier"
    note = f"Late's webhook at {when} said otherwise; a poll now finds it {new[0]}"
    if not is_healthy(new):
        note += " (" + ", ".join(_flags(new)) + ")"
    notify_type = NotifyType.SUCCESS if is_healthy(new) else NotifyType.INFO
    return [*kept, Event(Kind.CORRECTED, notify_type, state, prev.status, new[0], note)]


def _flags(condition: Condition) -> list[str]:
    _, needs_reconnect, can_post = condition
    flags = ["needs reconnect"] if needs_reconnect else []
    return [*flags, "cannot post"] if not can_post else flags


def evaluate(
    previous: Mapping[str, AccountState],
    snapshot: Snapshot,
    *,
    now: datetime,
    policy: Policy,
    fetched_at: datetime | None = None,
) -> Evaluation:
    """Compare a successful poll with the stored states. Deterministic and free of I/O.

    `fetched_at` is when the poll was sent (default `now`): an account a webhook spoke of
    less than `policy.claim_grace` before it is left as the webhook said.

    The snapshot's quiet accounts are as stored, and are not read: the states returned are
    then a `PollStates` of the judged ones over `previous`. Each judged state is marked
    quiet (or not) for the next poll."""
    states: dict[str, AccountState] = {}
    changed: set[str] = set()
    events: list[Event] = []
    horizon = _horizon(now, policy)
    judged_from = (fetched_at or now) - timedelta(seconds=policy.claim_grace)
    unreadable = snapshot.unreadable
    prints = snapshot.prints
    quiet = snapshot.quiet
    gone = absent(previous, quiet)  # left the store since it was read (a webhook's news)
    if gone:
        quiet = quiet - gone
    known = len(quiet)
    for account_id, obs in snapshot.accounts.items():
        prev = previous.get(account_id)
        new_events: Sequence[Event]
        if prev is not None:
            known += 1
            if prev.platform != obs.platform and UNKNOWN_PLATFORM not in (
                prev.platform,
                obs.platform,
            ):
                prev = None  # the id came back on another platform: another account
            elif account_id in unreadable:
                obs = _resolved(obs, prev)
        if prev is not None and prev.claimed_at is not None and prev.claimed_at > judged_from:
            states[account_id] = prev  # the poll may predate the news, or Late lag behind it
            continue
        if prev is None:
            if obs.status is None:
                continue  # nothing known to keep, and no status to start from
            state, new_events = _first_seen(obs, now, policy)
        else:
            state, new_events = _next(prev, obs, now, policy, horizon)
        listed = None if account_id in unreadable else prints.get(account_id)
        state = _mark(state, obs, listed, now, policy, horizon)
        if state is not prev:
            changed.add(account_id)
        states[account_id] = state
        if new_events:
            events += new_events

    missing = (  # in id order: the stored states' own order is not the same in every process
        sorted(k for k in previous if k not in snapshot.accounts and k not in quiet)
        if known < len(previous)
        else []
    )
    preload(previous, missing)  # read together: an empty listing misses every account
    if missing and len(missing) <= snapshot.unidentified:
        for account_id in missing:  # they may be the entries listed without an id
            kept = previous[account_id]
            states[account_id] = marked(kept, None, None)  # not judged: not marked either
            if states[account_id] is not kept:
                changed.add(account_id)
        missing = []
    removed, waiting = _vanished(previous, missing, now=now, policy=policy)
    for state in waiting:
        states[state.account_id] = state
        changed.add(state.account_id)
    if len(removed) > MANY_REMOVED:
        note = f"{len(removed)} accounts are no longer listed"
        if len(missing) * 2 > len(previous):
            note += "; the key's scope may have changed"
        events.append(Event(Kind.REMOVED, NotifyType.INFO, note=note))
    else:
        events += [
            Event(Kind.REMOVED, NotifyType.INFO, prev, old_status=prev.status) for prev in removed
        ]
    return Evaluation(
        states=PollStates(states, quiet, previous) if quiet else states,
        changed=frozenset(changed),
        removed=frozenset(state.account_id for state in removed),
        events=tuple(events),
    )


def remarked(
    evaluation: Evaluation, snapshot: Snapshot, *, now: datetime, policy: Policy
) -> Evaluation:
    """The poll's accounts that later steps changed after `evaluate` marked them (detail
    folded in, impact counted, a silence's end told: each a `replace`, which clears the
    mark), marked again from the same entry, so that the next poll need not judge them."""
    horizon = _horizon(now, policy)
    states, updates = evaluation.states, {}
    for account_id in evaluation.changed:
        state, obs = states.get(account_id), snapshot.accounts.get(account_id)
        listed = snapshot.prints.get(account_id)
        if state is None or obs is None or listed is None or state.listed is not None:
            continue
        if account_id in snapshot.unreadable:
            continue
        again = _mark(state, obs, listed, now, policy, horizon)
        if again is not state:
            updates[account_id] = again
    if not updates:
        return evaluation
    return replace(evaluation, states=with_changes(states, updates))


def _resolved(obs: Observation, prev: AccountState) -> Observation:
    """What Late did not say (a null or unreadable status or flag) stays as last known."""
    return replace(
        obs,
        status=prev.status if obs.status is None else obs.status,
        needs_reconnect=(
            prev.needs_reconnect if obs.needs_reconnect is None else obs.needs_reconnect
        ),
        can_post=prev.can_post if obs.can_post is None else obs.can_post,
        token_valid=prev.token_valid if obs.token_valid is None else obs.token_valid,
        can_fetch_analytics=(
            prev.can_fetch_analytics if obs.can_fetch_analytics is None else obs.can_fetch_analytics
        ),
    )


def _vanished(
    previous: Mapping[str, AccountState],
    missing: Sequence[str],
    *,
    now: datetime,
    policy: Policy,
) -> tuple[list[AccountState], list[AccountState]]:
    """The missing accounts to forget now, and those still waited for. One account leaving
    is news at once; when more than half of them vanish together (an empty list, a key whose
    scope changed), they are kept `vanish_polls` polls and `vanish_wait` seconds first."""
    if len(missing) * 2 <= len(previous):
        return [previous[account_id] for account_id in missing], []
    removed: list[AccountState] = []
    waiting: list[AccountState] = []
    for account_id in missing:
        prev = previous[account_id]
        since = prev.absent_since or now
        polls = prev.absent_polls + 1
        if polls >= policy.vanish_polls and (now - since).total_seconds() >= policy.vanish_wait:
            removed.append(prev)
        else:
            waiting.append(evolved(prev, absent_polls=polls, absent_since=since))
    return removed, waiting


def apply_details(
    evaluation: Evaluation,
    details: Mapping[str, Detail],
    *,
    now: datetime,
    policy: Policy,
) -> Evaluation:
    """Fold per-account detail into the states; a newly missing required scope is an event."""
    if not details:
        return evaluation
    changed = set(evaluation.changed)
    new_events: list[Event] = []
    updated: dict[str, AccountState] = {}
    for account_id, detail in details.items():
        state = evaluation.states.get(account_id)
        if state is None:
            continue
        missing = detail.missing
        lost = [scope for scope in missing if scope not in state.missing_scopes]
        first = state.detail_at is None
        state = evolved(state, missing_scopes=missing, detail_at=now, detail_due=False)
        if lost and (policy.notify_first_seen or not first):
            posting = [scope for scope in lost if scope in detail.missing_posting]
            analytics = [scope for scope in lost if scope not in posting]
            told = {(e.kind, e.account_id) for e in evaluation.events}
            state = evolved(state, last_notice_at=now)
            if posting:
                new_events.append(
                    Event(
                        Kind.PERMISSION_LOST,
                        NotifyType.FAILURE,
                        state,
                        note="missing " + ", ".join(posting),
                    )
                )
            if (
                analytics
                and state.can_fetch_analytics  # else the list's flag has told it already
                and (Kind.ANALYTICS_LOST, account_id) not in told
            ):
                new_events.append(
                    Event(
                        Kind.ANALYTICS_LOST,
                        NotifyType.WARNING,
                        state,
                        note="missing " + ", ".join(analytics),
                    )
                )
        updated[account_id] = state
        changed.add(account_id)
    events = [
        replace(e, account=updated[e.account_id])
        if e.account_id in updated and e.kind is not Kind.REMOVED
        else e
        for e in evaluation.events
    ]
    return Evaluation(
        states=with_changes(evaluation.states, updated),
        changed=frozenset(changed),
        removed=evaluation.removed,
        events=(*events, *new_events),
    )


def follow_ups(
    before: Mapping[str, AccountState],
    after: Mapping[str, AccountState],
    details: Mapping[str, Detail],
    told: Sequence[Event],
) -> list[Event]:
    """For accounts whose news went out before their detail came: what the detail adds
    (missing permissions, Late's recommendations), unless an event about it says it now."""
    covered = {e.account_id for e in told}
    events = []
    for account_id, detail in details.items():
        prev, state = before.get(account_id), after.get(account_id)
        if prev is None or state is None or not prev.detail_due or account_id in covered:
            continue
        if state.healthy or not (detail.recommendations or detail.missing):
            continue
        note = "detail that came after the alert"
        events.append(Event(Kind.DETAILS, type_for_status(state.condition), state, note=note))
    return events


def api_failed(
    api: ApiHealth, *, error: str, auth: bool, policy: Policy, unreadable: bool = False
) -> tuple[ApiHealth, list[Event]]:
    """A poll failed. Alert once for a rejected key, once after N failures in a row; a body
    Late sent but in a shape we cannot read is said as that, never as "unreachable"."""
    if auth:
        if api.auth_alerted:
            return replace(api, last_error=error), []
        event = Event(Kind.AUTH_FAILED, NotifyType.FAILURE, note=error)
        return replace(api, auth_alerted=True, last_error=error), [event]
    failures = api.consecutive_failures + 1
    api = replace(api, consecutive_failures=failures, last_error=error)
    if failures >= policy.api_failure_after and not api.unreachable_alerted:
        note = f"{failures} polls in a row failed; last error: {error}"
        kind = Kind.API_UNREADABLE if unreadable else Kind.API_UNREACHABLE
        return replace(api, unreachable_alerted=True), [Event(kind, NotifyType.FAILURE, note=note)]
    return api, []


def api_succeeded(api: ApiHealth) -> tuple[ApiHealth, list[Event]]:
    """A poll succeeded: close any open API alert with one recovery notice."""
    if not (api.consecutive_failures or api.unreachable_alerted or api.auth_alerted):
        return api, []
    events = []
    if api.unreachable_alerted or api.auth_alerted:
        note = "the API key is accepted again" if api.auth_alerted else "polls succeed again"
        events.append(Event(Kind.API_RECOVERED, NotifyType.SUCCESS, note=note))
    return ApiHealth(unreadable=api.unreadable), events


def unreadable_told(
    api: ApiHealth, snapshot: Snapshot, states: Mapping[str, AccountState]
) -> tuple[ApiHealth, list[Event]]:
    """Tell once which accounts Late listed with fields we cannot read, and which fields.

    One event for all of them; an account is told again only for a field not told before,
    or after it was readable in between. Entries without an accountId count as one, told
    again when their number changes."""
    now_unreadable = {key: list(fields) for key, fields in snapshot.unreadable.items()}
    if snapshot.unidentified:
        now_unreadable[""] = [f"{snapshot.unidentified} entries without an accountId"]
    told = api.unreadable
    if now_unreadable == told:
        return api, []
    api = replace(api, unreadable=now_unreadable)
    parts = []
    for key, fields in sorted(now_unreadable.items()):
        if set(fields) <= set(told.get(key, ())):
            continue
        if not key:
            parts.append(f"{fields[0]} (ignored)")
            continue
        state = states.get(key)
        name = f"{state.platform} {state.username or key} ({key})" if state else key
        kept = f"kept as {state.status}" if state else "not tracked until readable"
        parts.append(f"{name}: {', '.join(fields)} ({kept})")
    if not parts:
        return api, []
    note = "; ".join(parts[:20]) + (f"; and {len(parts) - 20} more" if len(parts) > 20 else "")
    return api, [Event(Kind.UNREADABLE, NotifyType.WARNING, note=note)]


def due_for_detail(states: Iterable[AccountState], *, count: int) -> list[str]:
    """The `count` accounts whose detail is oldest (never fetched first): the rolling sweep.

    A partial selection (O(n log count)), not a sort of every account each cycle."""
    if count <= 0:
        return []
    oldest = heapq.nsmallest(
        count, states, key=lambda s: (s.detail_at is not None, s.detail_at or s.since, s.account_id)
    )
    return [s.account_id for s in oldest]
