"""Late's webhooks in the daemon: verify, record, acknowledge; then act on them.

`POST /webhooks/late` answers 2xx only once a verified delivery is in the state file, so a
crash after the answer loses nothing (the next start acts on what is recorded), and a
delivery Late retries is acknowledged and ignored by its id. Acting on deliveries happens in
one background task, as the process's one writer (`Store.writing`), so it never interleaves
with a poll's commit; an account that needs Late asked first (`account.connected`, a post
that failed for its token) is checked in a task of its own, so that the detail call never
delays the news of another delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiohttp import web

from late_monitor.cycle import CycleDeps, record_and_send, tell_news
from late_monitor.errors import LateApiError, LateMonitorError, NotLeader
from late_monitor.events import Event
from late_monitor.hook_rules import checked, disconnected, webhook_watch
from late_monitor.metrics import Metrics
from late_monitor.models import Detail
from late_monitor.state import AccountState
from late_monitor.webhooks import (
    DEDUPE_WINDOW,
    MAX_BODY,
    Hook,
    HookAccount,
    HookError,
    parse,
    signature_of,
    verify,
)

log = structlog.get_logger("late_monitor.intake")

RECHECK_AFTER = 60.0  # seconds: a burst of failed posts for one account asks Late once
READ_WITHIN = 10.0  # seconds a delivery's body may take to arrive (a slow sender holds memory)
MAX_READING = 32  # bodies read at once; more are answered 503 (Late retries)
REFUSALS_EVERY = 60.0  # seconds between log lines about refused deliveries of one kind
BATCH_EVERY = 1.0  # seconds: at most one batch of deliveries acted on per second
WATCH_KEY = "webhook_watch"  # meta: Late's last view of our webhook and what was told


@dataclass
class _Batch:
    """What one pass over the recorded deliveries decided, to commit as one transaction."""

    states: dict[str, AccountState]
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    settled: list[tuple[str, str]] = field(default_factory=list)  # (delivery id, outcome)
    # account -> (the delivery that waits for the answer, whether it must ask now: connected)
    to_check: dict[str, tuple[str, bool]] = field(default_factory=dict)


class Intake:
    """The webhook endpoint and the task that acts on what it recorded."""

    def __init__(
        self,
        *,
        secret: Callable[[], str | None],
        deps: Callable[[], CycleDeps],
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._secret = secret
        self._deps = deps
        self._metrics = metrics
        self._clock = clock
        self._wake = asyncio.Event()
        self._received: dict[str, float] = {}  # delivery id -> perf_counter at receipt
        self._checks: dict[str, str] = {}  # account being asked about now -> delivery id
        self._checked_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = 0  # bodies being read now
        self._refused: dict[str, tuple[float, int]] = {}  # outcome -> (logged at, since)
        self.processed = 0

    # -- the endpoint -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        secret = self._secret()
        if not secret:
            raise web.HTTPNotFound()  # off unless a secret is set: never open
        # What can be refused before reading a byte is: the body costs memory and time.
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            return self._refuse(415, "encoded", "Content-Encoding is not accepted")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refuse(413, "too_large", f"body over {MAX_BODY} bytes")
        signature = signature_of(request.headers)
        if signature is None:
            return self._refuse(401, "unsigned", "no X-Zernio-Signature header")
        if self._reading >= MAX_READING:
            return self._refuse(503, "busy", "too many deliveries being read; retry")
        self._reading += 1
        try:
            async with asyncio.timeout(READ_WITHIN):
                body = await _read(request)
        except TimeoutError:
            return self._refuse(408, "too_slow", f"body not received within {READ_WITHIN:g}s")
        finally:
            self._reading -= 1
        if body is None:
            return self._refuse(413, "too_large", f"body over {MAX_BODY} bytes")
        if not verify(secret, body, signature):
            return self._refuse(401, "bad_signature", "the signature does not match the body")
        try:
            hook = parse(body)
        except HookError as exc:
            return self._refuse(400, "bad_body", f"not a Late webhook payload: {exc}")
        deps = self._deps()
        try:
            new = deps.store.record_webhook(
                hook.id, hook.event, body, now=self._clock().timestamp()
            )
        except LateMonitorError as exc:
            log.error("webhook_not_recorded", webhook_event=hook.event, error=str(exc))
            return web.json_response({"error": "not recorded; retry"}, status=503)
        self._metrics.webhooks.labels(hook.event, "accepted" if new else "duplicate").inc()
        log.info("webhook_received", id=hook.id, webhook_event=hook.event, duplicate=not new)
        if new:
            self._received[hook.id] = received
            self._wake.set()
        return web.json_response({"ok": True, "duplicate": not new})

    def _refuse(self, status: int, outcome: str, reason: str) -> web.Response:
        """Answer a delivery that was not taken. Anyone can send these, so the log says the
        first of a kind, then at most one line a minute with how many came meanwhile."""
        self._metrics.webhooks.labels("", outcome).inc()
        now = time.monotonic()
        said, count = self._refused.get(outcome, (-REFUSALS_EVERY, 0))
        if now - said >= REFUSALS_EVERY:
            log.warning("webhook_refused", status=status, reason=reason, since_last=count)
            self._refused[outcome] = (now, 0)
        else:
            self._refused[outcome] = (said, count + 1)
        return web.json_response({"error": reason}, status=status)

    # -- acting on deliveries -----------------------------------------------------------

    def wake(self) -> None:
        """Look for recorded deliveries now (another replica may have recorded some)."""
        self._wake.set()

    async def run(self) -> None:
        """Act on recorded deliveries whenever one arrives (and once at start: what a
        previous process acknowledged but did not act on)."""
        self._wake.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started, acted = time.monotonic(), 0
            try:
                acted = await self.process()
            except NotLeader:
                pass  # a standby replica: the leader acts on what this one recorded
            except LateMonitorError as exc:
                log.error("webhooks_not_processed", error=str(exc))
                await asyncio.sleep(1.0)
                self._wake.set()
            except Exception:  # the daemon outlives a bug here; the log has the trace
                log.exception("webhooks_processing_crashed")
                await asyncio.sleep(5.0)
                self._wake.set()  # what is recorded is still to act on
            if acted:  # a burst of deliveries becomes a digest a second, not a message each
                await asyncio.sleep(max(0.0, started + BATCH_EVERY - time.monotonic()))

    async def process(self) -> int:
        """Act on every recorded delivery not acted on yet; the number acted on. A batch
        that fails for a reason other than the state file is done again one delivery at a
        time, so that one delivery nobody foresaw cannot hold the others back."""
        deps = self._deps()
        batches: list[_Batch] = []
        async with deps.store.writing(deps.lock_wait):
            rows = [
                (hook_id, body)
                for hook_id, body in deps.store.unprocessed_webhooks()
                if hook_id not in self._waiting()
            ]
            if not rows:
                return 0
            try:
                batches.append(await self._act(deps, rows))
            except LateMonitorError:
                raise
            except Exception:  # a bug, or a delivery no rule foresaw; the log has the trace
                log.exception("webhooks_batch_failed", deliveries=len(rows))
                still = set(deps.store.unprocessed_webhooks())  # some may have been settled
                for row in rows:
                    if row not in still:
                        continue
                    try:
                        batches.append(await self._act(deps, [row]))
                    except LateMonitorError:
                        raise
                    except Exception:
                        log.exception("webhook_not_processed", id=row[0])
                        now = self._clock().timestamp()
                        deps.store.settle_webhooks([(row[0], "error")], now=now)
        settled = [pair for batch in batches for pair in batch.settled]
        self._observe_latency(hook_id for hook_id, _ in settled)
        for batch in batches:
            for account_id, (hook_id, forced) in batch.to_check.items():
                self._start_check(account_id, hook_id, forced=forced)
        self.processed += len(settled)
        return len(settled)

    async def _act(self, deps: CycleDeps, rows: list[tuple[str, bytes]]) -> _Batch:
        """Decide what `rows` mean and commit it with their settlement, then deliver."""
        now = self._clock()
        batch = _Batch(states=dict(deps.store.load_states()))
        for hook_id, body in rows:
            self._decide(deps, hook_id, parse(body), batch, now)
        waiting = {hook_id for hook_id, _ in batch.to_check.values()}
        batch.settled = [pair for pair in batch.settled if pair[0] not in waiting]
        await record_and_send(
            deps,
            batch.events,
            {},
            states=batch.states,
            changed=batch.changed,
            removed=batch.removed,
            api=deps.store.load_api_health(),
            outcome="webhook",
            started=now,
            requests=0,
            webhooks=batch.settled,
        )
        return batch

    def _decide(
        self, deps: CycleDeps, hook_id: str, hook: Hook, batch: _Batch, now: datetime
    ) -> None:
        outcome = "ignored"
        account = hook.account
        if hook.event == "webhook.test":
            outcome = "test"
            log.info("webhook_test_received", id=hook_id)
        elif hook.stale(now.timestamp()):
            outcome = "stale"  # a replay older than the ids we remember, or from the future
            log.warning("webhook_stale", id=hook_id, webhook_event=hook.event, sent=hook.sent)
        elif account is not None and not _in_scope(
            deps, account, known=batch.states.get(account.account_id)
        ):
            outcome = "out_of_scope"
        elif hook.event == "account.disconnected" and account is not None:
            prev = batch.states.get(account.account_id)
            if account.intentional and prev is None:
                outcome = "unknown_account"
            else:
                state, events = disconnected(prev, account, now=now, policy=deps.policy)
                if state is None:
                    batch.states.pop(account.account_id, None)
                    batch.removed.add(account.account_id)
                elif state is not prev:
                    batch.states[account.account_id] = state
                    batch.changed.add(account.account_id)
                batch.events += events
                outcome = "applied" if events else "no_change"
        elif hook.event == "account.connected" and account is not None:
            prev = batch.states.get(account.account_id)
            if prev is not None and not prev.healthy:
                outcome = _check(batch, account.account_id, hook_id, forced=True)
            else:
                outcome = "no_change"
        elif hook.failures:
            outcome = "counted"
            for failure in hook.failures:
                if deps.platforms and failure.platform not in deps.platforms:
                    continue
                cause = "account" if failure.blames_account else "post"
                self._metrics.post_failures.labels(failure.platform or "unknown", cause).inc()
                account_id = _account_of(batch.states, failure.account_id, failure.platform)
                if cause == "account" and account_id:
                    outcome = _check(batch, account_id, hook_id, forced=False)
        batch.settled.append((hook_id, outcome))
        log.info("webhook_processed", id=hook_id, webhook_event=hook.event, outcome=outcome)

    def _waiting(self) -> set[str]:
        """Deliveries whose account is being checked right now (settled by the check)."""
        return set(self._checks.values())

    def _start_check(self, account_id: str, hook_id: str, *, forced: bool) -> None:
        """Ask Late about the account; a failed post's evidence asks at most once a minute
        per account (a burst of them), `account.connected` always (its news is the answer)."""
        recent = self._checked_at.get(account_id, -RECHECK_AFTER)
        if account_id in self._checks or (not forced and time.monotonic() - recent < RECHECK_AFTER):
            self._settle_later(hook_id)  # asked Late a moment ago, or asking now
            return
        self._checks[account_id] = hook_id
        task = asyncio.get_running_loop().create_task(
            self._check(account_id, hook_id, connected=forced)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle_later(self, hook_id: str) -> None:
        deps = self._deps()
        deps.store.settle_webhooks([(hook_id, "recently_checked")], now=self._clock().timestamp())

    async def _check(self, account_id: str, hook_id: str, *, connected: bool) -> None:
        """Ask Late about one account a webhook gave cause to doubt, and tell what it says."""
        deps = self._deps()
        try:
            try:
                detail: Detail | None = await deps.client.account_health(account_id)
            except LateApiError as exc:
                log.info("webhook_check_failed", account_id=account_id, error=str(exc))
                detail = None  # the poll will tell; the delivery is settled as checked
            self._checked_at[account_id] = time.monotonic()
            async with deps.store.writing(deps.lock_wait):
                now = self._clock()
                states = dict(deps.store.load_states())
                events: list[Event] = []
                changed: list[str] = []
                prev = states.get(account_id)
                if detail is not None and prev is not None:
                    state, events = checked(
                        prev, detail, now=now, policy=deps.policy, reconnected=connected
                    )
                    if state is not prev:
                        states[account_id] = state
                        changed.append(account_id)
                outcome = "check_failed" if detail is None else "checked"
                await record_and_send(
                    deps,
                    events,
                    {account_id: detail} if detail is not None else {},
                    states=states,
                    changed=changed,
                    api=deps.store.load_api_health(),
                    outcome="webhook",
                    started=now,
                    requests=1,
                    webhooks=[(hook_id, outcome)],
                )
            log.info("webhook_account_checked", account_id=account_id, events=len(events))
        except LateMonitorError as exc:
            log.error("webhook_check_not_recorded", account_id=account_id, error=str(exc))
        finally:
            self._checks.pop(account_id, None)

    async def watch(self, *, name: str) -> None:
        """Late's view of our webhook (hourly): raise an event when Late has disabled it,
        its deliveries keep failing, or it is gone, and when it works again."""
        deps = self._deps()
        try:
            hooks = await deps.client.webhooks()
        except LateApiError as exc:
            log.warning("webhook_watch_failed", error=str(exc))
            return
        ours = next((hook for hook in hooks if hook.name == name), None)
        async with deps.store.writing(deps.lock_wait):
            now = self._clock()
            record = deps.store.read_meta(WATCH_KEY) or {}
            told, events = webhook_watch(
                record.get("told", ""), ours, name=name, failures_before=record.get("failures", 0)
            )
            if events:
                await tell_news(deps, events, outcome="webhook_watch", started=now, requests=1)
            deps.store.write_meta(
                WATCH_KEY,
                {
                    "told": told,
                    "failures": ours.failure_count if ours else 0,
                    "checked_at": now.timestamp(),
                    "late": ours.shown() if ours else None,
                },
            )
        log.info(
            "webhook_watched",
            found=ours is not None,
            active=ours.is_active if ours else None,
            failure_count=ours.failure_count if ours else None,
        )

    def _observe_latency(self, hook_ids: Iterable[str]) -> None:
        now = time.perf_counter()
        for hook_id in hook_ids:
            received = self._received.pop(hook_id, None)
            if received is not None:
                self._metrics.webhook_latency.observe(now - received)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def prune(self) -> int:
        """Forget deliveries past Late's retry window (housekeeping)."""
        deps = self._deps()
        return deps.store.prune_webhooks(before=self._clock().timestamp() - DEDUPE_WINDOW)


def _in_scope(deps: CycleDeps, hook: HookAccount, *, known: AccountState | None) -> bool:
    """A webhook is the user's, all of it; this monitor may watch a profile or platforms.
    An account we hold is ours (the poll put it there); one we do not must show it is in
    scope: a payload that does not say its platform or profile is not taken on trust."""
    if known is not None:
        return True
    if deps.platforms and hook.platform not in deps.platforms:
        return False
    return not deps.profile_id or hook.profile_id == deps.profile_id


def _account_of(states: Mapping[str, AccountState], account_id: str, platform: str) -> str:
    """The account a failed post's platform names, else the one account we hold on that
    platform; several on it (no accountId in the payload) cannot be told apart: none."""
    if account_id:
        return account_id if account_id in states else ""
    on_platform = [key for key, state in states.items() if state.platform == platform]
    return on_platform[0] if len(on_platform) == 1 else ""


def _check(batch: _Batch, account_id: str, hook_id: str, *, forced: bool) -> str:
    """Ask Late about `account_id` once this batch is committed; one delivery per account
    waits for the answer, others about it in the same batch are settled now."""
    waiting, was_forced = batch.to_check.get(account_id, (hook_id, False))
    batch.to_check[account_id] = (waiting, was_forced or forced)
    return "checking" if waiting == hook_id else "checked_with_another"


async def _read(request: web.Request) -> bytes | None:
    """The body as sent, or None past MAX_BODY (announced or not)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)
