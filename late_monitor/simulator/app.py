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
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from late_monitor.simulator.accounts import MISSING, PLATFORMS, Overlay, SimAccount, make_accounts
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
        self._started = asyncio.Event()
        self._window = 0
        self._used = 0
        self._runner: web.AppRunner | None = None
        self.webhooks = Webhooks()
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

    def count(self, path_part: str = "") -> int:
        return sum(1 for _, path, _ in self.requests if path_part in path)

    # -- server -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/accounts/health", self._health)
        app.router.add_get("/api/v1/accounts/{account_id}/health", self._detail)
        app.router.add_get("/api/v1/accounts", self._list)
        for method in ("GET", "POST", "PUT", "DELETE"):
            app.router.add_route(method, "/api/v1/webhooks/settings", self._webhook_settings)
        app.router.add_post("/api/v1/webhooks/test", self._webhook_test)
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
        return web.json_response({"requests": len(self.requests), "by_status": by_status})

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
