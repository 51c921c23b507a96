"""Notifications: render events into messages and send one message to one destination.

Apprise is imported and built off the event loop, only when something is to be sent, and with
only the plugins the destinations use (`plugins`). Each destination is its own Apprise object,
so each send gets its own result; which rows to send, when, and what to do after a failure is
`outbox`'s business.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from late_monitor import plugins
from late_monitor.errors import ConfigError, DeliveryError
from late_monitor.events import Event, Kind, NotifyType, worst_type
from late_monitor.logs import REDACTOR
from late_monitor.messages import Entry, PlannedMessage
from late_monitor.models import SHAPE_ERROR, Detail
from late_monitor.render import (
    FORMAT_OF_STYLE,
    Extras,
    Renderer,
    account_context,
    event_context,
    style_for,
)

log = structlog.get_logger("late_monitor.notify")

CONSOLE_URL = f"{plugins.CONSOLE}://"
_ATTENTION = {
    Kind.DEGRADED,
    Kind.RECONNECT_NEEDED,
    Kind.POSTING_BLOCKED,
    Kind.PERMISSION_LOST,
    Kind.TOKEN_EXPIRING,
    Kind.REMINDER,
    Kind.STATUS_UNKNOWN,
    Kind.ANALYTICS_LOST,
}
_API_TITLES = {
    Kind.API_UNREACHABLE: "the Late API is unreachable",
    Kind.API_UNREADABLE: SHAPE_ERROR,
    Kind.AUTH_FAILED: "the Late API rejects the API key",
    Kind.API_RECOVERED: "the Late API answers again",
    Kind.UNREADABLE: "Late listed accounts with fields late-monitor cannot read",
    Kind.SCOPE_CONFLICT: "late-monitor stopped: its state file watches another scope",
    Kind.WEBHOOK_FAILING: "Late's webhook deliveries are failing",
    Kind.WEBHOOK_DISABLED: "Late's webhook is off: polling only",
    Kind.WEBHOOK_RESTORED: "Late's webhook delivers again",
    Kind.BLIND_SPOT: "some accounts are not watched",
    Kind.KEY_EXPIRING: "late-monitor's API key expires",
    Kind.KEY_WRITABLE: "late-monitor's API key could be read-only",
}


# Where Apprise's body_maxlen is absent or too generous for what the service really takes.
_BODY_LIMITS = {
    "slack": 3000,  # Block Kit section text; Apprise says 35,000 (attachment text)
    "wxteams": 7000,  # Webex: 7,439 bytes per message; Apprise has no limit
    "webex": 7000,
}
# Room for what Apprise adds (escaping, markup) after we fit a message to the limit.
_MARGIN = 32
_MORE = "... and {} more accounts (see late-monitor status)"
_HTTP_STATUS = re.compile(r"error=(\d{3})\b")

# Apprise's read timeout (?rto=) when the URL sets none is 4 s, the same as its connect timeout
# (?cto=): a webhook that takes 5 s to answer would be sent each retry again, and a read timeout
# could not be told from a connect timeout by its duration. Ours, unless the URL sets one:
READ_TIMEOUT = 15.0
_APPRISE_READ_TIMEOUT = 4.0


@dataclass(frozen=True, slots=True)
class Destination:
    key: str
    label: str
    tags: frozenset[str]
    service: Any  # an apprise NotifyBase
    body_max: int = 32768
    title_max: int = 250
    title_in_body: bool = False  # the service counts (or puts) the title in the body
    connect_timeout: float = 4.0
    read_timeout: float = READ_TIMEOUT
    style: str = "text"  # render.STYLES: how its messages are written and escaped

    @property
    def timeout(self) -> float:
        """How long to wait for one send: never shorter than the URL's own timeouts."""
        return self.connect_timeout + self.read_timeout + 5.0


def destination_key(url: str) -> str:
    """A stable id for a destination that does not reveal its URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _label(service: Any) -> str:
    return REDACTOR.redact(str(service.url(privacy=True)).split("?", 1)[0])


_TOO_LONG = {400, 413, 422}  # what a webhook answers a message over its limit
_SHORTER = (1900, 500)  # characters to try after such an answer (Discord takes 2,000)


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
        body_limits: Mapping[str, int] | None = None,
        templates: str = "",
        workspace: str = "",
        profile_routes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._urls = list(urls)
        self._body_limits = {**_BODY_LIMITS, **(body_limits or {})}  # schema -> characters
        self._config_path = config_path
        self._routes = {key: tuple(value) for key, value in (routes or {}).items()}
        self.group = group
        self._timeout = timeout
        self._apprise: Any = None
        self._destinations: dict[str, Destination] = {}
        self._single: dict[str, Any] = {}
        self._learned: dict[str, int] = {}  # destination key -> the size it took after a 4xx
        self.renderer = Renderer(templates)  # a broken templates directory: ConfigError now
        self.workspace = workspace  # named in every title ("" for the implicit one)
        # profile name -> tags: that profile's news goes there instead of its type's route
        self._profile_routes = {
            name.casefold(): tuple(tags) for name, tags in (profile_routes or {}).items()
        }
        self._route_names = tuple(profile_routes or ())  # as written, for warnings
        self.profiles: Mapping[str, str] = {}  # profile id -> name, from Late's /v1/profiles

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
        # no service_timeout of Apprise's own (60 s): each destination's send is bounded by
        # its own connect + read timeouts (Destination.timeout), so ?rto=90 works
        asset = apprise.AppriseAsset(service_timeout=0)
        apobj = apprise.Apprise(asset=asset)
        problems = []
        for index, url in enumerate(self._urls):
            if not apobj.add(url):
                problems.append(
                    f"notify.urls[{index}]: Apprise does not accept "
                    f"{REDACTOR.redact(url.split('://', 1)[0])}://... (unknown scheme or bad URL)"
                )
        if self._config_path:
            config = apprise.AppriseConfig(asset=asset)
            if not config.add(self._config_path) or not apobj.add(config):
                problems.append(f"notify.config: cannot load Apprise config {self._config_path}")
        if problems:
            raise ConfigError(problems)
        destinations: dict[str, Destination] = {}
        for service in apobj:
            raw = str(service.url(privacy=False))
            REDACTOR.add_url(raw, private=str(service.url(privacy=True)))
            key = destination_key(raw)  # before our default timeout changes service.url()
            schema = plugins.schema_of(raw)
            limit = self._body_limits.get(schema or "")
            style = style_for(schema, _url_format(raw))
            destinations[key] = _destination(key, service, body_max=limit, style=style)
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
        routes = [
            *sorted(self._routes.items()),
            *((f"profile.{name!r}", tags) for name, tags in sorted(self._profile_routes.items())),
        ]
        for notify_type, tags in routes:
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

    def unmatched_profile_routes(self, names: Iterable[str]) -> list[str]:
        """The profile routes naming none of `names` (Late's profiles: one renamed?)."""
        known = {name.casefold() for name in names}
        return sorted(route for route in self._route_names if route.casefold() not in known)

    def routed_event(self, event: Event) -> list[Destination]:
        """Where an event goes: its profile's route when it has one, else its type's, less
        the destinations a profile route names (they hear of their profile alone)."""
        if not self._profile_routes:
            return self.routed(event.notify_type)
        if event.account is not None and event.account.profile_id:
            name = self.profiles.get(event.account.profile_id, event.account.profile_id)
            tags = self._profile_routes.get(name.casefold())
            if tags:
                return self.tagged(*tags)
        return [d for d in self.routed(event.notify_type) if d.key not in self._claimed]

    @functools.cached_property
    def _claimed(self) -> frozenset[str]:
        """The destinations profile routes name (not `always`): once, after `load()`; the
        destinations do not change after it."""
        return frozenset(
            d.key
            for tags in self._profile_routes.values()
            for d in self.tagged(*tags)
            if "always" not in d.tags
        )

    def tagged(self, *tags: str) -> list[Destination]:
        """Destinations matching any of the tags, or tagged `always` (Apprise's matching)."""
        wanted = {id(service) for service in self._apprise.find(tag=list(tags))}
        return [d for d in self._destinations.values() if id(d.service) in wanted]

    def plan(
        self,
        events: Sequence[Event],
        details: Mapping[str, Detail] | None = None,
        extras: Mapping[str, Extras] | None = None,
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
                for destination in self.routed_event(event):
                    per_destination[destination.key].append(event)
            by_content: dict[tuple[str, tuple[int, ...]], list[str]] = defaultdict(list)
            for key, routed in per_destination.items():
                style = self._destinations[key].style
                by_content[style, tuple(id(e) for e in routed)].append(key)
            index = {id(e): e for e in group}
            for (style, content), keys in by_content.items():
                chosen = [index[i] for i in content]
                title, entries, notify_type = digest(
                    chosen,
                    details or {},
                    extras,
                    style=style,
                    renderer=self.renderer,
                    profiles=self.profiles,
                    workspace=self.workspace,
                )
                if self.workspace and self.workspace not in title:
                    title = f"[{self.workspace}] {title}"  # a custom title template forgot it
                messages.append(
                    PlannedMessage(
                        notify_type=notify_type,
                        title=title,
                        body="\n".join(entry.text for entry in entries),
                        entries=entries,
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

    def knows(self, key: str) -> bool:
        return key in self._destinations

    async def deliver(self, key: str, *, title: str, body: str, notify_type: str) -> None:
        """Send one message to one destination, cut to the size it takes.

        A destination that refuses a long message (400, 413, 422: many webhooks have a limit
        Apprise does not know) gets it again at once, cut shorter, twice at most; the size
        it took is kept for its next messages. Raises DeliveryError, `permanent` for a 4xx
        (except 408 and 429), `unanswered` when the request went out and no answer came
        within the destination's read timeout.
        """
        destination = self._destinations.get(key)
        if destination is None:
            raise DeliveryError("destination no longer configured", permanent=True)
        limit = self._learned.get(key, destination.body_max)
        shorter = [n for n in _SHORTER if n < min(limit, len(body))]
        for attempt, body_max in enumerate([limit, *shorter]):
            try:
                await self._deliver_once(destination, title, body, notify_type, body_max)
            except DeliveryError as exc:
                if exc.status in _TOO_LONG and attempt < len(shorter):
                    continue
                raise
            if attempt:
                self._learned[key] = body_max
                log.warning(
                    "notification_shortened",
                    destination=destination.label,
                    refused_chars=min(limit, len(body)),
                    sent_chars=body_max,
                    hint="the destination refused the longer message; see late-monitor "
                    "status for every account",
                )
            return

    async def _deliver_once(
        self, destination: Destination, title: str, body: str, notify_type: str, body_max: int
    ) -> None:
        title, body = fit(
            title,
            body,
            title_max=destination.title_max,
            body_max=body_max,
            title_in_body=destination.title_in_body,
        )
        try:
            result = await self._single[destination.key].async_notify(
                body=body,
                title=title,
                notify_type=notify_type,
                body_format=FORMAT_OF_STYLE[destination.style],
                timeout=max(self._timeout, destination.timeout),
            )
        except Exception as exc:  # a plugin's own bug must not stop the other deliveries
            raise DeliveryError(REDACTOR.redact(f"{type(exc).__name__}: {exc}")) from None
        if not result:
            raise _failure(result, destination)

    async def send(self, key: str, *, title: str, body: str, notify_type: str) -> str | None:
        """Send one message to one destination; None when it was accepted, else the reason."""
        try:
            await self.deliver(key, title=title, body=body, notify_type=notify_type)
        except DeliveryError as exc:
            return str(exc)
        return None


def _url_format(url: str) -> str | None:
    """The `?format=` a destination's URL asks for, if any."""
    values = parse_qs(urlsplit(url).query).get("format")
    return values[-1].lower() if values else None


def _destination(
    key: str, service: Any, *, body_max: int | None, style: str = "text"
) -> Destination:
    if body_max is None:
        body_max = int(getattr(service, "body_maxlen", 0) or 0)
    title_max = int(getattr(service, "title_maxlen", 0) or 0)
    read = float(getattr(service, "socket_read_timeout", 0) or 0)
    if read == _APPRISE_READ_TIMEOUT:  # not set by the URL (or set to Apprise's default)
        service.socket_read_timeout = read = READ_TIMEOUT
    connect = float(getattr(service, "socket_connect_timeout", 0) or 0)
    if read > 0 and abs(read - connect) < 1.0:
        # A send that failed after ~the connect timeout would be indistinguishable from one
        # that got no answer (and may have arrived): keep the two a second apart.
        service.socket_read_timeout = read = connect + 1.0
    return Destination(
        key=key,
        label=_label(service),
        tags=frozenset(str(tag) for tag in service.tags),
        service=service,
        body_max=body_max or 32768,
        title_max=title_max,
        title_in_body=title_max <= 0 or bool(getattr(service, "overflow_amalgamate_title", False)),
        connect_timeout=connect,
        read_timeout=read,
        style=style,
    )


def _failure(result: Any, destination: Destination) -> DeliveryError:
    """What a failed AppriseResult means for a retry: Apprise plugins log the HTTP status of a
    refused request as "error=NNN"; a request that got no answer takes the read timeout."""
    reasons = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
    reason = REDACTOR.redact(reasons[-1] if reasons else f"not accepted ({result.status.name})")
    statuses = [int(m) for text in reasons for m in _HTTP_STATUS.findall(text)]
    if statuses:
        status = statuses[-1]
        permanent = 400 <= status < 500 and status not in (408, 429)
        return DeliveryError(reason, permanent=permanent, status=status)
    return DeliveryError(
        reason,
        unanswered=result.status.name == "TIMEOUT"
        or _read_timed_out(float(result.elapsed), destination),
    )


def _read_timed_out(elapsed: float, destination: Destination) -> bool:
    """A failure without an answer that lasted the read timeout, and that a connect timeout
    would not explain: the request was sent and may have been acted upon."""
    read, connect = destination.read_timeout, destination.connect_timeout
    return read > 0 and elapsed >= 0.9 * read and abs(elapsed - connect) > 0.5


def _severity(event: Event) -> tuple[int, str]:
    return (-event.notify_type.weight, event.account_id or "")


def _default_renderer() -> Renderer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Renderer()
    return _DEFAULT


_DEFAULT: Renderer | None = None


def render(events: Sequence[Event], details: Mapping[str, Detail]) -> tuple[str, str, str]:
    """Title, body and Apprise type of one plain-text message; worst severity first."""
    title, entries, notify_type = digest(events, details)
    return title, "\n".join(entry.text for entry in entries), notify_type


def digest(
    events: Sequence[Event],
    details: Mapping[str, Detail],
    extras: Mapping[str, Extras] | None = None,
    *,
    style: str = "text",
    renderer: Renderer | None = None,
    profiles: Mapping[str, str] | None = None,
    workspace: str = "",
) -> tuple[str, tuple[Entry, ...], str]:
    """Title, the body's entries (one per account, the API's first) and Apprise type, in
    the destination's style."""
    renderer = renderer or _default_renderer()
    extras = extras or {}
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
    disconnected = sum(
        1 for evs in by_account.values() if any(e.kind is Kind.DISCONNECTED for e in evs)
    )
    corrected = sum(1 for evs in by_account.values() if any(e.kind is Kind.CORRECTED for e in evs))
    detailed = sum(1 for evs in by_account.values() if all(e.kind is Kind.DETAILS for e in evs))
    phrases = [_api_title(e) for e in api_events]
    if attention:
        phrases.append(f"{_count(attention)} {'needs' if attention == 1 else 'need'} attention")
    if improved:
        phrases.append(f"{_count(improved)} improved")
    if recovered:
        phrases.append(f"{recovered} recovered")
    if removed:
        phrases.append(f"{removed} removed")
    if disconnected:
        phrases.append(f"{disconnected} disconnected in Late")
    if corrected:
        phrases.append(f"{_count(corrected)} better than a webhook said")
    if detailed:
        phrases.append(f"details for {_count(detailed)}")
    worst = worst_type(events)
    ordered = sorted(events, key=_severity)
    title = renderer.title(
        style,
        str(ordered[0].kind) if ordered else "digest",
        {
            "phrases": phrases,
            "type": str(worst),
            "counts": {
                "attention": attention,
                "improved": improved,
                "recovered": recovered,
                "removed": removed,
                "disconnected": disconnected,
                "corrected": corrected,
                "details": detailed,
            },
            "events": [event_context(e) for e in ordered],
            "workspace": workspace,
        },
    )
    entries = [
        Entry(
            "api",
            str(e.notify_type),
            renderer.entry(
                style,
                str(e.kind),
                {
                    "format": FORMAT_OF_STYLE[style],
                    "type": str(e.notify_type),
                    "line": _api_line(e),
                    "event": event_context(e),
                    "account": None,
                },
            ),
        )
        for e in api_events
    ]
    for account_id, evs in by_account.items():
        kind = worst_kind(evs)
        context = account_context(
            evs,
            details.get(account_id),
            extras.get(account_id),
            str(worst_type(evs)),
            profiles=profiles,
        )
        context["format"] = FORMAT_OF_STYLE[style]
        entries.append(
            Entry(account_id, str(worst_type(evs)), renderer.entry(style, kind, context))
        )
    return title, tuple(entries), str(worst)


def worst_kind(events: Sequence[Event]) -> str:
    """The kind that names an account's entry: its loudest event's."""
    return str(min(events, key=_severity).kind)


def _api_title(event: Event) -> str:
    """The title phrase of an event about the API or about many accounts at once."""
    if event.kind in _API_TITLES:
        return _API_TITLES[event.kind]
    return event.note.split(";", 1)[0]  # e.g. "10000 accounts are no longer listed"


def _api_line(event: Event) -> str:
    if event.kind not in _API_TITLES:
        return event.note
    return f"{_API_TITLES[event.kind]}: {event.note}".rstrip(": ")


def _count(n: int) -> str:
    return f"{n} account" if n == 1 else f"{n} accounts"


def merge_held(held: Sequence[tuple[str, str, Sequence[Entry]]]) -> tuple[str, str, str]:
    """One up-to-date digest for messages (notify type, body, entries; oldest first) that
    waited for one destination: each account's latest entry, worst first.

    A message from before entries were stored counts as one entry of its own.
    """
    latest: dict[str, Entry] = {}
    for index, (notify_type, body, entries) in enumerate(held):
        for entry in entries or (Entry(f"#{index}", notify_type, body),):
            latest[entry.key] = entry  # an account keeps its first place, with its newest entry
    ordered = sorted(latest.values(), key=lambda e: -_weight(e.notify_type))
    kinds = Counter(_PHRASE.get(e.notify_type, "other updates") for e in ordered)
    phrases = [
        f"{kinds[p]} {p}" for p in ("need attention", "recovered", "other updates") if p in kinds
    ]
    title = f"Late: {', '.join(phrases)} (latest of {len(held)} held messages)"
    worst = max((e.notify_type for e in ordered), key=_weight)
    return title, "\n".join(e.text for e in ordered), worst


_PHRASE = {"failure": "need attention", "warning": "need attention", "success": "recovered"}


def _weight(notify_type: str) -> int:
    try:
        return NotifyType(notify_type).weight
    except ValueError:
        return NotifyType.WARNING.weight


def fit(
    title: str, body: str, *, title_max: int, body_max: int, title_in_body: bool = False
) -> tuple[str, str]:
    """Cut a message to a destination's limits: the title to its maximum, the body after the
    last whole entry that fits (else a line, else characters), then how many were left out."""
    if title_max > 0 and len(title) > title_max:
        title = title[: title_max - 1].rstrip() + "…"
    budget = body_max - _MARGIN - (len(title) + 2 if title_in_body else 0)
    if len(body) <= budget:
        return title, body
    blocks = _blocks(body)
    kept: list[str] = []
    used = 0
    for block in blocks:
        more = _MORE.format(len(blocks) - len(kept) - 1)
        if used + len(block) + 1 + len(more) > budget:
            break
        kept.append(block)
        used += len(block) + 1
    if not kept:  # the first entry alone is too long: its lines that fit, or a cut first line
        more = _MORE.format(len(blocks) - 1)
        room = max(budget - len(more) - 1, 0)
        lines: list[str] = []
        for line in blocks[0].split("\n"):
            if sum(len(x) + 1 for x in lines) + len(line) > room:
                break
            lines.append(line)
        kept = ["\n".join(lines) if lines else blocks[0][:room]]
    return title, "\n".join([*kept, _MORE.format(len(blocks) - len(kept))])


def _blocks(body: str) -> list[str]:
    """The body's entries: a line, and the indented lines that belong to it."""
    blocks: list[str] = []
    for line in body.split("\n"):
        if blocks and line[:1].isspace():
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return blocks
