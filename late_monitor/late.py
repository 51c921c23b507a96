"""The Late API client: one aiohttp session, retries with jitter, and a request budget.

Every failure leaves here as a `LateApiError`; aiohttp's exceptions never reach the caller.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import structlog

from late_monitor import __version__
from late_monitor.errors import (
    ApiUnavailable,
    AuthRejected,
    BadPayload,
    LateApiError,
    RateLimited,
    Redirected,
)
from late_monitor.health_list import HealthParser, QuietIndex
from late_monitor.impact import PAGE_SIZE, Page, parse_page
from late_monitor.models import Body, Detail, Snapshot, bad_payload, parse_detail
from late_monitor.workspace_facts import KeyInfo

if TYPE_CHECKING:  # the webhook calls import it: a poll never needs it (~10 ms at start)
    from late_monitor.webhooks import LateWebhook

log = structlog.get_logger("late_monitor.late")

Sleep = Callable[[float], Awaitable[None]]
MAX_WAIT = 120.0  # longest we wait on one 429 before giving the cycle up
MAX_BODY = 128 << 20  # 50,000 accounts are ~15 MB
MAX_REDIRECTS = 3  # within the base URL's own origin
SMALL_BODY = 16 << 10  # read whole at once, if not compressed: no chunk loop (500 a poll)
_TOKENS = re.compile(r"(?i)(bearer\s+)[\w.~+/=-]+|\bsk_[\w-]{4,}")


class RequestBudget:
    """A token bucket for our own limit, plus pacing on the server's X-RateLimit-* headers.

    The bucket (a sixth of the minute's allowance, refilled at the full rate) keeps bursts
    short; a log of the last minute's sends makes sure no 60-second window ever holds more
    than `per_minute` requests, so a long sweep runs at the budget's exact pace. The
    server's Remaining count, decremented locally for requests in flight, stops us before a
    429 rather than after.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute / 6.0)
        self.rate = per_minute / 60.0
        # what accrues in about a second (at least 8), within the bucket: fewer wake-ups
        self.batch = max(1.0, min(max(8.0, self.rate), self.capacity))
        self._sent: deque[float] = deque()
        self._tokens = self.capacity
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()
        self._remaining: int | None = None
        self._reset_at = 0.0
        self._blocked_until = 0.0

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                server_wait = self._server_wait()
                if server_wait > 0:
                    await self._pause(server_wait)
                    continue
                while self._sent and self._sent[0] + 60 <= now:  # as the wait below
                    self._sent.popleft()
                if len(self._sent) >= self.per_minute:
                    await self._pause(self._sent[0] + 60 - now)
                    continue
                if self._tokens >= 1 - 1e-9:  # float refills may land a hair below 1
                    self._tokens = max(self._tokens - 1, 0.0)
                    self._sent.append(now)
                    if self._remaining is not None:
                        self._remaining -= 1
                    return
                # Out of tokens: wait until a batch has accrued, so that the waiting requests
                # go out together and share the event loop's wake-ups (one by one, each paced
                # request cost ~3x the CPU here; in batches of 8 ~10% more than in batches of
                # 20, at 1,200/min). The rate is unchanged.
                await self._pause((self.batch - self._tokens) / self.rate)

    def _server_wait(self) -> float:
        now = self._wall()
        wait = self._blocked_until - now
        if self._remaining is not None and self._remaining <= 0:
            if self._reset_at > now:
                wait = max(wait, self._reset_at - now)
            else:
                self._remaining = None  # a new window has begun
        return min(max(wait, 0.0), MAX_WAIT)

    async def _pause(self, seconds: float) -> None:
        await self._sleep(seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the server's view of our allowance from a response's headers."""
        remaining = _int_header(headers, "X-RateLimit-Remaining")
        reset = _int_header(headers, "X-RateLimit-Reset")
        if remaining is None:
            return
        if reset is not None and reset > self._reset_at:
            self._reset_at = float(reset)
            self._remaining = remaining
        elif self._remaining is None or remaining < self._remaining:
            self._remaining = remaining
        if reset is not None:
            self._reset_at = max(self._reset_at, float(reset))

    def pause_until(self, wall_time: float) -> None:
        """After a 429: send nothing before `wall_time` (from Retry-After or the reset time)."""
        self._blocked_until = max(self._blocked_until, wall_time)

    @property
    def remaining(self) -> int | None:
        return self._remaining


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class LateClient:
    """`GET /accounts/health` and `GET /accounts/{id}/health`, with retries and a budget."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float = 30.0,
        max_requests_per_minute: int = 30,
        attempts: int = 3,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        max_body: int = MAX_BODY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._api_key = api_key
        self._max_body = max_body
        self.base_url = base_url.rstrip("/")
        self._home = _origin(self.base_url)  # where redirects may lead
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self.budget = RequestBudget(max_requests_per_minute, sleep=sleep)
        self._attempts = attempts
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._health = HealthParser()
        self.requests = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={
                    "Authorization": f"Bearer {self._api_key}",
                    "Accept": "application/json",
                    "User-Agent": f"late-monitor/{__version__}",
                },
                timeout=self._timeout,
                raise_for_status=False,
            )
        return self._session

    async def health(
        self,
        *,
        profile_id: str = "",
        platforms: tuple[str, ...] = (),
        quiet: QuietIndex | None = None,
    ) -> Snapshot:
        """Every account's health. Several platforms are filtered here, in one request; the
        entries of `quiet` (the store's quiet accounts) are left unparsed."""
        params = {}
        if profile_id:
            params["profileId"] = profile_id
        if len(platforms) == 1:
            params["platform"] = platforms[0]
        status, body = await self._get("/accounts/health", params)
        try:
            return self._health.parse(
                body, status=status, platforms=frozenset(platforms), quiet=quiet
            )
        except BadPayload as exc:
            raise self._masked_error(exc) from None

    async def account_health(self, account_id: str) -> Detail:
        """One account's detail: token status, scopes, recommendations."""
        status, body = await self._get(f"/accounts/{quote(account_id, safe='')}/health", {})
        try:
            return parse_detail(body, status=status)
        except BadPayload as exc:
            raise self._masked_error(exc) from None

    async def scheduled_posts(
        self, *, date_from: str, date_to: str, page: int, profile_id: str = "", platform: str = ""
    ) -> Page:
        """One page of `GET /posts?status=scheduled`, soonest first."""
        params = {
            "status": "scheduled",
            "dateFrom": date_from,
            "dateTo": date_to,
            "page": str(page),
            "limit": str(PAGE_SIZE),
            "sortBy": "scheduled-asc",
        }
        if profile_id:
            params["profileId"] = profile_id
        if platform:
            params["platform"] = platform
        status, body = await self._get("/posts", params)
        try:
            return parse_page(body, status=status)
        except BadPayload as exc:
            raise self._masked_error(exc) from None

    async def connect_url(self, platform: str, profile_id: str) -> str:
        """A fresh OAuth `authUrl` to reconnect an account (it expires within minutes)."""
        path = f"/connect/{quote(platform, safe='')}"
        status, body = await self._get(path, {"profileId": profile_id})
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        url = data.get("authUrl") if isinstance(data, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http"):
            raise self._masked_error(bad_payload(body, status, "no authUrl"))
        return url

    async def webhooks(self) -> list[LateWebhook]:
        """The webhooks configured for the key's user (`GET /webhooks/settings`)."""
        from late_monitor.webhooks import parse_webhook

        status, body = await self._get("/webhooks/settings", {})
        payload = _json_object(body, status, "webhooks")
        return [hook for raw in payload["webhooks"] if (hook := parse_webhook(raw))]

    async def save_webhook(self, settings: Mapping[str, object]) -> LateWebhook:
        """Create a webhook (POST), or update one when `settings` has its `_id` (PUT)."""
        from late_monitor.webhooks import parse_webhook

        method = "PUT" if "_id" in settings else "POST"
        status, body = await self._call(method, "/webhooks/settings", {}, settings)
        hook = parse_webhook(_json_object(body, status, "webhook")["webhook"])
        if hook is None:
            raise self._masked_error(bad_payload(body, status, "webhook without an _id"))
        return hook

    async def workspace_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON of one of the workspace's own listings (`/profiles`, `/api-keys`,
        `/users`), read by workspace_facts; any answer but a JSON object is an error."""
        status, body = await self._get(path, params or {})
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._masked_error(bad_payload(body, status, "not a JSON object"))
        return data

    def owns(self, key: KeyInfo) -> bool:
        """Whether `key`, as /api-keys lists it, is the one this client sends."""
        return key.matches(self._api_key)

    async def _get(self, path: str, params: Mapping[str, str]) -> tuple[int, Body]:
        return await self._call("GET", path, params)

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        payload: Mapping[str, object] | None = None,
    ) -> tuple[int, Body]:
        """One request with retries; a POST, which could act twice, is never retried."""
        url = self.base_url + path
        what = f"{method} {path}"
        attempts = 1 if method == "POST" else self._attempts
        last: LateApiError | None = None
        for attempt in range(1, attempts + 1):
            await self.budget.acquire()
            self.requests += 1
            try:
                status, headers, body = await self._fetch(method, url, what, params, payload)
            except TimeoutError:
                last = ApiUnavailable(f"{what}: no answer within {self._timeout.total:g}s")
            except aiohttp.ClientError as exc:
                last = ApiUnavailable(f"{what}: {_describe_client_error(exc)}")
            else:
                if 200 <= status < 300:
                    return status, body
                last = _error_for(status, self._masked(body), what)
                if isinstance(last, RateLimited):
                    wait = _retry_after(headers)
                    if wait > MAX_WAIT or attempt == attempts:
                        raise RateLimited(f"{what}: rate limited for {wait:.0f}s more", status=429)
                    self.budget.pause_until(time.time() + wait)
                    log.warning("late_rate_limited", path=path, wait_s=round(wait, 2))
                    continue
                if not isinstance(last, ApiUnavailable):
                    raise last
            if attempt < attempts:
                delay = random.uniform(
                    0, min(self._backoff_cap, self._backoff * 2 ** (attempt - 1))
                )
                log.info(
                    "late_request_retried",
                    path=path,
                    attempt=attempt,
                    error=str(last),
                    delay_s=round(delay, 2),
                )
                await self._sleep(delay)
        assert last is not None
        try:
            raise last
        finally:
            del last  # else this frame and the error's traceback hold each other (a cycle)

    async def _fetch(
        self,
        method: str,
        url: str,
        what: str,
        params: Mapping[str, str],
        payload: Mapping[str, object] | None,
    ) -> tuple[int, Mapping[str, str], Body]:
        """One request. Redirects are followed only within the base URL's own origin: the
        key is never sent elsewhere, and a vendor that moved says where to point base_url."""
        for _ in range(MAX_REDIRECTS + 1):
            async with self._get_session().request(
                method, url, params=params, json=payload, allow_redirects=False
            ) as response:
                self.budget.observe(response.headers)
                if response.status not in (301, 302, 303, 307, 308):
                    body = await _read(response, limit=self._max_body)
                    return response.status, response.headers, body
                target = urljoin(str(response.url), response.headers.get("Location", ""))
            if _origin(target) != self._home:
                path = what.partition(" ")[2]
                raise Redirected(
                    f"{what}: HTTP {response.status} redirect to {_plain(target)}; "
                    f"late-monitor does not send the API key to another host: set "
                    f"late.base_url to {_plain(_base_of(target, path))!r} if that is Late",
                    status=response.status,
                )
            url, params = target, {}
        raise Redirected(f"{what}: more than {MAX_REDIRECTS} redirects", status=310)

    def _masked_error(self, exc: BadPayload) -> BadPayload:
        """The error of a body we could not read quotes its start, which a proxy or a
        debugging endpoint may have filled with our own Authorization header."""
        return BadPayload(self._masked(str(exc).encode()).decode(), status=exc.status)

    def _masked(self, body: Body) -> Body:
        """An error body with the API key and anything shaped like a token blanked out: it
        may end up in a message and the state file (a 401 page echoing the header)."""
        text = body.decode("utf-8", "replace")
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _TOKENS.sub(lambda m: (m.group(1) or "") + "***", text).encode()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _plain(url: str) -> str:
    """A URL without its query and credentials, to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _base_of(target: str, path: str) -> str:
    plain = _plain(target)
    return plain[: -len(path)] if plain.endswith(path) else plain


async def _read(response: aiohttp.ClientResponse, *, limit: int) -> Body:
    """The whole body, each chunk appended as it comes (`read()` keeps every chunk and then
    joins them, holding the body twice: 30 MB at 50,000 accounts). Nothing is allocated
    from what Content-Length claims, and a body over `limit` bytes is refused."""
    claimed = response.content_length
    if claimed is not None and claimed > limit:
        raise BadPayload(
            f"HTTP {response.status}: Late announced a body of {claimed / 1e6:.0f} MB, over "
            f"late.max_body_mb ({limit >> 20} MB)",
            status=response.status,
        )
    if claimed is not None and claimed <= SMALL_BODY and not _encoded(response):
        return await response.read()  # a detail, as sent: read in one go
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise BadPayload(
                f"HTTP {response.status}: the body is over late.max_body_mb ({limit >> 20} MB)",
                status=response.status,
            )
    return body


def _encoded(response: aiohttp.ClientResponse) -> bool:
    """Whether the body is compressed: a few KB of it may decode to gigabytes (Brotli), so
    it is read chunk by chunk, held to the limit as it decodes."""
    return response.headers.get("Content-Encoding", "identity").strip().lower() != "identity"


def _retry_after(headers: Mapping[str, str]) -> float:
    seconds = _int_header(headers, "Retry-After")
    if seconds is not None:
        return max(0.0, float(seconds))
    reset = _int_header(headers, "X-RateLimit-Reset")
    if reset is not None:
        return max(0.0, reset - time.time())
    return 1.0


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or 'refused'})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short"
    return type(exc).__name__


def _error_for(status: int, body: Body, what: str) -> LateApiError:
    message = _error_message(body)
    text = f"{what}: HTTP {status}" + (f" {message}" if message else "")
    if status in (401, 403):
        return AuthRejected(text, status=status)
    if status == 429:
        return RateLimited(text, status=status)
    if status >= 500:
        return ApiUnavailable(text, status=status)
    if status == 404 or (message and not what.startswith("GET ")):
        return LateApiError(text, status=status)  # Late refused a change and said why
    return bad_payload(body, status, "unexpected status")


def _json_object(body: Body, status: int, key: str) -> dict[str, Any]:
    """A JSON object that holds `key` (a list for "webhooks", an object otherwise)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    kind = list if key.endswith("s") else dict
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise bad_payload(body, status, f"no {key!r} in the answer")
    return data


def _error_message(body: Body) -> str:
    """The `error` (or `message`) of Late's JSON error body, if it is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return ""
