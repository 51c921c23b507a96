"""Builds the running parts (client, store path, notifier, cycle deps) from the settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from late_monitor.config import LoadedConfig, default_state_path
from late_monitor.cycle import CycleDeps
from late_monitor.late import LateClient
from late_monitor.logs import configure_logging
from late_monitor.notify import Notifier
from late_monitor.rules import Policy
from late_monitor.store import Store


def policy_from(loaded: LoadedConfig) -> Policy:
    monitor = loaded.settings.monitor
    return Policy(
        confirm_after=monitor.confirm_after,
        token_expiry_warn=tuple(sorted(monitor.token_expiry_warn, reverse=True)),
        remind_every=monitor.remind_every,
        notify_recovery=monitor.notify_recovery,
        notify_first_seen=monitor.notify_first_seen,
        api_failure_after=monitor.api_failure_after,
    )


def state_path_from(loaded: LoadedConfig) -> Path:
    configured = loaded.settings.state.path
    return Path(configured).expanduser() if configured else default_state_path(os.environ)


def notifier_from(loaded: LoadedConfig) -> Notifier:
    notify = loaded.settings.notify
    return Notifier(
        urls=[url.get_secret_value() for url in notify.urls],
        config_path=notify.config,
        routes={str(key): value for key, value in notify.routes.items()},
        group=notify.group,
    )


def client_from(loaded: LoadedConfig) -> LateClient:
    late = loaded.settings.late
    return LateClient(
        api_key=loaded.require_api_key(),
        base_url=late.base_url,
        timeout=late.timeout,
        max_requests_per_minute=late.max_requests_per_minute,
        max_body=late.max_body_mb << 20,
    )


def deps_from(loaded: LoadedConfig, *, client: LateClient, store: Store) -> CycleDeps:
    settings = loaded.settings
    return CycleDeps(
        client=client,
        store=store,
        notifier=notifier_from(loaded),
        policy=policy_from(loaded),
        profile_id=settings.late.profile_id,
        platforms=tuple(settings.late.platforms),
        detail=settings.monitor.detail,
        detail_every=settings.monitor.detail_every,
        interval=settings.monitor.interval,
        max_requests_per_minute=settings.late.max_requests_per_minute,
        retry_for=settings.notify.retry_for,
    )


def setup_logging(
    loaded: LoadedConfig, *, stream: TextIO | None = None, level: str | None = None
) -> None:
    settings = loaded.settings
    configure_logging(
        level=level if level and settings.log.level != "debug" else settings.log.level,
        fmt=settings.log.format,
        stream=stream if stream is not None else sys.stdout,
        secrets=[loaded.api_key.get_secret_value()] if loaded.api_key else [],
        urls=[url.get_secret_value() for url in settings.notify.urls],
    )
