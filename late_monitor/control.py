"""Operator control applied where events become messages: silences, acks and quiet hours.

The decisions are silences.py's and quiet.py's (pure); this module reads and writes their rows
in the state file around them. The cycle calls `after_poll` on a successful poll (acks that no
longer apply are cleared, ended silences re-announce), `screen` wherever it plans messages (the
poll and every follow-up), and `after_commit` once its own transaction is in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from late_monitor.events import Event
from late_monitor.quiet import QuietWindow, holding
from late_monitor.rules import Evaluation
from late_monitor.silences import (
    KEEP_EXPIRED,
    Ack,
    Ended,
    Silence,
    check_matchers,
    reannounce,
    stale_acks,
)
from late_monitor.silences import screen as decide
from late_monitor.state_views import preload
from late_monitor.storage import StateStore as Store

log = structlog.get_logger("late_monitor.control")


def after_poll(store: Store, evaluation: Evaluation, *, now: datetime, record: bool) -> Ended:
    """Clear acks whose account's condition changed; re-announce what ended silences held
    back (the silences are settled by `after_commit`, so a crash re-announces again)."""
    acks = store.load_acks()
    silences = store.load_silences()
    ending = [k for s in silences if not s.settled and now >= s.ends for k in s.silenced]
    preload(evaluation.states, [*acks, *ending])  # read together, not one query each
    stale = stale_acks(acks, evaluation.states)
    if stale:
        if record:
            store.remove_acks(stale)
        for account_id in stale:
            log.info("ack_cleared", account_id=account_id, reason="condition changed")
        acks = {k: v for k, v in acks.items() if k not in stale}
    ended = reannounce(evaluation, silences, acks, now)
    for event in ended.evaluation.events[len(evaluation.events) :]:
        log.info("silence_ended_reannounced", account_id=event.account_id, note=event.note)
    return ended


@dataclass(frozen=True, slots=True)
class Screening:
    send: tuple[Event, ...]
    held: tuple[Event, ...] = ()
    held_until: float | None = None  # epoch seconds


def screen(
    store: Store,
    events: Sequence[Event],
    *,
    now: datetime,
    quiet: Sequence[QuietWindow],
    record: bool,
) -> Screening:
    """The events to send now, those quiet hours hold (and until when); silenced and acked
    events are recorded (logged, counted on their silence) and not sent."""
    if not events:
        return Screening(())
    screened = decide(events, store.load_silences(), store.load_acks(), now)
    for event, silence_id in screened.silenced:
        log.info(
            "event_silenced", kind=str(event.kind), account_id=event.account_id, silence=silence_id
        )
    for event in screened.acked:
        log.info("reminder_acked", account_id=event.account_id)
    if record and screened.silenced:
        counts: dict[int, int] = {}
        for _, silence_id in screened.silenced:
            counts[silence_id] = counts.get(silence_id, 0) + 1
        store.note_silenced(screened.by_silence(), counts)
    hold = holding(quiet, now)
    if hold is None:
        return Screening(screened.send)
    held = tuple(e for e in screened.send if str(e.notify_type) in hold.types)
    if held:
        log.info("events_held", events=len(held), until=hold.until.isoformat())
    return Screening(
        send=tuple(e for e in screened.send if str(e.notify_type) not in hold.types),
        held=held,
        held_until=hold.until.timestamp(),
    )


def after_commit(store: Store, settled: Sequence[int], *, now: datetime) -> int:
    """Settle the silences whose end was acted upon, forget those ended a week ago, and turn
    messages whose quiet hours are over into one summary per destination (returned: how many)."""
    store.settle_silences(settled, prune_before=now - KEEP_EXPIRED)
    return release_due(store, now=now)


def release_due(store: Store, *, now: datetime) -> int:
    """Held messages whose quiet hours are over become one summary per destination, due at
    once (the cycle and the daemon's outbox job both call this before delivering)."""
    released = store.release_held(now=now)
    if released:
        log.info("held_released", summaries=released)
    return released


# -- the operator's actions (the CLI and the status page both use these) -----------------


class Refused(ValueError):
    """An action that cannot be done as asked; the text says why in one line."""


def add_silence(
    store: Store,
    *,
    matchers: Mapping[str, Sequence[str]],
    ends_at: datetime,
    reason: str,
    created_by: str,
    now: datetime,
) -> Silence:
    try:
        clean = check_matchers(matchers)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    if not reason.strip():
        raise Refused("a silence needs a reason (--reason), so that others know why")
    if ends_at <= now:
        raise Refused(f"the end {ends_at:%Y-%m-%d %H:%M} UTC is not in the future")
    silence_id = store.add_silence(
        matchers=clean,
        reason=reason.strip(),
        created_by=created_by or "unknown",
        created_at=now,
        ends_at=ends_at,
    )
    log.info("silence_added", silence=silence_id, ends_at=ends_at.isoformat(), by=created_by)
    return next(s for s in store.load_silences() if s.id == silence_id)


def expire_silence(store: Store, silence_id: int, *, now: datetime) -> Silence:
    """End a silence now; it stays on record. Its accounts are re-announced next cycle."""
    silence = store.expire_silence(silence_id, now=now)
    if silence is None:
        raise Refused(f"no silence #{silence_id} (see `late-monitor silence list`)")
    log.info("silence_expired", silence=silence_id)
    return silence


def add_ack(store: Store, account_id: str, *, reason: str, created_by: str, now: datetime) -> Ack:
    """Acknowledge an account's current condition: no reminders until it changes."""
    state = store.load_states().get(account_id)
    if state is None:
        raise Refused(f"no account {account_id!r} in the state file (see `late-monitor status`)")
    if state.healthy:
        raise Refused(f"account {account_id} is healthy: there is nothing to acknowledge")
    ack = Ack(
        account_id=account_id,
        condition=state.condition,
        reason=reason.strip(),
        created_by=created_by or "unknown",
        created_at=now,
    )
    store.add_ack(ack)
    log.info("ack_added", account_id=account_id, by=created_by)
    return ack
