"""The long-running service: APScheduler jobs, signals, reload, systemd and HTTP endpoints."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig, load_settings
from late_monitor.control import release_due
from late_monitor.cycle import CycleDeps, CycleResult, run_cycle, scope_of_state, utcnow
from late_monitor.errors import ConfigError, LateMonitorError, LeadershipLost, NotLeader
from late_monitor.intake import Intake
from late_monitor.metrics import Metrics
from late_monitor.notify import Notifier
from late_monitor.outbox import deliver_pending
from late_monitor.reconnect import Answer, open_link
from late_monitor.systemd import SystemdNotifier
from late_monitor.web import Liveness, build_app, start_server
from late_monitor.wiring import (
    check_destinations,
    client_from,
    deps_from,
    notifier_from,
    setup_logging,
)

log = structlog.get_logger("late_monitor.daemon")

SHUTDOWN_GRACE = 20.0  # seconds an in-flight cycle gets to finish on SIGTERM
OUTBOX_EVERY = 30.0
REPLICAS_EVERY = 5.0  # PostgreSQL: a standby tries the leader lock, the leader looks for
# webhooks another replica recorded, this often between polls
WATCH_FIRST = 60.0  # seconds after start: the first look at Late's view of our webhook
HISTORY_DAYS = 30


class Daemon:
    """Runs cycles on a schedule until told to stop.

    Shutdown, in order:
      1. STOPPING=1 to systemd; the poll and retry jobs are paused (no new cycle starts),
         and the HTTP server stops (no new webhook is acknowledged);
      2. the in-flight cycle, if any, gets SHUTDOWN_GRACE seconds to commit and deliver;
      3. the scheduler and the webhook task stop (what they did not act on is in the file);
      4. the Late session and the state file are closed.

    `clock` is the daemon's one wall clock: the cycles', delivery's, the history cutoff's and
    the liveness and metrics timestamps'. Only APScheduler keeps its own (it decides when jobs
    run), and timeouts use time.monotonic (durations, not times).
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        config_arg: str | None,
        environ: Mapping[str, str] | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.loaded = loaded
        self._config_arg = config_arg
        self.clock = clock
        self.store = open_store(loaded, standby=True)
        self.deps: CycleDeps = deps_from(
            loaded, client=client_from(loaded), store=self.store, notifier=notifier, clock=clock
        )
        scope_of_state(self.deps)  # a state file of another scope: refused now, not each poll
        self.systemd = SystemdNotifier(environ)
        self.metrics = Metrics()
        self.metrics.set_leader(self.store.leader)
        self.liveness = Liveness(
            interval=loaded.settings.monitor.interval, started=clock().timestamp()
        )
        self.intake = Intake(
            secret=self._webhook_secret,
            deps=lambda: self.deps,
            metrics=self.metrics,
            clock=clock,
        )
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._busy = asyncio.Lock()
        self._stop = asyncio.Event()
        self._stop_requests = 0
        self._reloads: set[asyncio.Task[None]] = set()

    # -- jobs ---------------------------------------------------------------------------

    async def poll(self) -> None:
        async with self._busy:
            try:
                result = await run_cycle(self.deps)
            except NotLeader as exc:  # a standby (PostgreSQL): another replica polls
                self._note_leader(lost=isinstance(exc, LeadershipLost))
                if not isinstance(exc, LeadershipLost):  # standing by is this one's job: live
                    self.liveness.last_success = self.clock().timestamp()
                    self.liveness.cycles = max(self.liveness.cycles, 1)
                return
            except ConfigError as exc:
                log.error("cycle_failed", error="; ".join(exc.problems))
                return
            except LateMonitorError as exc:
                log.error("cycle_failed", error=str(exc))
                return
            except Exception:  # the daemon outlives a bug in one cycle; the log has the trace
                log.exception("cycle_crashed")
                return
        self._note_leader()
        self._record(result)
        if result.duration > self.liveness.interval:
            log.warning(
                "cycle_slow",
                duration_s=round(result.duration, 2),
                interval_s=self.liveness.interval,
                hint="polls are skipped while a cycle runs; raise monitor.interval or "
                "late.max_requests_per_minute",
            )

    def _note_leader(self, *, lost: bool = False) -> None:
        leader = self.store.leader
        if lost or leader != bool(self.metrics.leader_value):
            log.info("leadership_changed", leader=leader, state=str(self.store.path))
        self.metrics.set_leader(leader)

    def _record(self, result: CycleResult) -> None:
        when = self.clock()
        now = when.timestamp()
        self.liveness.cycles += 1
        if result.outcome == "ok":
            self.liveness.last_success = now
        self.metrics.record(
            result,
            destinations=self.deps.notifier.indexes(),
            pending=self.store.pending_count(),
            remaining=self.deps.client.budget.remaining,
            now=now,
        )
        counts = result.by_status
        self.systemd.status(
            f"{result.accounts} accounts: {counts.get('healthy', 0)} healthy, "
            f"{counts.get('warning', 0)} warning, {counts.get('error', 0)} error; "
            f"last poll {result.outcome} at {when.astimezone(UTC):%H:%M:%S} UTC"
        )

    async def replicas(self) -> None:
        """Between polls, a standby tries the leader lock (winning it polls at once), and the
        leader acts on webhooks that Late delivered to another replica."""
        if self.store.leader:
            self.intake.wake()
        elif not self._busy.locked():
            await self.poll()

    async def retry_outbox(self) -> None:
        if self._busy.locked() or not self.store.leader:
            return  # the cycle delivers anyway; a standby delivers nothing
        async with self._busy:
            try:
                deps = self.deps
                release_due(deps.store, now=deps.clock())  # quiet hours over: the summary
                delivery = await deliver_pending(
                    deps.store,
                    deps.notifier,
                    retry_for=deps.retry_for,
                    clock=deps.clock,
                    lock_wait=deps.lock_wait,
                )
            except LateMonitorError as exc:
                log.error("outbox_retry_failed", error=str(exc))
                return
        self.metrics.record_delivery(delivery, destinations=self.deps.notifier.indexes())
        self.metrics.outbox_pending.set(self.store.pending_count())

    async def housekeeping(self) -> None:
        before = self.clock() - timedelta(days=HISTORY_DAYS)
        async with self._busy:
            pruned = self.store.prune(before=before)
            webhooks = self.intake.prune()
        log.info("history_pruned", cycles=pruned, webhooks=webhooks, older_than_days=HISTORY_DAYS)

    async def watch_webhook(self) -> None:
        if self._webhook_secret() is None:
            return  # webhooks are off (a reload may have turned them off)
        await self.intake.watch(name=self.loaded.settings.webhooks.name)

    def _schedule_watch(self) -> None:
        """The look at Late's view of our webhook: on while webhooks are (a reload may turn
        them on or off, or change how often)."""
        job = self.scheduler.get_job("webhook_watch")
        every = self.loaded.settings.webhooks.watch_every
        if self._webhook_secret() is None:
            if job is not None:
                job.remove()
            return
        if job is not None:
            job.reschedule(IntervalTrigger(seconds=every))
            return
        self.scheduler.add_job(
            self.watch_webhook,
            IntervalTrigger(seconds=every),
            id="webhook_watch",
            next_run_time=datetime.now(UTC) + timedelta(seconds=min(WATCH_FIRST, every)),
            misfire_grace_time=600,
            max_instances=1,
            coalesce=True,
        )

    def _webhook_secret(self) -> str | None:
        secret = self.loaded.webhook_secret
        return secret.get_secret_value() if secret is not None else None

    async def reconnect(self, token: str) -> Answer:
        """A reconnect link was opened: a fresh authUrl to redirect to, then a poll about a
        minute later ([http] recheck_after) that reports the account's recovery."""
        answer = await open_link(
            token,
            store=self.store,
            client=self.deps.client,
            base_url=self.deps.client.base_url,
            now=self.clock(),
        )
        if answer.location:
            delay = self.loaded.settings.http.recheck_after
            self.scheduler.add_job(
                self.poll,
                DateTrigger(run_date=datetime.now(UTC) + timedelta(seconds=delay)),
                id="recheck",
                replace_existing=True,
                misfire_grace_time=int(max(delay, 60)),
            )
            log.info("reconnect_recheck_scheduled", account_id=answer.account_id, in_s=delay)
        return answer

    # -- signals and reload -------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requests += 1
        if self._stop_requests > 1:
            log.warning("shutdown_forced")
            os._exit(1)
        log.info("shutdown_requested")
        self._stop.set()

    def request_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Re-read the config; a valid one takes effect at the next cycle, a bad one is logged."""
        self.systemd.reloading()
        try:
            loaded = load_settings(self._config_arg)
            loaded.require_api_key()
            notifier = notifier_from(loaded)
            await check_destinations(loaded, notifier)
        except ConfigError as exc:
            log.error("config_reload_failed", problems=exc.problems, kept="previous configuration")
            self.systemd.ready()
            return
        async with self._busy:  # swap between cycles, never during one
            old_client = self.deps.client
            if loaded.settings.state != self.loaded.settings.state:
                log.warning("config_reload_partial", ignored="[state] (needs a restart)")
            self.loaded = loaded
            setup_logging(loaded)
            for warning in loaded.warnings:
                log.warning(warning.event, problem=warning.text)
            self.deps = deps_from(
                loaded,
                client=client_from(loaded),
                store=self.store,
                notifier=notifier,
                clock=self.clock,
            )
            self._schedule_watch()
            interval = loaded.settings.monitor.interval
            if interval != self.liveness.interval:
                self.liveness.interval = interval
                self.scheduler.reschedule_job("poll", trigger=IntervalTrigger(seconds=interval))
                self.scheduler.modify_job("poll", misfire_grace_time=_grace(interval))
            await old_client.close()
        log.info(
            "config_reloaded",
            destinations=len(notifier.destinations),
            interval_s=loaded.settings.monitor.interval,
        )
        self.systemd.ready()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> int:
        try:  # before anything is scheduled: alerts that could go nowhere are a config error
            await check_destinations(self.loaded, self.deps.notifier)
        except ConfigError:
            await self.deps.client.close()
            self.store.close()
            raise
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        http = None
        if listen := self.loaded.settings.http.listen:
            app = build_app(
                liveness=lambda: self.liveness,
                metrics=self.metrics,
                store=lambda: self.store,
                clock=self.clock,
                reconnect=self.reconnect,
                admin_token=_secret(self.loaded.settings.http.admin_token),
                webhook=self.intake.handle,
            )
            http = await start_server(app, listen)
            log.info("http_listening", listen=listen, webhooks=self._webhook_secret() is not None)
        intake = loop.create_task(self.intake.run())
        interval = self.loaded.settings.monitor.interval
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True}
        # run times are APScheduler's, on its own wall clock: not the daemon's `clock`
        self.scheduler.add_job(
            self.poll,
            IntervalTrigger(seconds=interval),
            id="poll",
            next_run_time=datetime.now(UTC),
            misfire_grace_time=_grace(interval),
            **common,
        )
        self.scheduler.add_job(
            self.retry_outbox,
            IntervalTrigger(seconds=min(OUTBOX_EVERY, interval)),
            id="outbox",
            misfire_grace_time=int(OUTBOX_EVERY),
            **common,
        )
        self.scheduler.add_job(
            self.housekeeping,
            IntervalTrigger(hours=24),
            id="housekeeping",
            next_run_time=datetime.now(UTC) + timedelta(minutes=1),
            misfire_grace_time=3600,
            **common,
        )
        if self.loaded.settings.state.url:
            self.scheduler.add_job(
                self.replicas,
                IntervalTrigger(seconds=min(REPLICAS_EVERY, interval)),
                id="replicas",
                misfire_grace_time=int(REPLICAS_EVERY),
                **common,
            )
        self._schedule_watch()
        self.scheduler.start()
        watchdog = loop.create_task(self.systemd.watchdog())
        self.systemd.ready("first poll scheduled")
        log.info("daemon_started", interval_s=interval, state=str(self.store.path))
        try:
            await self._stop.wait()
        finally:
            await self._shutdown(http, watchdog, intake)
        return 0

    async def _shutdown(
        self, http: Any, watchdog: asyncio.Task[None], intake: asyncio.Task[None]
    ) -> None:
        self.systemd.stopping()
        self.scheduler.pause()
        if http is not None:
            await http.cleanup()  # no new webhooks; those acknowledged are in the state file
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE), self._busy:
                pass
        except TimeoutError:
            log.warning("shutdown_cycle_abandoned", grace_s=SHUTDOWN_GRACE)
        self.scheduler.shutdown(wait=False)
        watchdog.cancel()
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await self.intake.close()
        await self.deps.client.close()
        self.store.close()
        log.info("daemon_stopped")


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _grace(interval: float) -> int:
    return max(1, int(interval))


def run_daemon(loaded: LoadedConfig, *, config_arg: str | None) -> int:
    async def main() -> int:
        notifier = notifier_from(loaded)
        await check_destinations(loaded, notifier)  # before the state file is created
        return await Daemon(loaded, config_arg=config_arg, notifier=notifier).run()

    return asyncio.run(main())
