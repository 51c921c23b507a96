"""Notifications: render a cycle's events into messages and deliver them through Apprise.

Apprise is imported and built off the event loop, only when something is to be sent, and with
only the plugins the destinations use (`plugins`). Each destination is its own Apprise object,
so each outbox row (message, destination) gets its own result.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from late_monitor import plugins
from late_monitor.errors import ConfigError
from late_monitor.logs import REDACTOR
from late_monitor.models import Detail
from late_monitor.rules import Event, Kind, worst_type
from late_monitor.store import PlannedMessage

log = structlog.get_logger("late_monitor.notify")

CONSOLE_URL = f"{plugins.CONSOLE}://"
_ATTENTION = {
    Kind.DEGRADED,
    Kind.RECONNECT_NEEDED,
    Kind.POSTING_BLOCKED,
    Kind.PERMISSION_LOST,
    Kind.TOKEN_EXPIRING,
    Kind.REMINDER,
}
_API_TITLES = {
    Kind.API_UNREACHABLE: "the Late API is unreachable",
    Kind.AUTH_FAILED: "the Late API rejects the API key",
    Kind.API_RECOVERED: "the Late API answers again",
}


@dataclass(frozen=True, slots=True)
class Destination:
    key: str
    label: str
    tags: frozenset[str]
    service: Any  # an apprise NotifyBase


def destination_key(url: str) -> str:
    """A stable id for a destination that does not reveal its URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _label(service: Any) -> str:
    return REDACTOR.redact(str(service.url(privacy=True)).split("?", 1)[0])


class Notifier:
    """The destinations of `[notify]`, their routes, and delivery of one message to one."""

    def __init__(
        self,
        *,
        urls: Sequence[str],
        config_path: str = "",
        routes: Mapping[str, Sequence[str]] | None = None,
        group: str = "cycle",
        timeout: float = 30.0,
    ) -> None:
        self._urls = list(urls)
        self._config_path = config_path
        self._routes = {key: tuple(value) for key, value in (routes or {}).items()}
        self.group = group
        self._timeout = timeout
        self._apprise: Any = None
        self._destinations: dict[str, Destination] = {}
        self._single: dict[str, Any] = {}

    @property
    def configured(self) -> bool:
        return bool(self._urls or self._config_path)

    async def load(self) -> None:
        """Build the Apprise objects in a worker thread (importing plugins blocks)."""
        if self._apprise is None:
            await asyncio.to_thread(self._build)

    def _build(self) -> None:
        apprise: Any = importlib.import_module("apprise")  # its plugin API is untyped

        plugins.prepare(self._urls, everything=bool(self._config_path))
        apobj = apprise.Apprise()
        problems = []
        for index, url in enumerate(self._urls):
            if not apobj.add(url):
                problems.append(
                    f"notify.urls[{index}]: Apprise does not accept "
                    f"{REDACTOR.redact(url.split('://', 1)[0])}://... (unknown scheme or bad URL)"
                )
        if self._config_path:
            config = apprise.AppriseConfig()
            if not config.add(self._config_path) or not apobj.add(config):
                problems.append(f"notify.config: cannot load Apprise config {self._config_path}")
        if problems:
            raise ConfigError(problems)
        destinations: dict[str, Destination] = {}
        for service in apobj:
            raw = str(service.url(privacy=False))
            REDACTOR.add_url(raw)
            key = destination_key(raw)
            destinations[key] = Destination(
                key=key,
                label=_label(service),
                tags=frozenset(str(tag) for tag in service.tags),
                service=service,
            )
        for key, destination in destinations.items():
            single = apprise.Apprise()
            single.add(destination.service)
            self._single[key] = single
        self._destinations = destinations
        self._apprise = apobj

    def problems(self) -> list[str]:
        """After `load()`: settings under which an alert would reach nobody (a config file
        that yields no destination, a route tag that no destination has)."""
        apprise: Any = importlib.import_module("apprise")
        problems = []
        if self._config_path:
            config = apprise.AppriseConfig()
            if not config.add(self._config_path) or not config.services():
                problems.append(
                    f"notify.config: {self._config_path} gives no destination (empty, or "
                    "not an Apprise YAML/TEXT config)"
                )
        for notify_type, tags in sorted(self._routes.items()):
            for tag in tags:
                if next(iter(self._apprise.find(tag=[tag], match_always=False)), None) is None:
                    problems.append(
                        f"notify.routes.{notify_type}: no destination has the tag {tag!r}"
                    )
        return problems

    @property
    def destinations(self) -> list[Destination]:
        return list(self._destinations.values())

    def indexes(self) -> dict[str, int]:
        """Destination key -> its position in the configuration (the metrics label)."""
        return {key: index for index, key in enumerate(self._destinations)}

    def routed(self, notify_type: str) -> list[Destination]:
        """The destinations a message of this type goes to (Apprise's own tag matching)."""
        tags = self._routes.get(notify_type)
        return self.tagged(*tags) if tags else self.destinations

    def tagged(self, *tags: str) -> list[Destination]:
        """Destinations matching any of the tags, or tagged `always` (Apprise's matching)."""
        wanted = {id(service) for service in self._apprise.find(tag=list(tags))}
        return [d for d in self._destinations.values() if id(d.service) in wanted]

    def plan(
        self, events: Sequence[Event], details: Mapping[str, Detail] | None = None
    ) -> list[PlannedMessage]:
        """One message per destination for the cycle (or per account with group = account)."""
        if not events or not self._destinations:
            return []
        groups: list[list[Event]]
        if self.group == "account":
            by_account: dict[str, list[Event]] = defaultdict(list)
            for event in events:
                by_account[event.account_id or f"api:{event.kind}"].append(event)
            groups = list(by_account.values())
        else:
            groups = [list(events)]
        messages = []
        for group in groups:
            per_destination: dict[str, list[Event]] = defaultdict(list)
            for event in group:
                for destination in self.routed(event.notify_type):
                    per_destination[destination.key].append(event)
            by_content: dict[tuple[int, ...], list[str]] = defaultdict(list)
            for key, routed in per_destination.items():
                by_content[tuple(id(e) for e in routed)].append(key)
            index = {id(e): e for e in group}
            for content, keys in by_content.items():
                chosen = [index[i] for i in content]
                title, body, notify_type = render(chosen, details or {})
                messages.append(
                    PlannedMessage(
                        notify_type=notify_type,
                        title=title,
                        body=body,
                        destinations=tuple(
                            (key, self._destinations[key].label) for key in sorted(keys)
                        ),
                        accounts=tuple(sorted({e.account_id for e in chosen if e.account_id})),
                    )
                )
        return messages

    def label_of(self, key: str) -> str | None:
        destination = self._destinations.get(key)
        return destination.label if destination else None

    async def send(self, key: str, *, title: str, body: str, notify_type: str) -> str | None:
        """Send one message to one destination; None when it was accepted, else the reason."""
        single = self._single.get(key)
        if single is None:
            return "destination no longer configured"
        try:
            result = await single.async_notify(
                body=body, title=title, notify_type=notify_type, timeout=self._timeout
            )
        except Exception as exc:  # a plugin's own bug must not stop the other deliveries
            return REDACTOR.redact(f"{type(exc).__name__}: {exc}")
        if result:
            return None
        reasons = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
        return REDACTOR.redact(reasons[-1] if reasons else f"not accepted ({result.status.name})")


def _severity(event: Event) -> tuple[int, str]:
    return (-event.notify_type.weight, event.account_id or "")


def _account_line(events: Sequence[Event], details: Mapping[str, Detail]) -> str:
    first = events[0]
    state = first.account
    assert state is not None
    name = state.username or state.display_name or state.account_id
    parts = [f"[{worst_type(events).upper()}] {state.platform} {name} ({state.account_id}):"]
    kinds = {e.kind for e in events}
    status_event = next((e for e in events if e.old_status and e.new_status), None)
    if Kind.REMOVED in kinds:
        parts.append("no longer connected to Late")
    elif status_event and status_event.old_status != status_event.new_status:
        parts.append(f"{status_event.old_status} -> {status_event.new_status}")
    else:
        parts.append(state.status)
    if Kind.RECONNECT_NEEDED in kinds or (state.needs_reconnect and Kind.REMOVED not in kinds):
        parts.append("- needs reconnect")
    if Kind.POSTING_BLOCKED in kinds or (not state.can_post and Kind.REMOVED not in kinds):
        parts.append("- cannot post")
    if Kind.RECOVERED in kinds:
        parts.append("- recovered")
    notes = [e.note for e in events if e.note]
    if notes:
        parts.append("- " + "; ".join(notes))
    lines = [" ".join(parts)]
    if state.issues and Kind.REMOVED not in kinds and Kind.RECOVERED not in kinds:
        lines.append("    issues: " + "; ".join(state.issues))
    detail = details.get(state.account_id)
    if detail is not None and Kind.RECOVERED not in kinds:
        if detail.missing:
            lines.append("    missing permissions: " + ", ".join(detail.missing))
        if detail.recommendations:
            lines.append("    fix: " + "; ".join(detail.recommendations))
    return "\n".join(lines)


def render(events: Sequence[Event], details: Mapping[str, Detail]) -> tuple[str, str, str]:
    """Title, body and Apprise type of one message; worst severity first."""
    by_account: dict[str, list[Event]] = defaultdict(list)
    api_events: list[Event] = []
    for event in sorted(events, key=_severity):
        if event.account_id is None:
            api_events.append(event)
        else:
            by_account[event.account_id].append(event)
    attention = sum(1 for evs in by_account.values() if any(e.kind in _ATTENTION for e in evs))
    recovered = sum(1 for evs in by_account.values() if any(e.kind is Kind.RECOVERED for e in evs))
    improved = sum(
        1
        for evs in by_account.values()
        if any(e.kind is Kind.IMPROVED for e in evs) and not any(e.kind in _ATTENTION for e in evs)
    )
    removed = sum(1 for evs in by_account.values() if any(e.kind is Kind.REMOVED for e in evs))
    phrases = [_API_TITLES[e.kind] for e in api_events]
    if attention:
        phrases.append(f"{_count(attention)} {'needs' if attention == 1 else 'need'} attention")
    if improved:
        phrases.append(f"{_count(improved)} improved")
    if recovered:
        phrases.append(f"{recovered} recovered")
    if removed:
        phrases.append(f"{removed} removed")
    title = "Late: " + ", ".join(phrases)
    lines = [
        f"[{e.notify_type.upper()}] {_API_TITLES[e.kind]}: {e.note}".rstrip(": ")
        for e in api_events
    ]
    lines += [_account_line(evs, details) for evs in by_account.values()]
    return title, "\n".join(lines), str(worst_type(events))


def _count(n: int) -> str:
    return f"{n} account" if n == 1 else f"{n} accounts"


def backoff_delay(attempts: int) -> float:
    """After the n-th failed attempt: 30 s, then doubling, capped at 30 minutes."""
    return float(min(30 * 2 ** max(attempts - 1, 0), 1800))
