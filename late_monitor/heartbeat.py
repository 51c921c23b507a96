"""The dead-man's switch: after each cycle, tell an outside service that late-monitor is alive.

A plain http(s) URL is pinged as healthchecks.io and Uptime Kuma push monitors expect (a GET);
any other URL is an Apprise destination and gets a short message. What a failed cycle does is
configurable: ping the failure URL (`<url>/fail`, or `fail_url`), or stay silent and let the
missing ping raise the alarm. A heartbeat that cannot be delivered is logged, never fails the
cycle.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

from late_monitor.errors import DeliveryError
from late_monitor.notify import Notifier

log = structlog.get_logger("late_monitor.heartbeat")

OnFailure = Literal["fail", "skip"]


def fail_url_of(url: str) -> str:
    """healthchecks.io's failure endpoint: the ping URL's path plus `/fail`, query kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


class Heartbeat:
    def __init__(
        self,
        *,
        url: str,
        on_failure: OnFailure = "fail",
        fail_url: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.on_failure = on_failure
        self.fail_url = fail_url
        self.timeout = timeout
        self._notifier: Notifier | None = None
        self._notifier_url = ""
        self.sent = 0  # pings that were accepted (for tests and metrics)

    @staticmethod
    def _plain(url: str) -> bool:
        return urlsplit(url).scheme.lower() in ("http", "https")

    async def beat(self, *, ok: bool, note: str = "") -> bool:
        """Ping after a cycle; True when a ping was sent and accepted."""
        if not ok and self.on_failure == "skip" and not self.fail_url:
            return False
        url = self.url if ok else (self.fail_url or self.url)
        try:
            if self._plain(url):
                if not ok and not self.fail_url:
                    url = fail_url_of(url)
                await self._get(url)
            else:
                await self._apprise(url, ok=ok, note=note)
        except DeliveryError as exc:
            log.warning("heartbeat_failed", ok=ok, error=str(exc))
            return False
        self.sent += 1
        log.debug("heartbeat_sent", ok=ok)
        return True

    async def _get(self, url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=True) as response,
            ):
                if response.status >= 400:
                    raise DeliveryError(f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None

    async def _apprise(self, url: str, *, ok: bool, note: str) -> None:
        if self._notifier is None or self._notifier_url != url:
            self._notifier = Notifier(urls=[url], timeout=self.timeout)
            self._notifier_url = url
        try:
            await self._notifier.load()
        except Exception as exc:  # a bad URL: said in the log, the cycle goes on
            raise DeliveryError(f"cannot load the heartbeat destination: {exc}") from None
        key = self._notifier.destinations[0].key
        title = "late-monitor is alive" if ok else "late-monitor: a cycle failed"
        body = "the last cycle completed" if ok else f"the last cycle failed: {note}"
        error = await self._notifier.send(
            key, title=title, body=body, notify_type="success" if ok else "failure"
        )
        if error is not None:
            raise DeliveryError(error)
