"""Silences and acknowledgements, as data: which events an operator has asked not to hear.

Pure: every decision takes `now` from its caller and reads only the values it is given. The
store keeps the rows; `control` applies these decisions where events become messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from late_monitor.events import Event, Kind
from late_monitor.rules import Evaluation, reminder_type
from late_monitor.state import AccountState, Condition
from late_monitor.state_views import with_changes

MATCHER_KEYS = ("account", "platform", "profile", "kind")
KEEP_EXPIRED = timedelta(days=7)  # an ended silence stays on record this long

# Never silenced unless a matcher names their kind: that something came back, and that the
# monitor itself cannot see (a silence on an account must not hide that polling stopped).
PROTECTED = frozenset(
    {
        Kind.RECOVERED,
        Kind.API_RECOVERED,
        Kind.API_UNREACHABLE,
        Kind.API_UNREADABLE,
        Kind.AUTH_FAILED,
        Kind.SCOPE_CONFLICT,
    }
)


@dataclass(frozen=True, slots=True)
class Silence:
    """Events matching every matcher key (any of its values) are recorded but not sent
    from `created_at` until `ends` (its end time, or when it was expired by hand)."""

    id: int
    matchers: Mapping[str, tuple[str, ...]]
    reason: str
    created_by: str
    created_at: datetime
    ends_at: datetime
    expired_at: datetime | None = None
    silenced: tuple[str, ...] = ()  # accounts whose events it held back
    suppressed: int = 0  # events it held back
    settled: bool = False  # its end has been acted upon (re-announcements made)

    @property
    def ends(self) -> datetime:
        if self.expired_at is not None and self.expired_at < self.ends_at:
            return self.expired_at
        return self.ends_at

    def active(self, now: datetime) -> bool:
        return self.created_at <= now < self.ends

    def describe(self) -> str:
        return " ".join(
            f"{key}={','.join(values)}" for key, values in self.matchers.items() if values
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """An operator knows about an account's condition: no reminders while it lasts."""

    account_id: str
    condition: Condition
    reason: str
    created_by: str
    created_at: datetime


def check_matchers(matchers: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Matchers normalised (platforms and kinds in lower case), or ValueError saying why not."""
    clean: dict[str, tuple[str, ...]] = {}
    for key, values in matchers.items():
        if key not in MATCHER_KEYS:
            raise ValueError(f"unknown matcher {key!r} (one of {', '.join(MATCHER_KEYS)})")
        kept = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
        if key in ("platform", "kind"):
            kept = tuple(v.lower() for v in kept)
        if key == "kind":
            known = {str(k) for k in Kind}
            for value in kept:
                if value not in known:
                    raise ValueError(
                        f"kind {value!r} is not an event kind ({', '.join(sorted(known))})"
                    )
        if kept:
            clean[key] = kept
    if not clean:
        raise ValueError("a silence needs at least one of --account, --platform, --profile, --kind")
    return clean


def matches(silence: Silence, event: Event) -> bool:
    """Every matcher key matches (values of one key: any of them), and a protected kind is
    matched only by a silence that names it."""
    m = silence.matchers
    if event.kind in PROTECTED and str(event.kind) not in m.get("kind", ()):
        return False
    if "kind" in m and str(event.kind) not in m["kind"]:
        return False
    if event.account is None:
        return set(m) <= {"kind"}
    return _covers(silence, event.account)


def silencing(event: Event, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first active silence that holds this event back, if any."""
    return next((s for s in silences if s.active(now) and matches(s, event)), None)


def acked(event: Event, acks: Mapping[str, Ack]) -> bool:
    """A reminder about a condition an operator has acknowledged."""
    if event.kind is not Kind.REMINDER or event.account is None:
        return False
    ack = acks.get(event.account.account_id)
    return ack is not None and ack.condition == event.account.condition


@dataclass(frozen=True, slots=True)
class Screened:
    """A batch of events split by who asked not to hear them."""

    send: tuple[Event, ...] = ()
    silenced: tuple[tuple[Event, int], ...] = ()  # (event, silence id)
    acked: tuple[Event, ...] = ()

    def by_silence(self) -> dict[int, list[str]]:
        """Silence id -> the accounts whose events it held back (each once)."""
        out: dict[int, list[str]] = {}
        for event, silence_id in self.silenced:
            accounts = out.setdefault(silence_id, [])
            if event.account_id and event.account_id not in accounts:
                accounts.append(event.account_id)
        return out


def screen(
    events: Sequence[Event], silences: Sequence[Silence], acks: Mapping[str, Ack], now: datetime
) -> Screened:
    send: list[Event] = []
    silenced: list[tuple[Event, int]] = []
    held_acked: list[Event] = []
    for event in events:
        if acked(event, acks):
            held_acked.append(event)
        elif (silence := silencing(event, silences, now)) is not None:
            silenced.append((event, silence.id))
        else:
            send.append(event)
    return Screened(tuple(send), tuple(silenced), tuple(held_acked))


def stale_acks(acks: Mapping[str, Ack], states: Mapping[str, AccountState]) -> list[str]:
    """Acks whose account's condition has changed (worse, better, recovered) or is gone."""
    return [
        account_id
        for account_id, ack in acks.items()
        if account_id not in states or states[account_id].condition != ack.condition
    ]


@dataclass(frozen=True, slots=True)
class Ended:
    """What the end of silences means for one poll: the evaluation with re-announcements,
    and the silences now settled."""

    evaluation: Evaluation
    settled: tuple[int, ...] = ()


def reannounce(
    evaluation: Evaluation,
    silences: Sequence[Silence],
    acks: Mapping[str, Ack],
    now: datetime,
) -> Ended:
    """A silence that has ended while accounts it held back are still unhealthy: each such
    account is announced again at once (a reminder now, not after `remind_every`), unless
    another silence still covers it, an ack does, or this poll already has news of it."""
    ended = [s for s in silences if not s.settled and now >= s.ends]
    if not ended:
        return Ended(evaluation)
    updated: dict[str, AccountState] = {}
    told = {e.account_id for e in evaluation.events if e.account_id}
    events: list[Event] = []
    changed = set(evaluation.changed)
    for silence in ended:
        for account_id in silence.silenced:
            state = evaluation.states.get(account_id)
            if state is None or state.healthy or account_id in told:
                continue
            note = (
                f"silence #{silence.id} ended; still {state.status} since "
                f"{state.since:%Y-%m-%d %H:%M} UTC"
            )
            candidate = Event(Kind.REMINDER, reminder_type(state), state, note=note)
            if acked(candidate, acks) or silencing(candidate, silences, now) is not None:
                continue
            state = replace(state, last_notice_at=now)
            updated[account_id] = state
            changed.add(account_id)
            told.add(account_id)
            events.append(replace(candidate, account=state))
    return Ended(
        replace(
            evaluation,
            states=with_changes(evaluation.states, updated),
            changed=frozenset(changed),
            events=(*evaluation.events, *events),
        ),
        settled=tuple(s.id for s in ended),
    )


def silenced_accounts(
    states: Iterable[AccountState], silences: Sequence[Silence], now: datetime
) -> dict[str, list[int]]:
    """Account id -> the active silences that name it by account, platform or profile (for
    the status report; a silence of kinds alone covers no account as a whole)."""
    active = [s for s in silences if s.active(now) and set(s.matchers) - {"kind"}]
    out: dict[str, list[int]] = {}
    for state in states:
        ids = [s.id for s in active if _covers(s, state)]
        if ids:
            out[state.account_id] = ids
    return out


def _covers(silence: Silence, state: AccountState) -> bool:
    values = {"account": state.account_id, "platform": state.platform}
    return all(
        values.get(key, state.profile_id or "") in wanted
        for key, wanted in silence.matchers.items()
        if key != "kind"
    )
