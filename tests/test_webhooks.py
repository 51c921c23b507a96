"""Late's webhooks through a real daemon: signed deliveries become messages within 2 s; the
unsigned, tampered, replayed, oversized and garbled are answered and change nothing."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.store import Store
from late_monitor.webhooks import sign
from tests.support.process import Daemon, daemon, free_port, run_cli
from tests.support.sink import Sink

SECRET = "whsec_" + "0123456789abcdef" * 2


def payload(event: str, hook_id: str | None = None, **data: Any) -> bytes:
    body = {
        "id": hook_id or f"evt_{secrets.token_hex(6)}",
        "event": event,
        **data,
        "timestamp": "2026-11-29T10:00:00.000Z",
    }
    return json.dumps(body).encode()


def disconnected(account: str, *, kind: str = "unintentional", hook_id: str | None = None) -> bytes:
    return payload(
        "account.disconnected",
        hook_id,
        account={
            "accountId": account,
            "profileId": "prof_1",
            "platform": "twitter",
            "username": "@twitter_00000",
            "displayName": "Twitter 00000",
            "disconnectionType": kind,
            "reason": "Token expired" if kind == "unintentional" else "Removed by Ann",
        },
    )


class Late:
    """What Late does: POST a delivery, signed with the shared secret (or not)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def send(
        self,
        payload: bytes,
        *,
        secret: str | None = SECRET,
        header: str = "X-Zernio-Signature",
        signature: str | None = None,
        body: Any = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST `payload` signed; `body` sends it otherwise (a stream, chunks)."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[header] = signature if signature is not None else sign(secret, payload)
        data = payload if body is None else body
        async with self.http.post(self.url, data=data, headers=headers) as answer:
            try:
                data = await answer.json(content_type=None)
            except ValueError:
                data = {"text": await answer.text()}
            return answer.status, data


@pytest.fixture
def webhook_config(daemon_config):  # type: ignore[no-untyped-def]
    def make(**sections: dict[str, Any]) -> tuple[Path, str]:
        port = free_port()
        sections.setdefault("http", {})["listen"] = f"127.0.0.1:{port}"
        sections.setdefault("monitor", {}).setdefault("interval", "60s")
        hooks = sections.setdefault("webhooks", {})
        hooks.setdefault("secret", SECRET)
        return daemon_config(**sections), f"http://127.0.0.1:{port}/webhooks/late"

    return make


async def counted(
    http: aiohttp.ClientSession, url: str, family: str, *, by: str
) -> dict[str, float]:
    """A counter of the daemon's /metrics (beside `url`), its totals by one label."""
    async with http.get(url.replace("/webhooks/late", "/metrics")) as answer:
        families = {f.name: f for f in text_string_to_metric_families(await answer.text())}
    return {
        sample.labels[by]: sample.value
        for sample in families[family].samples
        if sample.name.endswith("_total")
    }


async def started(run: Daemon) -> None:
    await run.until(lambda: run.count("poll_completed") >= 1)


async def test_a_signed_disconnection_is_a_message_within_two_seconds_and_the_poll_stays_quiet(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(monitor={"interval": "2s"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        sim.break_account("acc_00000")  # Late's list says so too from now on
        sent = time.monotonic()
        status, answer = await late.send(disconnected("acc_00000"))
        assert (status, answer) == (200, {"ok": True, "duplicate": False})
        deadline = sent + 2
        while not sink.received:
            assert time.monotonic() < deadline, "no message within 2 s of the webhook"
            await asyncio.sleep(0.02)
        message = sink.received[0]
        assert message["type"] == "failure"
        assert "acc_00000" in message["message"]
        assert "needs reconnect" in message["message"]
        assert "issues: Token expired" in message["message"]
        assert "told by Late's webhook" in message["message"]
        polls = run.count("poll_completed")
        await run.until(lambda: run.count("poll_completed") >= polls + 2, limit=10)
        assert len(sink.received) == 1, sink.titles()  # the polls that see it say nothing


async def test_bad_deliveries_are_refused_and_change_nothing(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    body = disconnected("acc_00001")
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        assert (await late.send(body, secret=None))[0] == 401
        assert (await late.send(body, secret="another-secret-of-some-length"))[0] == 401
        tampered = body.replace(b"acc_00001", b"acc_00002")
        assert (await late.send(tampered, signature=sign(SECRET, body)))[0] == 401
        assert (await late.send(body, signature="sha256=" + "0" * 64))[0] == 401
        assert (await late.send(body, signature="not hex at all \u00e9"))[0] == 401
        for garbage in (b"not json", b"[]", b'{"event": "account.disconnected"}',
                        payload("account.disconnected"), b"\xff\xfe"):  # fmt: skip
            status, answer = await late.send(garbage)
            assert status == 400, garbage
            assert "not a Late webhook payload" in answer["error"]
        big = b"{" + b" " * (1 << 20) + b"}"
        status, _ = await late.send(big, body=io.BytesIO(big))  # Content-Length says it
        assert status == 413

        async def chunks() -> AsyncIterator[bytes]:  # chunked: no length announced
            for start in range(0, len(big), 1 << 16):
                yield big[start : start + (1 << 16)]

        status, _ = await late.send(big, body=chunks())
        assert status == 413
        assert run.process.returncode is None
        await asyncio.sleep(0.5)
        assert sink.received == []
        outcomes = await counted(http, url, "late_monitor_webhooks_received", by="outcome")
        assert outcomes == {"unsigned": 1, "bad_signature": 4, "bad_body": 5, "too_large": 2}
        assert SECRET not in "".join(run.lines)


async def test_a_replayed_delivery_is_acknowledged_and_told_once(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    body = disconnected("acc_00002", hook_id="evt_replayed")
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        answers = await asyncio.gather(*(late.send(body) for _ in range(4)))
        assert sorted(a[1]["duplicate"] for a in answers) == [False, True, True, True]
        assert {a[0] for a in answers} == {200}
        await run.until(lambda: len(sink.received) == 1)
        assert (await late.send(body))[1] == {"ok": True, "duplicate": True}
        await asyncio.sleep(0.5)
        assert len(sink.received) == 1


async def test_without_a_secret_the_endpoint_is_off(
    sim: Simulator, daemon_config, base_env, tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(http={"listen": f"127.0.0.1:{port}"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        status, _ = await Late(http, f"http://127.0.0.1:{port}/webhooks/late").send(
            disconnected("acc_00000")
        )
        assert status == 404


async def test_an_intentional_disconnection_is_info_and_the_account_is_forgotten(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(monitor={"interval": "1s"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        sim.accounts.pop("acc_00000")
        assert (await Late(http, url).send(disconnected("acc_00000", kind="intentional")))[0] == 200
        await run.until(lambda: len(sink.received) == 1)
        message = sink.received[0]
        assert message["type"] == "info"
        assert "disconnected in Late by a person: Removed by Ann" in message["message"]
        polls = run.count("poll_completed")
        await run.until(lambda: run.count("poll_completed") >= polls + 2, limit=10)
        assert len(sink.received) == 1  # no "removed" when the poll no longer lists it


async def test_a_disconnection_the_poll_contradicts_gets_a_correction(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(monitor={"interval": "1s"}, webhooks={"poll_grace": "0s"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        assert (await Late(http, url).send(disconnected("acc_00003")))[0] == 200
        await run.until(lambda: len(sink.received) >= 2)  # Late's list still says healthy
        alert, correction = sink.received[:2]
        assert alert["type"] == "failure"
        assert correction["type"] == "success"
        assert "better than a webhook said" in correction["title"]
        assert "said otherwise; a poll now finds it healthy" in correction["message"]
        assert "recovered" not in correction["message"]


async def test_connected_triggers_a_check_and_the_recovery_message(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    sim.break_account("acc_00004")
    config, url = webhook_config()
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        await run.until(lambda: len(sink.received) == 1)  # first seen in error
        sim.heal("acc_00004")
        details = sim.count("/accounts/acc_00004/health")
        body = payload(
            "account.connected",
            account={"accountId": "acc_00004", "profileId": "prof_2", "platform": "threads",
                     "username": "@threads_00004"},
        )  # fmt: skip
        sent = time.monotonic()
        assert (await Late(http, url).send(body))[0] == 200
        await run.until(lambda: len(sink.received) == 2, limit=5)
        assert time.monotonic() - sent < 2
        assert sim.count("/accounts/acc_00004/health") == details + 1
        assert sink.received[1]["type"] == "success"
        assert "recovered" in sink.received[1]["message"]


async def test_a_post_that_failed_for_its_token_is_evidence_others_are_counted(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        sim.break_account("acc_00001", issue="Token revoked")
        details = sim.count("/health")

        def failed(error: str, **extra: str) -> bytes:
            post = {"id": "post_1", "content": "hi", "status": "failed",
                    "scheduledFor": "2026-11-29T10:00:00Z",
                    "platforms": [{"platform": "instagram", "status": "failed", "error": error,
                                   **extra}]}  # fmt: skip
            return payload("post.failed", post=post)

        assert (await late.send(failed("Image aspect ratio not supported")))[0] == 200
        await asyncio.sleep(0.5)
        assert sim.count("/health") == details  # not the account's fault: no call, no message
        assert sink.received == []
        body = failed("OAuthException: Error validating access token", accountId="acc_00001")
        assert (await late.send(body))[0] == 200
        await run.until(lambda: len(sink.received) == 1, limit=5)
        assert "acc_00001" in sink.received[0]["message"]
        assert sink.received[0]["type"] == "failure"
        causes = await counted(http, url, "late_monitor_post_failures", by="cause")
        assert causes == {"post": 1, "account": 1}


async def test_a_delivery_acknowledged_before_a_crash_is_acted_on_at_the_next_start(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, _ = webhook_config()
    async with daemon(config, base_env, tmp_path) as run:
        await started(run)
    # killed (SIGKILL, by the fixture) ; a delivery it had acknowledged but not acted on:
    store = Store.open(tmp_path / "state.db")
    store.record_webhook(
        "evt_before_crash", "account.disconnected", disconnected("acc_00002"), now=time.time()
    )
    store.close()
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: len(sink.received) == 1)
        assert "acc_00002" in sink.received[0]["message"]


async def test_the_simulator_announces_a_change_and_the_monitor_tells_it_once(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(monitor={"interval": "2s"})
    sim.webhooks.add(name="late-monitor", url=url, secret=SECRET, events=["account.disconnected"])
    async with daemon(config, base_env, tmp_path) as run:
        await started(run)
        changed = time.monotonic()
        sim.break_account("acc_00003")
        await run.until(lambda: len(sink.received) == 1, limit=3)
        assert sink.received[0]["at"] - changed < 1.0
        polls = run.count("poll_completed")
        await run.until(lambda: run.count("poll_completed") >= polls + 2, limit=10)
        assert len(sink.received) == 1
    assert [d.status for d in sim.webhooks.deliveries] == [200]


async def test_webhooks_setup_is_idempotent_and_status_shows_lates_view(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(webhooks={"secret": SECRET})
    url = "https://monitor.example.com/webhooks/late"
    first = await run_cli("webhooks", "setup", "--url", url, "--config", str(config),
                          env=base_env, cwd=tmp_path)  # fmt: skip
    assert first.code == 0, first.output
    assert "created" in first.stdout
    second = await run_cli("webhooks", "setup", "--url", url, "--config", str(config),
                           env=base_env, cwd=tmp_path)  # fmt: skip
    assert second.code == 0, second.output
    assert "updated" in second.stdout
    assert len(sim.webhooks.hooks) == 1
    (hook,) = sim.webhooks.hooks.values()
    assert hook.secret == SECRET
    assert hook.url == url
    assert set(hook.events) == {
        "account.disconnected",
        "account.connected",
        "post.failed",
        "post.partial",
    }
    shown = await run_cli("webhooks", "status", "--config", str(config), env=base_env,
                          cwd=tmp_path)  # fmt: skip
    assert shown.code == 0, shown.output
    assert "isActive: yes" in shown.stdout
    assert "failureCount: 0" in shown.stdout
    assert SECRET not in first.output + second.output + shown.output
    assert DEFAULT_KEY not in first.output + second.output + shown.output


async def test_the_daemon_says_when_late_has_disabled_its_webhook(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(webhooks={"watch_every": "1s"})
    hook = sim.webhooks.add(name="late-monitor", url=url, secret=SECRET, events=[])
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("webhook_watched") >= 1)
        assert sink.received == []
        hook.failure_count, hook.is_active = 10, False
        await run.until(lambda: len(sink.received) == 1, limit=5)
        assert sink.received[0]["type"] == "failure"
        assert "polling only" in sink.received[0]["title"]
        hook.failure_count, hook.is_active = 0, True
        await run.until(lambda: len(sink.received) == 2, limit=5)
        assert sink.received[1]["type"] == "success"
        watched = run.count("webhook_watched")
        await run.until(lambda: run.count("webhook_watched") >= watched + 2, limit=5)
        assert len(sink.received) == 2  # each told once


async def test_a_burst_is_answered_at_once_and_told_in_digests_each_account_once(
    sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    sim = Simulator(make_accounts(120))
    await sim.start()
    config, url = webhook_config(late={"base_url": sim.base_url})
    try:
        async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
            await started(run)
            late = Late(http, url)
            answers = await asyncio.gather(
                *(late.send(disconnected(f"acc_{n:05d}")) for n in range(100))
            )
            assert {status for status, _ in answers} == {200}
            told = re.compile(r"\((acc_\d+)\)")

            def named() -> list[str]:
                return [a for m in sink.received for a in told.findall(m["message"])]

            await run.until(lambda: len(set(named())) == 100, limit=10)
            assert sorted(named()) == [f"acc_{n:05d}" for n in range(100)]  # each once
            assert len(sink.received) <= 4  # digests, at most one a second
    finally:
        await sim.stop()


async def test_a_delivery_during_a_slow_poll_is_told_without_waiting_for_it(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(monitor={"interval": "1s"}, late={"timeout": "20s"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        sim.latency = 4.0  # every answer of Late takes 4 s from now on
        requests = len(sim.authorizations)
        async with asyncio.timeout(5):
            await sim.started(requests + 1)  # a poll is waiting on Late
        sent = time.monotonic()
        assert (await Late(http, url).send(disconnected("acc_00001")))[0] == 200
        await run.until(lambda: len(sink.received) == 1, limit=3)
        assert time.monotonic() - sent < 2
        sim.latency = 0
        polls = run.count("poll_completed")
        sim.break_account("acc_00001")
        await run.until(lambda: run.count("poll_completed") >= polls + 2, limit=15)
        assert len(sink.received) == 1  # the slow poll, and the next, agree: nothing more


async def test_simulate_sends_signed_webhooks_when_its_scenario_changes_an_account(
    base_env, tmp_path: Path
) -> None:
    received: list[tuple[bytes, str]] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Zernio-Signature", "")))
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/late", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/late"
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        '[[account]]\nid = "acc_x"\nplatform = "twitter"\n'
        '[[change]]\nat = "0.5s"\naccount = "acc_x"\nstatus = "error"\n'
        'needs_reconnect = true\nissues = ["Token revoked"]\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "late_monitor", "simulate", "--port", str(free_port()),
        "--scenario", str(scenario), "--webhook", receiver,
        env={**base_env, "LATE_SIM_WEBHOOK_SECRET": SECRET}, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            await arrived.wait()
    finally:
        process.terminate()
        await process.wait()
        await runner.cleanup()
    ((body, signature),) = received
    assert signature == sign(SECRET, body)
    delivered = json.loads(body)
    assert delivered["event"] == "account.disconnected"
    assert delivered["account"]["accountId"] == "acc_x"
    assert delivered["account"]["disconnectionType"] == "unintentional"
    assert delivered["account"]["reason"] == "Token revoked"


async def test_bodies_no_rule_foresaw_are_refused_at_the_door_never_with_a_500(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        surrogate = disconnected("acc_00002").replace(b"Token expired", b"Token \\ud83d")
        deep = b'{"id": "e", "event": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        big_number = b'{"id": "e", "event": "x", "n": ' + b"9" * 5000 + b"}"
        control_id = payload("account.connected", hook_id="evt_\x1b[2J\nX")
        for body in (surrogate, deep, big_number, control_id):
            status, answer = await late.send(body)
            assert status == 400, (body[:60], answer)
        gzipped = gzip.compress(disconnected("acc_00002"))
        headers = {"Content-Encoding": "gzip", "X-Zernio-Signature": sign(SECRET, gzipped)}
        async with http.post(url, data=gzipped, headers=headers) as answer:
            assert answer.status == 415

        async def slow() -> AsyncIterator[bytes]:
            yield b'{"id": "slow", '
            await asyncio.sleep(11)  # past the 10 s a body may take
            yield b'"event": "webhook.test"}'

        status, _ = await late.send(b'{"id": "slow", "event": "webhook.test"}', body=slow())
        assert status == 408
        assert all("Traceback" not in line for line in run.lines)
        assert sink.received == []
        assert run.process.returncode is None


async def test_one_delivery_no_rule_can_handle_is_set_aside_and_the_others_are_told(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, _ = webhook_config()
    store = Store.open(tmp_path / "state.db")  # as an older release may have let them in
    now = time.time()
    store.record_webhook("evt_poison", "account.disconnected", b"{not json", now=now)
    store.record_webhook("evt_good", "account.disconnected", disconnected("acc_00004"), now=now)
    store.close()
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: len(sink.received) == 1)
        assert "acc_00004" in sink.received[0]["message"]
        await run.until(lambda: run.count("webhook_not_processed") == 1)
    store = Store.open(tmp_path / "state.db")
    outcomes = {row["id"]: row["outcome"] for row in store.recent_webhooks()}
    store.close()
    assert outcomes == {"evt_poison": "error", "evt_good": "applied"}


async def test_with_a_scope_an_unlisted_account_must_show_it_is_in_scope(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config(late={"profile_id": "prof_1"})
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)

        def unlisted(account_id: str, **fields: Any) -> bytes:
            account = {"accountId": account_id, "disconnectionType": "unintentional", **fields}
            return payload("account.disconnected", account=account)

        for body in (
            unlisted("acc_other", platform="twitter", profileId={"_id": "prof_2"}),
            unlisted("acc_nameless"),  # says neither platform nor profile
        ):
            assert (await late.send(body))[0] == 200
        inside = unlisted("acc_new", platform="twitter", username="@new", profileId="prof_1")
        assert (await late.send(inside))[0] == 200
        await run.until(lambda: len(sink.received) == 1)
        await asyncio.sleep(0.5)
        assert len(sink.received) == 1
        assert "acc_new" in sink.received[0]["message"]


async def test_a_replay_older_than_the_remembered_ids_is_not_acted_on(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    old = json.loads(disconnected("acc_00001"))
    old["timestamp"] = "2026-01-01T00:00:00.000Z"  # months ago: its id is long forgotten
    body = json.dumps(old).encode()
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        assert (await Late(http, url).send(body))[0] == 200  # Late stops retrying on a 2xx
        await run.until(lambda: run.count("webhook_stale") == 1)
        await asyncio.sleep(0.3)
        assert sink.received == []


async def test_a_check_finding_better_than_a_webhook_said_corrects_and_connected_always_asks(
    sim: Simulator, sink: Sink, webhook_config, base_env, tmp_path: Path
) -> None:
    config, url = webhook_config()
    async with daemon(config, base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await started(run)
        late = Late(http, url)
        assert (await late.send(disconnected("acc_00000")))[0] == 200  # Late's list: healthy
        await run.until(lambda: len(sink.received) == 1)
        post = {"id": "p", "platforms": [{"platform": "twitter", "status": "failed",
                "error": "Token expired", "accountId": "acc_00000"}]}  # fmt: skip
        assert (await late.send(payload("post.failed", post=post)))[0] == 200
        await run.until(lambda: len(sink.received) == 2)
        assert "better than a webhook said" in sink.received[1]["title"]
        assert "recovered" not in sink.received[1]["message"]
        sim.break_account("acc_00000")
        details = sim.count("/accounts/acc_00000/health")
        assert (await late.send(payload("post.failed", post=post)))[0] == 200
        await asyncio.sleep(0.5)
        assert sim.count("/accounts/acc_00000/health") == details  # asked a moment ago
        assert (await late.send(disconnected("acc_00000")))[0] == 200
        await run.until(lambda: len(sink.received) == 3)
        sim.heal("acc_00000")
        connected = payload("account.connected", account={"accountId": "acc_00000"})
        assert (await late.send(connected))[0] == 200  # within the minute: asked all the same
        await run.until(lambda: len(sink.received) == 4)
        assert sim.count("/accounts/acc_00000/health") == details + 1
        assert "recovered" in sink.received[3]["message"]
