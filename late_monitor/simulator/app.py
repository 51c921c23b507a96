"""A faithful fake Late API: the accounts endpoints, Bearer auth, rate-limit headers, faults.

Answers as the vendor's OpenAPI document says the real API does (bodies, error bodies,
`X-RateLimit-*` headers), and lets a test or a scenario change accounts, override the raw JSON of
one account or of a whole body, and inject faults (faults.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from late_monitor.simulator.accounts import (
    CONNECT_PLATFORMS,
    MISSING,
    PLATFORMS,
    Overlay,
    SimAccount,
    SimPost,
    make_accounts,
)
from late_monitor.simulator.faults import Fault, answer, verbatim
from late_monitor.simulator.webhooks import Webhooks

# The model and the faults live in their own modules; demo.py and older tests import them here.
__all__ = [
    "DEFAULT_KEY",
    "MISSING",
    "PLATFORMS",
    "Fault",
    "Overlay",
    "SimAccount",
    "SimPost",
    "Simulator",
    "make_accounts",
]

DEFAULT_KEY = "sk_sim_0123456789abcdef"


class Simulator:
    """The fake Late API; start it with `await sim.start()` and read `sim.base_url`."""

    def __init__(
        self,
        accounts: list[SimAccount] | None = None,
        *,
        api_key: str = DEFAULT_KEY,
        rate_limit: int = 600,
        latency: float = 0.0,
    ) -> None:
        self.accounts: dict[str, SimAccount] = {a.account_id: a for a in (accounts or [])}
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.latency = latency
        self.faults: deque[Fault] = deque()
        self.served: dict[str, Fault] = {}  # path part -> body served until cleared
        self.requests: list[tuple[float, str, int]] = []
        self.authorizations: list[str] = []  # each request's Authorization header, "" if none
        self.queried: list[str] = []  # each request's path and query
        self._started = asyncio.Event()
        self._window = 0
        self._used = 0
        self._runner: web.AppRunner | None = None
        self.posts: list[SimPost] = []  # scheduled posts, served by GET /v1/posts
        self.auth_urls: list[str] = []  # every authUrl GET /v1/connect/{platform} gave
        self.webhooks = Webhooks()
        # The workspace's own listings (/v1/profiles, /v1/api-keys, /v1/users): profile id ->
        # {"name", "isOverLimit"}, and the key in use as /v1/api-keys shows it.
        self.profiles: dict[str, dict[str, Any]] = {}
        self.key_info: dict[str, Any] = {"scope": "full", "permission": "read", "expiresAt": None}
        self.user_id = "6507a1b2c3d4e5f6a7b8c9d0"
        self.base_url = ""
        self.port = 0

    # -- control ------------------------------------------------------------------------

    def set(self, account_id: str, **changes: Any) -> SimAccount:
        """Change an account; a token that dies or comes back is announced to the webhooks
        subscribed (from a running event loop)."""
        account = self.accounts[account_id]
        before = {"needs_reconnect": account.needs_reconnect}
        for key, value in changes.items():
            if not hasattr(account, key):
                raise AttributeError(f"SimAccount has no field {key!r}")
            setattr(account, key, value)
        if self.webhooks.hooks:
            self.webhooks.account_changed(before, account)
        return account

    def remove(self, account_id: str) -> None:
        """A person disconnects the account in Late: gone from the lists, announced."""
        account = self.accounts.pop(account_id, None)
        if account is not None and self.webhooks.hooks:
            self.webhooks.account_removed(account)

    def break_account(self, account_id: str, issue: str = "Token expired") -> SimAccount:
        return self.set(
            account_id,
            status="error",
            needs_reconnect=True,
            can_post=False,
            can_fetch_analytics=False,
            token_valid=False,
            issues=[issue],
        )

    def heal(self, account_id: str) -> SimAccount:
        return self.set(
            account_id,
            status="healthy",
            needs_reconnect=False,
            can_post=True,
            can_fetch_analytics=True,
            token_valid=True,
            issues=[],
            revoked=set(),
        )

    def add_post(
        self, account_ids: list[str] | str, scheduled_for: datetime, *, title: str = "Post"
    ) -> SimPost:
        """A scheduled post to these accounts (one platform target each)."""
        ids = [account_ids] if isinstance(account_ids, str) else list(account_ids)
        post = SimPost(
            post_id=f"post_{len(self.posts):06d}",
            title=title,
            scheduled_for=scheduled_for,
            targets=[
                (self.accounts[a].platform, a) if a in self.accounts else ("", a) for a in ids
            ],
        )
        self.posts.append(post)
        self.posts.sort(key=lambda p: p.scheduled_for)
        return post

    def schedule_posts(
        self, per_account: float, *, within: timedelta, now: datetime | None = None, seed: int = 0
    ) -> int:
        """About `per_account` posts per account at random times over `within` from now
        (the bench's large workspaces)."""
        rng = random.Random(seed)
        now = now or datetime.now(UTC)
        span = within.total_seconds()
        added: list[SimPost] = []
        for index, account in enumerate(self.accounts.values()):
            count = int(per_account) + (rng.random() < per_account % 1)
            for _ in range(count):
                when = now + timedelta(seconds=rng.uniform(60, span))
                added.append(
                    SimPost(
                        post_id=f"post_{index:06d}_{len(added)}",
                        title="Scheduled",
                        scheduled_for=when.replace(microsecond=0),
                        targets=[(account.platform, account.account_id)],
                    )
                )
        self.posts.extend(added)
        self.posts.sort(key=lambda p: p.scheduled_for)
        return len(added)

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    def set_raw(
        self,
        account_id: str,
        entry: Mapping[str, Any] | None = None,
        *,
        detail: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> SimAccount:
        """Serve these raw keys in the account's list `entry` and/or `detail` body.

        They merge over the normal JSON and over earlier set_raw keys (None is served as null,
        MISSING removes the key); `replace=True` serves exactly the given keys instead. Later
        changes to the account's fields still show wherever no raw key hides them.
        """
        account = self.accounts[account_id]
        for overlay, values in ((account.raw, entry), (account.raw_detail, detail)):
            if values is None:
                continue
            if replace:
                overlay.values, overlay.exact = dict(values), True
            else:
                overlay.values.update(values)
        return account

    def clear_raw(self, account_id: str | None = None) -> None:
        """Drop the raw keys of one account, or of every account."""
        for account in (
            self.accounts.values() if account_id is None else [self.accounts[account_id]]
        ):
            account.raw, account.raw_detail = Overlay(), Overlay()

    def serve_body(
        self,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        status: int = 200,
        path: str = "/accounts/health",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer every request whose path contains `path` with `body`, byte for byte and with
        exactly this Content-Type, until clear_body; one-off faults still come first. The
        default path is the list call only (a detail path is /accounts/<id>/health)."""
        data = body.encode() if isinstance(body, str) else body
        self.served[path] = Fault(
            kind="body",
            status=status,
            data=data,
            content_type=content_type,
            headers=dict(headers or {}),
            path=path,
        )

    def clear_body(self, path: str | None = None) -> None:
        if path is None:
            self.served.clear()
        else:
            self.served.pop(path, None)

    async def started(self, count: int) -> None:
        """Until `count` requests have arrived (answered or not): a test's way to know that
        a request is in flight. Bound it with asyncio.timeout."""
        while len(self.authorizations) < count:
            self._started.clear()
            await self._started.wait()

    def urls(self, path_part: str = "") -> list[str]:
        """The path and query of every request whose path contains `path_part`."""
        return [url for url in self.queried if path_part in url.split("?", 1)[0]]

    def count(self, path_part: str = "") -> int:
        return sum(1 for _, path, _ in self.requests if path_part in path)

    # -- server -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/accounts/health", self._health)
        app.router.add_get("/api/v1/accounts/{account_id}/health", self._detail)
        app.router.add_get("/api/v1/accounts", self._list)
        app.router.add_get("/api/v1/posts", self._posts)
        app.router.add_get("/api/v1/connect/{platform}", self._connect)
        # Where an authUrl leads: "the user completed OAuth", the account reconnects.
        app.router.add_get("/_sim/oauth/{platform}", self._oauth)
        for method in ("GET", "POST", "PUT", "DELETE"):
            app.router.add_route(method, "/api/v1/webhooks/settings", self._webhook_settings)
        app.router.add_post("/api/v1/webhooks/test", self._webhook_test)
        app.router.add_get("/api/v1/profiles", self._profiles)
        app.router.add_get("/api/v1/api-keys", self._api_keys)
        app.router.add_get("/api/v1/users", self._users)
        # Control endpoints for benchmarks and demos driving a simulator in another process.
        app.router.add_post("/_sim/churn", self._churn)
        app.router.add_get("/_sim/stats", self._stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://{host}:{self.port}/api/v1"
        return self.base_url

    async def stop(self) -> None:
        await self.webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def churn(self, fraction: float, rng: random.Random) -> list[str]:
        """Move `fraction` of the accounts to another status (healthy <-> warning/error)."""
        ids = rng.sample(sorted(self.accounts), round(len(self.accounts) * fraction))
        for account_id in ids:
            account = self.accounts[account_id]
            if account.status == "healthy":
                account.status = rng.choice(["warning", "error"])
                account.issues = ["Simulated problem"]
            else:
                account.status, account.issues = "healthy", []
        return ids

    async def _churn(self, request: web.Request) -> web.Response:
        fraction = float(request.query.get("fraction", "0.01"))
        rng = random.Random(request.query.get("seed", "0"))
        changed = self.churn(fraction, rng)
        return web.json_response({"changed": len(changed)})

    async def _stats(self, request: web.Request) -> web.Response:
        by_status: dict[str, int] = {}
        for _, _, status in self.requests:
            by_status[str(status)] = by_status.get(str(status), 0) + 1
        return web.json_response(
            {"requests": len(self.requests), "by_status": by_status, "posts": self.count("/posts")}
        )

    def _rate_headers(self) -> dict[str, str]:
        window = math.floor(time.time() / 60)
        if window != self._window:
            self._window, self._used = window, 0
        self._used += 1
        remaining = max(self.rate_limit - self._used, 0)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str((window + 1) * 60),
        }

    async def _gate(self, request: web.Request) -> tuple[web.StreamResponse | None, dict[str, str]]:
        """Auth, rate limit, latency and injected faults, before the real answer."""
        headers = self._rate_headers()
        self.queried.append(request.path_qs)
        self.authorizations.append(request.headers.get("Authorization", ""))
        self._started.set()
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._used > self.rate_limit:
            self.requests.append((time.time(), request.path, 429))
            retry = max(int(headers["X-RateLimit-Reset"]) - int(time.time()), 1)
            return web.json_response(
                {"error": "Rate limit exceeded"},
                status=429,
                headers={**headers, "Retry-After": str(retry)},
            ), headers
        fault = self._take_fault(request.path)
        if fault is not None:
            self.requests.append((time.time(), request.path, fault.status))
            return await answer(fault, request, headers, self._health_body), headers
        served = next((f for part, f in self.served.items() if part in request.path), None)
        if served is not None:
            self.requests.append((time.time(), request.path, served.status))
            return verbatim(served, headers), headers
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.requests.append((time.time(), request.path, 401))
            return web.json_response(
                {"error": "Unauthorized"}, status=401, headers=headers
            ), headers
        return None, headers

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path in path:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _health_body(self, query: Any = None) -> bytes:
        query = query or {}
        # Filters and counts read the served entries, raw overrides included.
        items = [
            item
            for item in (a.summary() for a in self.accounts.values())
            if all(
                not query.get(key) or item.get(key) == query[key]
                for key in ("profileId", "platform", "status")
            )
        ]
        summary = {
            "total": len(items),
            "healthy": sum(1 for i in items if i.get("status") == "healthy"),
            "warning": sum(1 for i in items if i.get("status") == "warning"),
            "error": sum(1 for i in items if i.get("status") == "error"),
            "needsReconnect": sum(1 for i in items if i.get("needsReconnect") is True),
        }
        return json.dumps({"summary": summary, "accounts": items}).encode()

    async def _health(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        self.requests.append((time.time(), request.path, 200))
        return web.Response(
            body=self._health_body(request.query),
            content_type="application/json",
            headers=headers,
        )

    async def _detail(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        account = self.accounts.get(request.match_info["account_id"])
        if account is None:
            self.requests.append((time.time(), request.path, 404))
            return web.json_response({"error": "Not found"}, status=404, headers=headers)
        self.requests.append((time.time(), request.path, 200))
        return web.json_response(account.detail(datetime.now(UTC)), headers=headers)

    async def _posts(self, request: web.Request) -> web.StreamResponse:
        """`GET /v1/posts` as the OpenAPI document has it: status, platform, profileId,
        dateFrom/dateTo (dates, both days included), sortBy, page and limit (1-100)."""
        early, headers = await self._gate(request)
        if early is not None:
            return early
        query = request.query
        try:
            page = int(query.get("page", "1"))
            limit = int(query.get("limit", "10"))
            day_from = _day(query.get("dateFrom"))
            day_to = _day(query.get("dateTo"))
        except ValueError:
            self.requests.append((time.time(), request.path, 400))
            return web.json_response({"error": "Invalid query"}, status=400, headers=headers)
        if page < 1 or not 1 <= limit <= 100:
            self.requests.append((time.time(), request.path, 400))
            return web.json_response(
                {"error": "page must be >= 1 and limit 1-100"}, status=400, headers=headers
            )
        status, platform = query.get("status"), query.get("platform")
        profile = query.get("profileId")
        chosen = [
            post
            for post in self.posts
            if (not status or status == "scheduled")
            and (day_from is None or post.scheduled_for.date() >= day_from)
            and (day_to is None or post.scheduled_for.date() <= day_to)
            and (not platform or any(p == platform for p, _ in post.targets))
            and (
                not profile
                or any(
                    a in self.accounts and self.accounts[a].profile_id == profile
                    for _, a in post.targets
                )
            )
        ]
        if query.get("sortBy", "scheduled-desc") == "scheduled-desc":
            chosen.reverse()
        total = len(chosen)
        items = [post.json(self.accounts) for post in chosen[(page - 1) * limit : page * limit]]
        self.requests.append((time.time(), request.path, 200))
        return web.json_response(
            {
                "posts": items,
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": total,
                    "pages": max(math.ceil(total / limit), 1),
                },
            },
            headers=headers,
        )

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        """`GET /v1/connect/{platform}?profileId=...`: an OAuth authUrl (and its state)."""
        early, headers = await self._gate(request)
        if early is not None:
            return early
        platform = request.match_info["platform"]
        profile = request.query.get("profileId", "")
        if platform not in CONNECT_PLATFORMS or not profile:
            self.requests.append((time.time(), request.path, 400))
            return web.json_response(
                {"error": "Missing/invalid parameters"}, status=400, headers=headers
            )
        self.requests.append((time.time(), request.path, 200))
        state = f"sim-{profile}-{int(time.time())}"
        origin = self.base_url.rsplit("/api/", 1)[0]
        url = f"{origin}/_sim/oauth/{platform}?state={state}&profileId={profile}"
        self.auth_urls.append(url)
        return web.json_response({"authUrl": url, "state": state}, headers=headers)

    async def _oauth(self, request: web.Request) -> web.StreamResponse:
        platform = request.match_info["platform"]
        profile = request.query.get("profileId", "")
        healed = [
            a.account_id
            for a in self.accounts.values()
            if a.platform == platform and a.profile_id == profile and a.needs_reconnect
        ]
        for account_id in healed:
            self.heal(account_id)
        return web.Response(text=f"connected {platform}: {', '.join(healed) or 'nothing'}")

    async def _webhook_settings(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        answer = await self.webhooks.settings(request)
        self.requests.append((time.time(), request.path, answer.status))
        answer.headers.update(headers)
        return answer

    async def _webhook_test(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        answer = await self.webhooks.test(request)
        self.requests.append((time.time(), request.path, answer.status))
        answer.headers.update(headers)
        return answer

    async def _profiles(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        self.requests.append((time.time(), request.path, 200))
        over = request.query.get("includeOverLimit") == "true"
        profiles = [
            {"_id": pid, "name": p.get("name", pid), "color": "#ffeda0", "isDefault": False}
            | ({"isOverLimit": bool(p.get("isOverLimit"))} if over else {})
            for pid, p in self.profiles.items()
            if over or not p.get("isOverLimit")
        ]
        return web.json_response({"profiles": profiles}, headers=headers)

    async def _api_keys(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        self.requests.append((time.time(), request.path, 200))
        info = self.key_info
        ours = {
            "id": "6507a1b2c3d4e5f6a7b8c9d1",
            "name": info.get("name", "late-monitor"),
            "keyPreview": f"{self.api_key[:11]}...{self.api_key[-8:]}",
            "expiresAt": info.get("expiresAt"),
            "createdAt": "2024-01-15T10:30:00Z",
            "scope": info.get("scope", "full"),
            "profileIds": [
                {"_id": pid, "name": self.profiles.get(pid, {}).get("name", pid), "color": "#fff"}
                for pid in info.get("profileIds", [])
            ],
            "permission": info.get("permission", "read-write"),
        }
        other: dict[str, Any] = {  # another key of the same user, never ours
            "id": "6507a1b2c3d4e5f6a7b8c9d2",
            "name": "Production",
            "keyPreview": "sk_99999999...99999999",
            "expiresAt": None,
            "createdAt": "2024-01-15T10:30:00Z",
            "scope": "full",
            "profileIds": [],
            "permission": "read-write",
        }
        return web.json_response({"apiKeys": [other, ours]}, headers=headers)

    async def _users(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        self.requests.append((time.time(), request.path, 200))
        user = {"_id": self.user_id, "name": "Owner", "email": "owner@example.com"}
        return web.json_response(
            {"currentUserId": self.user_id, "users": [user | {"role": "owner", "isRoot": True}]},
            headers=headers,
        )

    async def _list(self, request: web.Request) -> web.StreamResponse:
        early, headers = await self._gate(request)
        if early is not None:
            return early
        self.requests.append((time.time(), request.path, 200))
        accounts = [
            {
                "_id": a.account_id,
                "platform": a.platform,
                "profileId": {"_id": a.profile_id, "name": a.profile_id, "slug": a.profile_id},
                "username": a.username,
                "displayName": a.display_name or a.username.lstrip("@").title(),
                "isActive": True,
            }
            for a in self.accounts.values()
        ]
        return web.json_response(
            {"accounts": accounts, "hasAnalyticsAccess": False}, headers=headers
        )


def _day(value: str | None) -> date | None:
    """A `format: date` query value; a full date-time is read for its day."""
    return date.fromisoformat(value[:10]) if value else None
