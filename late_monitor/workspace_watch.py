"""A workspace's look at its own Late account, hourly, before a poll (see workspace_facts).

Profile names feed messages and profile routes; blind spots and the monitor's own key are
told once through the same path as every other batch of news (`record_and_send`). Two
workspaces that turn out to be the same Late user share one request budget. None of it may
hold back or fail a poll: each call has a short deadline and an error is a log line.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import structlog

from late_monitor.cycle import CycleDeps, tell_news
from late_monitor.errors import LateApiError, LateMonitorError
from late_monitor.late import LateClient
from late_monitor.workspace_facts import (
    KeyInfo,
    Profile,
    current_user,
    parse_keys,
    parse_profiles,
    review,
)

log = structlog.get_logger("late_monitor.workspace")

REFRESH_EVERY = 3600.0  # seconds between looks (profile names are cached that long)
CALL_DEADLINE = 10.0  # seconds one look may take before the poll goes on without it
META_KEY = "workspace_watch"


class Budgets:
    """The request budgets of the daemon's workspaces: Late limits requests per user, so
    workspaces whose keys belong to the same user (same currentUserId) share one."""

    def __init__(self) -> None:
        self._clients: dict[str, LateClient] = {}
        self._users: dict[str, str] = {}  # user id -> the workspace whose budget it uses

    def add(self, workspace: str, client: LateClient) -> None:
        self._clients[workspace] = client

    def learned(self, workspace: str, user_id: str) -> str | None:
        """Record the workspace's user; the workspace it now shares a budget with, if any."""
        owner = self._users.setdefault(user_id, workspace)
        if owner == workspace or owner not in self._clients:
            return None
        client, shared = self._clients[workspace], self._clients[owner]
        if client.budget is not shared.budget:
            client.budget = shared.budget
            log.info("budget_shared", workspace=workspace, with_workspace=owner)
        return owner


async def watch_workspace(
    deps: CycleDeps, budgets: Budgets | None = None, workspace: str = ""
) -> None:
    """Refresh the workspace's profile names (and tell what changed) when an hour has passed
    since the last look, by this process or another sharing the state file."""
    if not deps.notifier.workspace:
        return  # the implicit workspace: configured without [[workspaces]], as before them
    record: dict[str, Any] = deps.store.read_meta(META_KEY) or {}
    if record.get("profiles") and not deps.notifier.profiles:
        deps.notifier.profiles = dict(record["profiles"])
    if budgets is not None and isinstance(record.get("user"), str):
        budgets.learned(workspace, record["user"])  # known from an earlier look (a restart)
    now = deps.clock()
    if now.timestamp() - float(record.get("checked_at", 0.0)) < REFRESH_EVERY:
        return
    requests = deps.client.requests
    profiles, keys, user = await asyncio.gather(
        _ask(deps.client, "/profiles", {"includeOverLimit": "true"}, parse_profiles),
        _ask(deps.client, "/api-keys", None, parse_keys),
        _ask(deps.client, "/users", None, current_user),
    )
    if budgets is not None and user:
        budgets.learned(workspace, user)
    key = next((k for k in keys or () if deps.client.owns(k)), None)
    try:
        async with deps.store.writing(deps.lock_wait):
            await _tell(deps, record, profiles, key, user, now=now, requests=requests)
    except LateMonitorError as exc:
        log.warning("workspace_watch_not_recorded", error=str(exc))


async def _tell(
    deps: CycleDeps,
    record: dict[str, Any],
    profiles: list[Profile] | None,
    key: KeyInfo | None,
    user: str | None,
    *,
    now: datetime,
    requests: int,
) -> None:
    record = deps.store.read_meta(META_KEY) or record  # again, under the writer
    told, events = review(
        record.get("told", {}),
        key=key,
        profiles=profiles,
        now=now,
        thresholds=deps.policy.token_expiry_warn,
    )
    if profiles is not None:
        names = {p.id: p.name for p in profiles}
        deps.notifier.profiles = names
        record["profiles"] = names
        if unmatched := deps.notifier.unmatched_profile_routes(names.values()):
            log.warning(  # its news goes to the other destinations: its channel hears nothing
                "profile_route_unmatched",
                problem=f"notify.routes.profile: {', '.join(map(repr, unmatched))} names no "
                "profile of this workspace in Late (renamed?); that profile's news goes to the "
                f"other destinations. Profiles: {', '.join(sorted(names.values())) or 'none'}",
            )
    if events:
        await tell_news(
            deps,
            events,
            outcome="workspace_watch",
            started=now,
            requests=deps.client.requests - requests,
        )
    record.update(told=told, checked_at=now.timestamp())
    if user:
        record["user"] = user
    deps.store.write_meta(META_KEY, record)
    log.info(
        "workspace_watched",
        profiles=len(profiles) if profiles is not None else None,
        key_found=key is not None,
        events=[str(e.kind) for e in events],
    )


async def _ask(client: LateClient, path: str, params: dict[str, str] | None, parse: Any) -> Any:
    """One listing, parsed; None when Late does not answer it (an older API, a key that may
    not list keys) within CALL_DEADLINE."""
    try:
        async with asyncio.timeout(CALL_DEADLINE):
            return parse(await client.workspace_json(path, params))
    except (LateApiError, TimeoutError) as exc:
        log.info("workspace_listing_unavailable", path=path, error=str(exc) or "timeout")
        return None
