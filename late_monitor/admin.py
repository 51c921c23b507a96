"""The status page's routes: `GET /` and its POST actions (silence, ack, expire), behind
`[http] admin_token`.

An action is allowed with `Authorization: Bearer <token>`, or with the session cookie that the
login form sets plus the form's CSRF field. The cookie is signed with a key derived from the
token (no server-side sessions: it survives a restart, and changing the token logs everyone
out); it is HttpOnly and SameSite=Strict, and a POST whose Origin is another site is refused.
Without a token the page is read-only and every action answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web

from late_monitor.config import parse_duration
from late_monitor.control import Refused, add_ack, add_silence, expire_silence
from late_monitor.page import CSP, Viewer, render_page
from late_monitor.status import status_report
from late_monitor.storage import StateStore as Store

log = structlog.get_logger("late_monitor.admin")

COOKIE = "late_monitor_session"
SESSION_FOR = 12 * 3600.0
_MATCHERS = ("account", "platform", "profile", "kind")


class Guard:
    """Checks the admin token, signs and verifies session cookies and CSRF tokens."""

    def __init__(self, token: str, clock: Callable[[], datetime]) -> None:
        self.token = token
        self.clock = clock
        self._key = hashlib.sha256(b"late-monitor admin session\0" + token.encode()).digest()

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def token_ok(self, given: str) -> bool:
        return self.enabled and hmac.compare_digest(given.encode(), self.token.encode())

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        payload = f"{int(self.clock().timestamp())}.{secrets.token_hex(16)}"
        return f"{payload}.{self._sign('session:' + payload)}"

    def session_ok(self, cookie: str | None) -> bool:
        if not self.enabled or not cookie or cookie.count(".") != 2:
            return False
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign("session:" + payload)):
            return False
        issued = payload.split(".", 1)[0]
        age = self.clock().timestamp() - int(issued) if issued.isdigit() else SESSION_FOR
        return 0 <= age < SESSION_FOR

    def csrf(self, cookie: str) -> str:
        return self._sign("csrf:" + cookie)[:32]

    def bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None


def add_routes(
    app: web.Application,
    *,
    store: Callable[[], Store],
    clock: Callable[[], datetime],
    admin_token: str,
    workspaces: Callable[[], Sequence[str]] = tuple,
) -> None:
    """`workspaces` names the [[workspaces]] (none: the one implicit workspace); the page
    shows one at a time (`?workspace=NAME`, the first by default) and its forms act on it."""
    guard = Guard(admin_token, clock)

    def chosen(name: str) -> str:
        names = list(workspaces())
        if not names:
            return ""
        if not name:
            return names[0]
        found = next((n for n in names if n.casefold() == name.casefold()), None)
        if found is None:  # names compare as on the command line: case aside
            raise web.HTTPNotFound(text=f"no workspace named {name!r}")
        return found

    def viewer(request: web.Request, message: str = "", error: bool = False) -> Viewer:
        cookie = request.cookies.get(COOKIE)
        logged_in = guard.session_ok(cookie)
        return Viewer(
            actions_enabled=guard.enabled,
            logged_in=logged_in,
            csrf=guard.csrf(cookie) if logged_in and cookie else "",
            message=message,
            error=error,
            workspace=chosen(request.query.get("workspace", "")),
            workspaces=tuple(workspaces()),
        )

    def scoped(name: str) -> Store:
        workspace = chosen(name)
        return store().scoped(workspace) if workspace else store()

    def page(request: web.Request, *, status: int = 200, **kwargs: Any) -> web.Response:
        report = status_report(scoped(request.query.get("workspace", "")), now=clock())
        return web.Response(
            text=render_page(report, viewer(request, **kwargs)),
            status=status,
            content_type="text/html",
            headers=_HEADERS,
        )

    async def index(request: web.Request) -> web.Response:
        message = request.query.get("done", "")[:300]
        return page(request, message=message)

    async def login(request: web.Request) -> web.Response:
        if not guard.enabled:
            return _refuse(request, 403, "actions are off: no [http] admin_token is set")
        if _foreign(request):
            return _refuse(request, 403, "cross-site request refused")
        form = await request.post()
        if not guard.token_ok(str(form.get("token", ""))):
            log.warning("admin_login_refused", remote=request.remote)
            return page(request, status=403, message="wrong admin token", error=True)
        response = web.HTTPSeeOther("/?done=" + quote("logged in"))
        log.info("admin_logged_in", remote=request.remote)
        response.set_cookie(
            COOKIE,
            guard.new_session(),
            max_age=int(SESSION_FOR),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def authorised(request: web.Request) -> tuple[Mapping[str, str], str] | web.Response:
        """The form fields and who acts, or the refusal."""
        if not guard.enabled:
            return _refuse(request, 403, "actions are off: no [http] admin_token is set")
        form = {k: str(v) for k, v in (await request.post()).items()}
        bearer = guard.bearer(request)
        if bearer is not None:
            if not guard.token_ok(bearer):
                log.warning("admin_action_refused", remote=request.remote, why="bad bearer")
                return _refuse(request, 401, "wrong admin token", bearer=True)
            return form, form.get("by") or "admin token"
        cookie = request.cookies.get(COOKIE)
        if not guard.session_ok(cookie) or cookie is None:
            return _refuse(request, 401, "log in first (or send Authorization: Bearer)")
        if _foreign(request) or not hmac.compare_digest(form.get("csrf", ""), guard.csrf(cookie)):
            log.warning("admin_action_refused", remote=request.remote, why="csrf")
            return _refuse(request, 403, "stale or forged form: reload the page and try again")
        return form, form.get("by") or "status page"

    def done(
        request: web.Request, text: str, data: dict[str, Any], workspace: str = ""
    ) -> web.Response:
        if guard.bearer(request) is not None:
            return web.json_response({"ok": True, "message": text, **data})
        back = f"/?workspace={quote(workspace)}&done=" if workspace else "/?done="
        raise web.HTTPSeeOther(back + quote(text))

    async def silence(request: web.Request) -> web.Response:
        checked = await authorised(request)
        if isinstance(checked, web.Response):
            return checked
        form, who = checked
        now = clock()
        try:
            seconds = parse_duration(form.get("duration") or "2h")
            made = add_silence(
                store(),
                matchers={k: _values(form.get(k, "")) for k in _MATCHERS},
                ends_at=now + timedelta(seconds=seconds),
                reason=form.get("reason", ""),
                created_by=who,
                now=now,
            )
        except (Refused, ValueError) as exc:
            return _refuse(request, 400, str(exc), bearer=guard.bearer(request) is not None)
        return done(request, f"silence #{made.id} added: {made.describe()}", {"id": made.id})

    async def ack(request: web.Request) -> web.Response:
        checked = await authorised(request)
        if isinstance(checked, web.Response):
            return checked
        form, who = checked
        try:
            made = add_ack(
                scoped(form.get("workspace", "")),
                form.get("account_id", "").strip(),
                reason=form.get("reason", ""),
                created_by=who,
                now=clock(),
            )
        except Refused as exc:
            return _refuse(request, 400, str(exc), bearer=guard.bearer(request) is not None)
        return done(
            request,
            f"acknowledged {made.account_id}",
            {"account_id": made.account_id},
            chosen(form.get("workspace", "")),
        )

    async def expire(request: web.Request) -> web.Response:
        checked = await authorised(request)
        if isinstance(checked, web.Response):
            return checked
        form, _ = checked
        try:
            ended = expire_silence(store(), int(form.get("id", "0") or 0), now=clock())
        except (Refused, ValueError) as exc:
            return _refuse(request, 400, str(exc), bearer=guard.bearer(request) is not None)
        return done(request, f"silence #{ended.id} expired", {"id": ended.id})

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/?done=" + quote("logged out"))
        response.del_cookie(COOKIE, path="/")
        raise response

    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/actions/silence", silence)
    app.router.add_post("/actions/ack", ack)
    app.router.add_post("/actions/expire", expire)


_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send "Origin: null"
    "Cache-Control": "no-store",
}


def _values(text: str) -> list[str]:
    return [v for v in (part.strip() for part in text.split(",")) if v]


def _foreign(request: web.Request) -> bool:
    """A browser's POST from another site (its Origin names another host). An absent or
    "null" Origin (privacy settings) is left to the CSRF field and the SameSite cookie."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc != request.host


def _refuse(request: web.Request, status: int, text: str, *, bearer: bool = False) -> web.Response:
    if bearer or "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": False, "error": text}, status=status)
    return web.Response(
        text=f"<!doctype html><title>{status}</title><p>{escape(text)}</p>"
        "<p><a href='/'>back to the status page</a></p>",
        status=status,
        content_type="text/html",
        headers=_HEADERS,
    )
