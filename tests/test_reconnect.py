"""Reconnect links: signed, redirecting to a fresh authUrl, re-checked, spent after recovery."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from late_monitor.config import load_settings
from late_monitor.daemon import Daemon
from late_monitor.simulator import DEFAULT_KEY, Simulator
from tests.support.process import daemon, free_port, run_cli
from tests.support.sink import Sink
from tests.test_clock import Clock

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/reconnect/[\w.-]+)")


def link_in(text: str) -> str:
    match = LINK.search(text)
    assert match, text
    return match.group(1)


def signing_key(state: Path) -> str:
    with sqlite3.connect(state) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'reconnect_key'").fetchone()
    return str(value).strip('"')


async def test_a_link_redirects_to_a_fresh_auth_url_and_the_recovery_is_reported(
    sim: Simulator, sink: Sink, daemon_config, base_env, tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(
        monitor={"interval": "60s"},  # only the re-check can see the recovery in time
        http={
            "listen": f"127.0.0.1:{port}",
            "public_url": f"http://127.0.0.1:{port}/",
            "recheck_after": "1s",
        },
    )
    sim.break_account("acc_00001")
    async with daemon(config, base_env, tmp_path) as running:
        await running.until(lambda: len(sink.received) == 1)
        link = link_in(sink.received[0]["message"])
        async with aiohttp.ClientSession() as http:
            async with http.get(link, allow_redirects=False) as answer:
                assert answer.status == 302
                assert answer.headers["Referrer-Policy"] == "no-referrer"
                assert answer.headers["Cache-Control"] == "no-store"
                auth_url = answer.headers["Location"]
            assert auth_url == sim.auth_urls[-1]
            assert "/_sim/oauth/instagram?" in auth_url
            assert "profileId=prof_2" in sim.urls("/connect/instagram")[-1]
            async with http.get(auth_url) as done:  # the person completes OAuth
                assert done.status == 200
            await running.until(lambda: len(sink.received) == 2, limit=10)
            assert sink.received[1]["type"] == "success"
            assert "acc_00001" in sink.received[1]["message"]

            async with http.get(link, allow_redirects=False) as again:
                assert again.status == 410
                assert "Location" not in again.headers
                assert "recovered since this link was sent" in await again.text()

            tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
            async with http.get(tampered, allow_redirects=False) as bad:
                assert bad.status == 400
                assert "not valid" in await bad.text()
    key = signing_key(tmp_path / "state.db")
    said = "".join(running.lines)
    assert key not in said
    assert DEFAULT_KEY not in said
    assert auth_url not in said  # the authUrl is for the person who opened the link only


@pytest.fixture
async def in_process(monitor_config: Callable[..., Path]) -> AsyncIterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(clock: Clock, **sections: dict[str, object]) -> Daemon:
        config = monitor_config(**sections)
        made.append(
            Daemon(load_settings(str(config), environ={}), config_arg=str(config), clock=clock)
        )
        return made[-1]

    yield make
    for running in made:
        await running.deps.client.close()
        running.store.close()


async def test_an_expired_link_gets_a_page_saying_so_not_a_redirect(
    sim: Simulator, sink: Sink, in_process: Callable[..., Daemon]
) -> None:
    clock = Clock()
    running = in_process(clock, http={"public_url": "https://monitor.example", "link_expiry": "7d"})
    sim.break_account("acc_00001")
    await running.poll()
    token = sink.received[0]["message"].split("https://monitor.example/reconnect/")[1].split()[0]
    clock.advance(days=6, hours=23)
    assert (await running.reconnect(token)).status == 302
    clock.advance(hours=2)
    expired = await running.reconnect(token)
    assert (expired.status, expired.location) == (410, "")
    assert "expired" in expired.text
    assert sim.count("/connect/") == 1


async def test_credential_platforms_get_lates_dashboard_instead(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    sim.set("acc_00002", platform="bluesky")
    config = monitor_config(http={"public_url": "https://monitor.example"})
    sim.break_account("acc_00002")
    sim.break_account("acc_00001")
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    text = sink.received[0]["message"]
    origin = sim.base_url.rsplit("/api/", 1)[0]
    bluesky = next(block for block in text.split("\n[") if "acc_00002" in block)
    assert f"{origin}/dashboard/profiles/prof_3/accounts" in bluesky
    assert "/reconnect/" not in bluesky
    instagram = next(block for block in text.split("\n[") if "acc_00001" in block)
    assert "https://monitor.example/reconnect/" in instagram


async def test_without_a_public_url_the_message_names_a_command_that_prints_a_fresh_link(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    sim.break_account("acc_00001")
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    assert (
        "reconnect: run late-monitor reconnect acc_00001 for a fresh link"
        in (sink.received[0]["message"])
    )
    printed = await run_cli(
        "reconnect", "acc_00001", "--config", str(config), env=base_env, cwd=tmp_path
    )
    assert printed.code == 0, printed.output
    assert printed.stdout.strip().endswith(sim.auth_urls[-1])
    assert DEFAULT_KEY not in printed.output

    unknown = await run_cli(
        "reconnect", "acc_99999", "--config", str(config), env=base_env, cwd=tmp_path
    )
    assert unknown.code == 2
    assert "no account 'acc_99999'" in unknown.stderr


async def test_a_link_whose_connect_call_fails_says_so_without_redirecting(
    sim: Simulator, sink: Sink, in_process: Callable[..., Daemon]
) -> None:
    from late_monitor.simulator import Fault

    clock = Clock()
    running = in_process(clock, http={"public_url": "https://monitor.example"})
    sim.break_account("acc_00001")
    await running.poll()
    token = sink.received[0]["message"].split("/reconnect/")[1].split()[0]
    sim.inject(Fault(kind="status", status=403, path="/connect/"))
    answer = await running.reconnect(token)
    assert (answer.status, answer.location) == (502, "")
    assert "Late did not give a reconnect link" in answer.text
    clock.advance(minutes=1)
    assert (await running.reconnect(token)).status == 302


async def test_a_link_stays_spent_when_its_account_breaks_again_after_recovering(
    sim: Simulator, sink: Sink, in_process: Callable[..., Daemon]
) -> None:
    clock = Clock()
    running = in_process(clock, http={"public_url": "https://monitor.example"})
    sim.break_account("acc_00001")
    await running.poll()
    old = sink.received[0]["message"].split("/reconnect/")[1].split()[0]
    sim.heal("acc_00001")
    clock.advance(minutes=5)
    await running.poll()
    sim.break_account("acc_00001")
    clock.advance(minutes=5)
    await running.poll()
    fresh = sink.received[-1]["message"].split("/reconnect/")[1].split()[0]
    assert fresh != old
    replayed = await running.reconnect(old)
    assert (replayed.status, replayed.location) == (410, "")
    assert (await running.reconnect(fresh)).status == 302
