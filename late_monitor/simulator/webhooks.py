"""Late's webhooks as the simulator keeps and sends them: `/v1/webhooks/settings` and signed
deliveries with retries, a consecutive failure count, and the webhook disabled at 10."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from late_monitor.simulator.accounts import SimAccount

EVENTS = (
    "post.scheduled",
    "post.published",
    "post.failed",
    "post.partial",
    "post.cancelled",
    "post.recycled",
    "account.connected",
    "account.disconnected",
    "message.received",
    "comment.received",
)
MAX_WEBHOOKS = 10
DISABLE_AFTER = 10  # consecutive failed deliveries (the OpenAPI document's Webhook schema)


@dataclass
class SimWebhook:
    id: str
    name: str
    url: str
    secret: str = ""
    events: list[str] = field(default_factory=list)
    is_active: bool = True
    failure_count: int = 0
    last_fired_at: str | None = None

    def shown(self) -> dict[str, Any]:
        """As Late answers: everything but the secret."""
        body: dict[str, Any] = {
            "_id": self.id,
            "name": self.name,
            "url": self.url,
            "events": list(self.events),
            "isActive": self.is_active,
            "failureCount": self.failure_count,
        }
        if self.last_fired_at:
            body["lastFiredAt"] = self.last_fired_at
        return body


@dataclass
class Delivery:
    """One attempt, for tests: what was sent, and how it was answered (0: no answer)."""

    webhook: str
    event: str
    payload_id: str
    status: int
    attempt: int


class Webhooks:
    """The webhooks configured in the simulated Late, and their deliveries."""

    def __init__(self, *, retry_delay: float = 0.5, retries: int = 3) -> None:
        self.hooks: dict[str, SimWebhook] = {}
        self.deliveries: list[Delivery] = []
        self.retry_delay = retry_delay
        self.retries = retries  # Late retries a failed delivery up to 3 times
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._session: aiohttp.ClientSession | None = None

    # -- settings, as /v1/webhooks/settings ---------------------------------------------

    def add(self, *, name: str, url: str, secret: str, events: list[str]) -> SimWebhook:
        hook = SimWebhook(f"wh_{secrets.token_hex(12)}", name, url, secret, list(events))
        self.hooks[hook.id] = hook
        return hook

    async def settings(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"webhooks": [h.shown() for h in self.hooks.values()]})
        if request.method == "DELETE":
            if self.hooks.pop(request.query.get("id", ""), None) is None:
                return web.json_response({"error": "Webhook not found"}, status=404)
            return web.json_response({"success": True})
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Invalid JSON"}, status=400)
        problem = _invalid(body)
        if problem:
            return web.json_response({"error": problem}, status=400)
        if request.method == "POST":
            if len(self.hooks) >= MAX_WEBHOOKS:
                return web.json_response({"error": "Maximum of 10 webhooks reached"}, status=400)
            hook = self.add(
                name=body.get("name", ""),
                url=body.get("url", ""),
                secret=body.get("secret", ""),
                events=body.get("events", []),
            )
        else:  # PUT: only the fields given change
            hook_or_none = self.hooks.get(str(body.get("_id", "")))
            if hook_or_none is None:
                return web.json_response({"error": "Webhook not found"}, status=404)
            hook = hook_or_none
            for key, attribute in (("name", "name"), ("url", "url"), ("secret", "secret")):
                if key in body:
                    setattr(hook, attribute, body[key])
            if "events" in body:
                hook.events = list(body["events"])
            if "isActive" in body:
                hook.is_active = bool(body["isActive"])
                if hook.is_active:
                    hook.failure_count = 0
        return web.json_response({"success": True, "webhook": hook.shown()})

    async def test(self, request: web.Request) -> web.Response:
        """`POST /v1/webhooks/test`: a webhook.test delivery to the webhook `webhookId`."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        hook = self.hooks.get(str(body.get("webhookId", "")))
        if hook is None:
            return web.json_response({"error": "Webhook not found"}, status=404)
        payload = self.payload("webhook.test", message="Test webhook from the simulator")
        ok = await self._deliver(hook, payload)
        return web.json_response({"success": ok})

    # -- deliveries ---------------------------------------------------------------------

    def payload(self, event: str, **data: Any) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {"id": f"evt_{next(self._ids):06d}_{secrets.token_hex(4)}", "event": event, **data,
                "timestamp": stamp}  # fmt: skip

    def emit(self, event: str, **data: Any) -> None:
        """Send `event` to every active webhook subscribed to it, in the background (as
        Late does: the change does not wait for the delivery)."""
        targets = [h for h in self.hooks.values() if h.is_active and event in h.events]
        if not targets:
            return
        payload = self.payload(event, **data)
        loop = asyncio.get_running_loop()
        for hook in targets:
            task = loop.create_task(self._deliver(hook, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def account_changed(self, before: Mapping[str, Any], account: SimAccount) -> None:
        """A change to an account that Late announces: its token died, or it came back."""
        if not before.get("needs_reconnect") and account.needs_reconnect:
            reason = account.issues[0] if account.issues else "Token expired"
            self.emit(
                "account.disconnected",
                account=_account(account, disconnectionType="unintentional", reason=reason),
            )
        elif before.get("needs_reconnect") and not account.needs_reconnect:
            self.emit("account.connected", account=_account(account))

    def account_removed(self, account: SimAccount) -> None:
        self.emit(
            "account.disconnected",
            account=_account(
                account, disconnectionType="intentional", reason="Disconnected by a user"
            ),
        )

    async def _deliver(self, hook: SimWebhook, payload: Mapping[str, Any]) -> bool:
        body = json.dumps(payload).encode()
        signature = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Zernio-Signature": signature}
        for attempt in range(1, self.retries + 2):
            status = 0
            try:
                async with self._client().post(hook.url, data=body, headers=headers) as answer:
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.deliveries.append(
                Delivery(hook.id, str(payload["event"]), str(payload["id"]), status, attempt)
            )
            if 200 <= status < 300:
                hook.failure_count = 0
                hook.last_fired_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                return True
            if attempt <= self.retries:
                await asyncio.sleep(self.retry_delay * attempt)
        hook.failure_count += 1
        if hook.failure_count >= DISABLE_AFTER:
            hook.is_active = False
        return False

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def drain(self) -> None:
        """Until every delivery under way has been answered or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _account(account: SimAccount, **extra: str) -> dict[str, Any]:
    return {
        "accountId": account.account_id,
        "profileId": account.profile_id,
        "platform": account.platform,
        "username": account.username,
        "displayName": account.display_name or account.username.lstrip("@").title(),
        **extra,
    }


def _invalid(body: Any) -> str:
    if not isinstance(body, dict):
        return "Body must be a JSON object"
    if len(str(body.get("name", ""))) > 50:
        return "name: at most 50 characters"
    events = body.get("events", [])
    if not isinstance(events, list) or any(e not in EVENTS for e in events):
        return f"events: each must be one of {', '.join(EVENTS)}"
    url = body.get("url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        return "url: must be an http(s) URL"
    return ""
