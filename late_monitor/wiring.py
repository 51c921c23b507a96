"""The wiring: builds the running parts (client, notifier, cycle deps) from the settings.

Only the composition modules (cli, daemon, demo, check, commands) import this one."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from late_monitor.config import LoadedConfig
from late_monitor.cycle import CycleDeps, utcnow
from late_monitor.errors import ConfigError
from late_monitor.heartbeat import Heartbeat
from late_monitor.late import LateClient
from late_monitor.logs import REDACTOR, configure_logging
from late_monitor.notify import Notifier
from late_monitor.quiet import QuietWindow, parse_days, parse_time
from late_monitor.rules import Policy
from late_monitor.storage import StateStore as Store


def policy_from(loaded: LoadedConfig) -> Policy:
    monitor = loaded.settings.monitor
    return Policy(
        confirm_after=monitor.confirm_after,
        token_expiry_warn=tuple(sorted(monitor.token_expiry_warn, reverse=True)),
        remind_every=monitor.remind_every,
        notify_recovery=monitor.notify_recovery,
        notify_first_seen=monitor.notify_first_seen,
        api_failure_after=monitor.api_failure_after,
        claim_grace=loaded.settings.webhooks.poll_grace,
    )


def notifier_from(loaded: LoadedConfig) -> Notifier:
    """The notifier of `[notify]`; a broken templates directory is a config error naming
    the file, the line and where `notify.templates` was set."""
    notify = loaded.settings.notify
    try:
        profile_routes = notify.routes.get("profile")
        return Notifier(
            urls=[url.get_secret_value() for url in notify.urls],
            config_path=notify.config,
            routes={
                str(key): value for key, value in notify.routes.items() if isinstance(value, list)
            },
            group=notify.group,
            templates=notify.templates,
            workspace=loaded.label,
            profile_routes=profile_routes if isinstance(profile_routes, dict) else None,
        )
    except ConfigError as exc:
        raise ConfigError([_where(loaded, problem) for problem in exc.problems]) from None


def client_from(loaded: LoadedConfig) -> LateClient:
    late = loaded.settings.late
    return LateClient(
        api_key=loaded.require_api_key(),
        base_url=late.base_url,
        timeout=late.timeout,
        max_requests_per_minute=late.max_requests_per_minute,
        max_body=late.max_body_mb << 20,
    )


async def check_destinations(
    loaded: LoadedConfig, notifier: Notifier, *, dry_run: bool = False
) -> None:
    """Refuse, before any poll, a configuration under which alerts would go nowhere: no
    destination (unless only printing), an unreadable `notify.config`, a URL Apprise does
    not accept, a route tag no destination has. Loads Apprise (in a thread) when there are
    destinations, as sending would anyway; `notifier` keeps what it loaded."""
    problems = _offline_problems(loaded, dry_run=dry_run)
    urls = [url.get_secret_value() for url in loaded.settings.notify.urls]
    for url in urls:
        REDACTOR.add_url(url)  # before Apprise's reasons are quoted (on reload: before logging)
    if notifier.configured:
        with _apprise_logs() as said:  # Apprise's own words go into our one line, not the log
            try:
                await notifier.load()
            except ConfigError as exc:
                problems += await asyncio.to_thread(_with_reasons, exc.problems, urls, said)
            else:
                if not problems:
                    problems += await asyncio.to_thread(notifier.problems)
    if problems:
        raise ConfigError([_where(loaded, problem) for problem in problems])


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextlib.contextmanager
def _apprise_logs() -> Iterator[list[str]]:
    logger = logging.getLogger("apprise")
    said: list[str] = []
    handler = _Collect(said)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _with_reasons(problems: list[str], urls: list[str], said: list[str]) -> list[str]:
    """Each `notify.urls[i]` problem with the reason Apprise gives for that URL alone."""
    apprise: Any = importlib.import_module("apprise")  # loaded by now; its API is untyped
    explained = []
    for problem in problems:
        match = re.match(r"notify\.urls\[(\d+)\]", problem)
        if match and int(match.group(1)) < len(urls):
            said.clear()
            apprise.Apprise().add(urls[int(match.group(1))])
            if said:
                problem = f"{problem}: {REDACTOR.redact(said[0]).strip()}"
        explained.append(problem)
    return explained


def _offline_problems(loaded: LoadedConfig, *, dry_run: bool) -> list[str]:
    notify = loaded.settings.notify
    if not notify.urls and not notify.config:
        if dry_run:
            return []
        return [
            "notify.urls: no destination, so alerts would go nowhere; set notify.urls or "
            "notify.config (or use run --dry-run to only print them)"
        ]
    if not notify.config or re.match(r"^[a-z][a-z0-9+.-]*://", notify.config, re.I):
        return []  # a remote config is Apprise's to fetch
    path = Path(notify.config.removeprefix("file://")).expanduser()
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        return [f"notify.config: {path} does not exist"]
    except IsADirectoryError:
        return [f"notify.config: {path} is a directory, not an Apprise config file"]
    except OSError as exc:
        return [f"notify.config: cannot read {path} ({exc.strerror})"]
    return []


def _where(loaded: LoadedConfig, problem: str) -> str:
    """The problem prefixed with where its key was set (file or variable), when known."""
    key = ".".join(re.split(r"[\[:]", problem, maxsplit=1)[0].split(".")[:2])
    source = loaded.sources.get(key, "default")
    if source == "default":
        source = str(loaded.path) if loaded.path else ""
    if loaded.label:
        problem = f"workspaces[{loaded.label}]: {problem}"
    return f"{source}: {problem}" if source else problem


def deps_from(
    loaded: LoadedConfig,
    *,
    client: LateClient,
    store: Store,
    notifier: Notifier | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> CycleDeps:
    settings = loaded.settings
    return CycleDeps(
        client=client,
        store=store,
        notifier=notifier if notifier is not None else notifier_from(loaded),
        policy=policy_from(loaded),
        profile_id=settings.late.profile_id,
        platforms=tuple(settings.late.platforms),
        detail=settings.monitor.detail,
        detail_every=settings.monitor.detail_every,
        interval=settings.monitor.interval,
        max_requests_per_minute=settings.late.max_requests_per_minute,
        retry_for=settings.notify.retry_for,
        clock=clock,
        impact_horizon=settings.impact.horizon,
        escalate_within=settings.impact.escalate_within,
        impact_pages=settings.impact.max_pages,
        public_url=settings.http.public_url,
        link_expiry=settings.http.link_expiry,
        quiet_hours=quiet_hours_from(loaded),
        heartbeat=heartbeat_from(loaded),
    )


def quiet_hours_from(loaded: LoadedConfig) -> tuple[QuietWindow, ...]:
    return tuple(
        QuietWindow(
            start=parse_time(window.start),
            end=parse_time(window.end),
            zone=ZoneInfo(window.timezone),
            days=parse_days(window.days),
            hold=frozenset(window.hold),
        )
        for window in loaded.settings.monitor.quiet_hours
    )


def heartbeat_from(loaded: LoadedConfig) -> Heartbeat | None:
    beat = loaded.settings.heartbeat
    if beat.url is None or not beat.url.get_secret_value():
        return None
    return Heartbeat(
        url=beat.url.get_secret_value(),
        on_failure=beat.on_failure,
        fail_url=beat.fail_url.get_secret_value() if beat.fail_url else "",
        timeout=beat.timeout,
    )


def setup_logging(
    loaded: LoadedConfig, *, stream: TextIO | None = None, level: str | None = None
) -> None:
    settings = loaded.settings
    configure_logging(
        level=level if level and settings.log.level != "debug" else settings.log.level,
        fmt=settings.log.format,
        stream=stream if stream is not None else sys.stdout,
        secrets=[  # every workspace's key, not only [late]'s
            secret.get_secret_value()
            for secret in (
                loaded.api_key,
                loaded.webhook_secret,
                *(view.api_key for view in loaded.views),
            )
            if secret is not None
        ],
        urls=[url.get_secret_value() for url in settings.notify.urls],
    )
    control_secrets(loaded)


def control_secrets(loaded: LoadedConfig) -> None:
    """The admin token and the heartbeat URLs' tokens never reach a log or an error."""
    settings = loaded.settings
    if loaded.state_password is not None:
        REDACTOR.add(loaded.state_password.get_secret_value())
    if settings.http.admin_token is not None:
        REDACTOR.add(settings.http.admin_token.get_secret_value())
    for url in (settings.heartbeat.url, settings.heartbeat.fail_url):
        if url is not None and url.get_secret_value():
            REDACTOR.add_url(url.get_secret_value())
