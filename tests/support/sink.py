"""A real Apprise `json://` destination on loopback that records what it receives."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sink:
    """POSTs land in `received`; set `fail_status` to answer with an error, or stop() it.

    `max_body`: answer 400 to a message longer than this, as Discord does past 2,000
    characters. `slow`: take the message, then answer this many seconds later (a destination
    slower than the sender's read timeout). `hang`: wait before reading anything. `posts`
    counts every POST, whatever the answer.
    """

    received: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None
    hang: float = 0.0
    slow: float = 0.0
    max_body: int | None = None
    posts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="sink says no")
        body = await request.json()
        if self.max_body is not None and len(body["message"]) > self.max_body:
            return web.Response(status=400, text="message too long")
        self.received.append({**body, "path": request.path, "at": time.monotonic()})
        if self.slow:
            await asyncio.sleep(self.slow)
        return web.Response(text="ok")

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, token: str = "SINKTOKEN0001") -> str:  # noqa: S107 (a fake test token)
        return f"json://127.0.0.1:{self.port}/hook/{token}"

    def titles(self) -> list[str]:
        return [m["title"] for m in self.received]
