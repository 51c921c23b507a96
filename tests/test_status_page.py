"""The status page over HTTP: what it shows, and who may act through it (token, cookie, CSRF)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from late_monitor.admin import COOKIE
from late_monitor.daemon import Daemon
from late_monitor.simulator import Simulator
from late_monitor.web import build_app, start_server
from tests.support.clock import Clock, clocked_daemon
from tests.support.process import free_port
from tests.support.sink import Sink

TOKEN = "adm1n-t0ken-for-tests"


@asynccontextmanager
async def served(daemon: Daemon, token: str = "") -> AsyncIterator[str]:
    app = build_app(
        liveness=lambda: daemon.liveness,
        metrics=daemon.metrics,
        store=lambda: daemon.store,
        clock=daemon.clock,
        admin_token=token,
    )
    port = free_port()
    runner = await start_server(app, f"127.0.0.1:{port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _page(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(base + "/") as response:
        assert response.status == 200
        assert "script-src 'sha256-" in response.headers["Content-Security-Policy"]
        return await response.text()


async def test_the_page_lists_accounts_worst_first_escaped_and_actions_off_without_a_token(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    sim.set("acc_00003", status="warning", username="<script>alert(1)</script>")
    sim.break_account("acc_00001", issue="Token <expired>")
    async with clocked_daemon(monitor_config, Clock(), monitor={"detail": "never"}) as daemon:
        await daemon.poll()
        async with served(daemon) as base, aiohttp.ClientSession() as session:
            html = await _page(session, base)
            assert html.index('id="group-error"') < html.index('id="group-warning"')
            assert html.index('id="group-warning"') < html.index('id="group-healthy"')
            assert "Error (1)" in html
            assert "Healthy (3)" in html
            assert "<script>alert(1)" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert "Token &lt;expired&gt;" in html
            assert "Actions are off" in html
            async with session.post(
                base + "/actions/silence", data={"account": "acc_00001", "reason": "x"}
            ) as refused:
                assert refused.status == 403
            async with session.get(base + "/status") as status:
                report = await status.json()
            assert {"silences", "acks", "held"} <= set(report)


async def test_a_wrong_token_is_refused_as_bearer_and_at_the_login_form(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    async with clocked_daemon(monitor_config, Clock(), monitor={"detail": "never"}) as daemon:
        await daemon.poll()
        async with served(daemon, TOKEN) as base, aiohttp.ClientSession() as session:
            async with session.post(
                base + "/actions/silence",
                data={"account": "acc_00001", "reason": "x"},
                headers={"Authorization": "Bearer not-the-token"},
            ) as bearer:
                assert bearer.status == 401
                assert (await bearer.json())["error"] == "wrong admin token"
            async with session.post(base + "/login", data={"token": "guess"}) as login:
                assert login.status == 403
                assert "wrong admin token" in await login.text()
            assert not session.cookie_jar.filter_cookies(URL(base)).get(COOKIE)
            async with session.post(
                base + "/actions/ack", data={"account_id": "acc_00001"}
            ) as no_session:
                assert no_session.status == 401
            assert daemon.store.load_silences() == []


async def test_a_bearer_token_silences_and_expires(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    async with clocked_daemon(monitor_config, Clock(), monitor={"detail": "never"}) as daemon:
        await daemon.poll()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with served(daemon, TOKEN) as base, aiohttp.ClientSession() as session:
            async with session.post(
                base + "/actions/silence",
                data={"platform": "tiktok", "duration": "30m", "reason": "outage", "by": "ops"},
                headers=headers,
            ) as added:
                assert added.status == 200
                body: dict[str, Any] = await added.json()
            assert body["id"] == 1
            (silence,) = daemon.store.load_silences()
            assert (silence.matchers, silence.created_by) == ({"platform": ("tiktok",)}, "ops")
            assert (silence.ends - silence.created_at).total_seconds() == 1800
            async with session.post(
                base + "/actions/silence", data={"reason": "no matcher"}, headers=headers
            ) as bad:
                assert bad.status == 400
                assert "needs at least one" in (await bad.json())["error"]
            async with session.post(
                base + "/actions/expire", data={"id": "1"}, headers=headers
            ) as expired:
                assert expired.status == 200
            assert daemon.store.load_silences()[0].expired_at is not None


async def test_the_login_cookie_needs_the_forms_csrf_field_and_a_same_site_origin(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    sim.break_account("acc_00002")
    async with clocked_daemon(monitor_config, Clock(), monitor={"detail": "never"}) as daemon:
        await daemon.poll()
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP address (127.0.0.1)
        async with (
            served(daemon, TOKEN) as base,
            aiohttp.ClientSession(cookie_jar=jar) as session,
        ):
            async with session.post(base + "/login", data={"token": TOKEN}) as login:
                assert login.status == 200  # followed the redirect to the page
                assert "logged in" in await login.text()
            cookie = session.cookie_jar.filter_cookies(URL(base))[COOKIE]
            assert TOKEN not in cookie.value
            html = await _page(session, base)
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
            assert csrf is not None
            form = {"account_id": "acc_00002", "reason": "known"}
            async with session.post(base + "/actions/ack", data=form) as forged:
                assert forged.status == 403  # no CSRF field: a form from another page
            async with session.post(
                base + "/actions/ack",
                data={**form, "csrf": csrf.group(1)},
                headers={"Origin": "http://evil.example"},
            ) as cross_site:
                assert cross_site.status == 403
            assert daemon.store.load_acks() == {}
            async with session.post(
                base + "/actions/ack", data={**form, "csrf": csrf.group(1)}
            ) as ok:
                assert ok.status == 200
                assert "acknowledged acc_00002" in await ok.text()
            assert daemon.store.load_acks()["acc_00002"].created_by == "status page"
            async with session.post(base + "/logout", data={}) as out:
                assert out.status == 200
            async with session.post(
                base + "/actions/ack", data={**form, "csrf": csrf.group(1)}
            ) as after:
                assert after.status == 401
