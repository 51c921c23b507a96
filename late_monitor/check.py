"""`late-monitor check`: a Nagios/Icinga plugin. One live poll; no state written, nothing sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from late_monitor.config import LoadedConfig
from late_monitor.errors import AuthRejected, BadPayload, ConfigError, LateApiError
from late_monitor.models import Observation, Snapshot
from late_monitor.state import HEALTHY, rank
from late_monitor.wiring import client_from

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def _status(account: Observation) -> str:
    return "unreadable" if account.status is None else account.status  # ranks as a warning


def _critical(account: Observation) -> bool:
    return (
        rank(_status(account)) >= 2 or account.needs_reconnect is True or account.can_post is False
    )


def assess(snapshot: Snapshot, *, now: datetime, expiry_warn: float) -> tuple[int, str]:
    """The plugin's exit code and output for one poll."""
    accounts = sorted(snapshot.accounts.values(), key=lambda a: (-rank(_status(a)), a.account_id))
    horizon = now + timedelta(seconds=expiry_warn)
    expiring = [a for a in accounts if a.token_expires_at and a.token_expires_at <= horizon]
    errors = sum(1 for a in accounts if rank(_status(a)) >= 2)
    warnings = sum(1 for a in accounts if rank(_status(a)) == 1)
    reconnect = sum(1 for a in accounts if a.needs_reconnect)
    healthy = sum(1 for a in accounts if a.status == HEALTHY)
    days = round(expiry_warn / 86400)
    if any(_critical(a) for a in accounts):
        code = CRITICAL
    elif warnings or expiring:
        code = WARNING
    else:
        code = OK
    parts = []
    if errors:
        parts.append(f"{errors} error")
    if reconnect:
        parts.append(f"{reconnect} needs reconnect")
    if warnings:
        parts.append(f"{warnings} warning")
    if expiring:
        parts.append(f"{len(expiring)} token expiring within {days}d")
    summary = ", ".join(parts) or "all healthy"
    perfdata = (
        f"total={len(accounts)} healthy={healthy} warning={warnings} error={errors} "
        f"needs_reconnect={reconnect} expiring_{days}d={len(expiring)}"
    )
    lines = [f"LATE {_NAMES[code]} - {summary} of {len(accounts)} | {perfdata}"]
    expiring_ids = {a.account_id for a in expiring}
    for a in accounts:
        if a.status == HEALTHY and not _critical(a) and a.account_id not in expiring_ids:
            continue
        notes = [_status(a)]
        if a.needs_reconnect:
            notes.append("needs reconnect")
        if a.can_post is False:
            notes.append("cannot post")
        if a.account_id in expiring_ids and a.token_expires_at:
            notes.append(f"token expires {a.token_expires_at:%Y-%m-%d %H:%M} UTC")
        notes += list(a.issues)
        lines.append(
            f"{a.platform} {a.username or a.account_id} ({a.account_id}): " + "; ".join(notes)
        )
    return code, "\n".join(lines)


async def _poll(loaded: LoadedConfig) -> Snapshot:
    async with client_from(loaded) as client:
        late = loaded.settings.late
        return await client.health(profile_id=late.profile_id, platforms=tuple(late.platforms))


def run_check(
    loaded: LoadedConfig | None, *, timeout: float, config_error: str = ""
) -> tuple[int, str]:
    """Poll within `timeout` seconds; UNKNOWN for a bad config, a rejected key or no answer."""
    if loaded is None:
        return UNKNOWN, f"LATE UNKNOWN - bad configuration: {config_error}"
    return asyncio.run(_check(loaded, within=timeout))


async def _check(loaded: LoadedConfig, *, within: float) -> tuple[int, str]:
    try:
        loaded.require_api_key()
    except ConfigError as exc:
        return UNKNOWN, f"LATE UNKNOWN - bad configuration: {exc.problems[0]}"
    try:
        async with asyncio.timeout(within):
            snapshot = await _poll(loaded)
    except TimeoutError:
        return UNKNOWN, f"LATE UNKNOWN - no answer from the Late API within {within:g}s"
    except AuthRejected as exc:
        return UNKNOWN, f"LATE UNKNOWN - API key rejected: {exc}"
    except BadPayload as exc:
        return UNKNOWN, f"LATE UNKNOWN - {exc}"
    except LateApiError as exc:
        return UNKNOWN, f"LATE UNKNOWN - Late API unavailable: {exc}"
    warn = max(loaded.settings.monitor.token_expiry_warn, default=7 * 86400.0)
    late = loaded.settings.late
    if not snapshot.accounts and (late.platforms or late.profile_id):
        scope = ", ".join(
            [
                *(f"platform {p}" for p in late.platforms),
                *([f"profile {late.profile_id}"] if late.profile_id else []),
            ]
        )
        return (
            WARNING,
            f"LATE WARNING - no account matches the configured scope ({scope}) | total=0",
        )
    return assess(snapshot, now=datetime.now(UTC), expiry_warn=warn)


_WORST = (CRITICAL, UNKNOWN, WARNING, OK)  # how Nagios ranks states: the first found wins


def run_checks(
    loaded: LoadedConfig | None, *, timeout: float, config_error: str = ""
) -> tuple[int, str]:
    """`run_check` of each workspace (one poll each, concurrently bounded by `timeout`
    apiece): the worst state, a first line naming each workspace's, then their outputs."""
    if loaded is None or not loaded.named:
        return run_check(loaded, timeout=timeout, config_error=config_error)

    async def each() -> list[tuple[int, str]]:
        return await asyncio.gather(*(_check(v, within=timeout) for v in loaded.workspaces))

    results = [
        (view.workspace, *outcome)
        for view, outcome in zip(loaded.workspaces, asyncio.run(each()), strict=True)
    ]
    code = next(state for state in _WORST if any(r[1] == state for r in results))
    summary = ", ".join(f"{name} {_NAMES[state]}" for name, state, _ in results)
    lines = [f"LATE {_NAMES[code]} - {len(results)} workspaces: {summary}"]
    lines += [f"[{name}] {text}" for name, _, text in results]
    return code, "\n".join(lines)
