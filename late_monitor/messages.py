"""Messages and their delivery rows: what the cycle plans, the store keeps and the outbox sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PENDING, SET_ASIDE = "pending", "set_aside"  # outbox row states; see store.py
DELIVERED, DROPPED, REROUTED = "delivered", "dropped", "rerouted"
HELD, RELEASED = "held", "released"  # waiting for quiet hours to end; sent as a summary


@dataclass(frozen=True, slots=True)
class Entry:
    """One account's part of a digest (key "api" for the Late API's own events)."""

    key: str
    notify_type: str
    text: str


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    """A rendered message and the destinations (by key) it goes to."""

    notify_type: str
    title: str
    body: str
    destinations: tuple[tuple[str, str], ...]  # (key, masked label)
    accounts: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()  # the body's parts, in order
    held_until: float | None = None  # quiet hours: kept back until then (epoch seconds)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message_id: int
    destination: str
    label: str
    attempts: int
    created_at: float
    next_attempt_at: float
    notify_type: str
    title: str
    body: str
    state: str = PENDING
    cycle_id: int | None = None
    unanswered: int = 0
    entries: tuple[Entry, ...] = ()  # empty for messages written by schema 1
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class CycleRecord:
    started_at: datetime
    finished_at: datetime
    outcome: str
    accounts: int
    events: int
    requests: int
    error: str | None = None
