"""The optional HTTP endpoints: /healthz, /readyz, /metrics, /status, /reconnect/{token},
and the status page (`/` and its actions, admin.py) (aiohttp)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from late_monitor.admin import add_routes as add_page_routes
from late_monitor.errors import ConfigError
from late_monitor.metrics import Metrics
from late_monitor.reconnect import Answer
from late_monitor.status import status_report
from late_monitor.storage import StateStore as Store

WEBHOOK_PATH = "/webhooks/late"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Liveness:
    """What the daemon tells the endpoints: when it started and last polled successfully
    (epoch seconds, by the daemon's clock)."""

    interval: float
    started: float
    last_success: float | None = None
    cycles: int = 0


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"http.listen: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9687)")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_app(
    *,
    liveness: Callable[[], Liveness],
    metrics: Metrics,
    store: Callable[[], Store],
    clock: Callable[[], datetime],
    reconnect: Callable[[str], Awaitable[Answer]] | None = None,
    admin_token: str = "",
    webhook: Handler | None = None,
    workspaces: Callable[[], Sequence[str]] = tuple,
) -> web.Application:
    """The endpoints; `clock` is the daemon's, the one its liveness timestamps come from.
    `webhook` takes Late's deliveries at POST /webhooks/late (intake.Intake.handle)."""

    async def healthz(request: web.Request) -> web.Response:
        live = liveness()
        limit = 3 * live.interval
        reference = live.last_success or live.started
        age = clock().timestamp() - reference
        if age > limit:
            what = (
                "last successful poll" if live.last_success else "start without a successful poll"
            )
            return web.json_response(
                {"ok": False, "reason": f"{what} {age:.0f}s ago (limit {limit:.0f}s)"}, status=503
            )
        return web.json_response({"ok": True, "last_success_age_s": round(age, 1)})

    async def readyz(request: web.Request) -> web.Response:
        if liveness().cycles == 0:
            return web.json_response(
                {"ready": False, "reason": "no cycle completed yet"}, status=503
            )
        return web.json_response({"ready": True})

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def status(request: web.Request) -> web.Response:
        names = list(workspaces())
        if not names:
            return web.json_response(status_report(store(), now=clock()))
        wanted = request.query.get("workspace")
        if wanted is not None:  # case aside, as the command line's -w
            found = next((n for n in names if n.casefold() == wanted.casefold()), None)
            if found is None:
                raise web.HTTPNotFound(text=f"no workspace named {wanted!r}")
            names = [wanted := found]
        reports = {name: status_report(store().scoped(name), now=clock()) for name in names}
        if wanted is not None:
            return web.json_response({"workspace": wanted, **reports[wanted]})
        return web.json_response({"workspaces": reports})

    async def reconnect_handler(request: web.Request) -> web.Response:
        assert reconnect is not None
        answer = await reconnect(request.match_info["token"])
        # the token is in this URL: no Referer to the OAuth page, no cached redirect
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if answer.location:
            raise web.HTTPFound(answer.location, headers=headers)
        return web.Response(status=answer.status, text=answer.text + "\n", headers=headers)

    app = web.Application()
    if reconnect is not None:
        app.router.add_get("/reconnect/{token}", reconnect_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/status", status)
    add_page_routes(app, store=store, clock=clock, admin_token=admin_token, workspaces=workspaces)
    if webhook is not None:
        app.router.add_post(WEBHOOK_PATH, webhook)
        app.router.add_post(WEBHOOK_PATH + "/", webhook)  # as a proxy or a person may write it
    return app


async def start_server(app: web.Application, listen: str) -> web.AppRunner:
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"http.listen: cannot listen on {listen} ({exc.strerror})") from None
    return runner
