"""Impact: the scheduled posts of a failing account, in its message, its state and `status`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from late_monitor.config import load_settings
from late_monitor.daemon import Daemon
from late_monitor.events import Event, Kind, NotifyType
from late_monitor.impact import (
    Impact,
    Listing,
    ScheduledPost,
    apply_impact,
    needing,
    parse_page,
    tally,
)
from late_monitor.simulator import Fault, Simulator
from late_monitor.state import AccountState
from tests.support.process import run_cli
from tests.support.sink import Sink
from tests.test_clock import T0, Clock


def soon(**delta: float) -> datetime:
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)


async def once(config: Path, env: dict[str, str], cwd: Path) -> None:
    ran = await run_cli("run", "--once", "--config", str(config), env=env, cwd=cwd)
    assert ran.code == 0, ran.output


async def test_a_failing_account_is_told_how_many_posts_will_fail_and_when_the_first_is(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    await once(config, base_env, tmp_path)
    sim.add_post("acc_00001", soon(hours=2, minutes=14, seconds=30))
    sim.add_post(["acc_00001", "acc_00002"], soon(hours=30))
    sim.add_post("acc_00001", soon(hours=70))
    sim.add_post("acc_00001", soon(hours=80))  # beyond the 72 h horizon
    sim.add_post("acc_00003", soon(hours=1))  # another account's
    sim.break_account("acc_00001")
    await once(config, base_env, tmp_path)

    (message,) = sink.received
    assert (
        "impact: 3 scheduled posts in the next 3 days, the first in 2 h 14 min"
        in (message["message"])
    )
    assert sim.count("/posts") == 1  # one listing for the cycle
    status = await run_cli("status", "--json", "--config", str(config), env=base_env, cwd=tmp_path)
    accounts = {a["account_id"]: a for a in json.loads(status.stdout)["accounts"]}
    assert accounts["acc_00001"]["scheduled_posts"] == 3
    assert accounts["acc_00001"]["next_post_at"].startswith(f"{soon(hours=2, minutes=14):%Y-%m-%d}")
    assert accounts["acc_00002"]["scheduled_posts"] is None  # healthy: never looked up


async def test_no_listing_when_nothing_fails(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    await once(config, base_env, tmp_path)
    sim.set("acc_00001", status="healthy")
    await once(config, base_env, tmp_path)
    assert sim.count("/posts") == 0


async def test_a_failed_listing_says_scheduled_posts_unknown_and_the_alert_goes_out(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    await once(config, base_env, tmp_path)
    sim.inject(Fault(kind="status", status=500, path="/posts", count=10))
    sim.break_account("acc_00001")
    await once(config, base_env, tmp_path)
    (message,) = sink.received
    assert message["type"] == "failure"
    assert "impact: scheduled posts unknown" in message["message"]


async def test_a_listing_that_hangs_does_not_hold_the_alert_back(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(late={"timeout": "30s"})
    await once(config, base_env, tmp_path)
    sim.inject(Fault(kind="hang", delay=60, path="/posts"))
    sim.break_account("acc_00001")
    started = datetime.now(UTC)
    await once(config, base_env, tmp_path)
    assert datetime.now(UTC) - started < timedelta(seconds=20)  # the 5 s slice, not 30 s
    (message,) = sink.received
    assert "impact: scheduled posts unknown" in message["message"]


async def test_pages_are_followed_and_counted_against_the_request_budget(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    sim.set("acc_00004", platform=sim.accounts["acc_00001"].platform)  # the listing's platform
    await once(config, base_env, tmp_path)
    for minute in range(250):  # 3 pages of 100, the account's posts on the last one
        sim.add_post("acc_00004", soon(hours=1, minutes=minute))
    sim.add_post("acc_00001", soon(hours=9, minutes=1))
    sim.break_account("acc_00001")
    await once(config, base_env, tmp_path)
    assert sim.count("/posts") == 3
    assert all("platform=instagram" in url for url in sim.urls("/posts"))
    assert (
        "impact: 1 scheduled post in the next 3 days, the first in 9 h"
        in (sink.received[0]["message"])
    )
    status = await run_cli("status", "--json", "--config", str(config), env=base_env, cwd=tmp_path)
    last = json.loads(status.stdout)["cycles"][0]
    assert last["requests"] == 1 + 1 + 3  # list, detail, three pages


async def test_a_listing_cut_at_max_pages_gives_a_lower_bound(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config(impact={"max_pages": 1})
    await once(config, base_env, tmp_path)
    for minute in range(150):
        sim.add_post("acc_00001", soon(hours=1, minutes=minute))
    sim.break_account("acc_00001")
    await once(config, base_env, tmp_path)
    assert sim.count("/posts") == 1
    assert "impact: at least 100 scheduled posts before " in sink.received[0]["message"]


@pytest.mark.parametrize(
    ("due_in", "expected"), [(timedelta(minutes=40), "failure"), (timedelta(hours=5), "warning")]
)
async def test_a_warning_with_a_post_due_soon_is_raised_to_failure(
    sim: Simulator,
    sink: Sink,
    monitor_config,
    base_env,
    tmp_path: Path,
    due_in: timedelta,
    expected: str,
) -> None:
    config = monitor_config()
    await once(config, base_env, tmp_path)
    sim.add_post("acc_00002", datetime.now(UTC) + due_in)
    sim.set("acc_00002", status="warning", issues=["Rate limited by the platform"])
    await once(config, base_env, tmp_path)
    (message,) = sink.received
    assert message["type"] == expected
    assert ("raised to failure: a scheduled post is due in" in message["message"]) is (
        expected == "failure"
    )


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
    for daemon in made:
        await daemon.deps.client.close()
        daemon.store.close()


async def test_a_reminder_recounts_the_posts(
    sim: Simulator, sink: Sink, in_process: Callable[..., Daemon]
) -> None:
    clock = Clock()
    # polls minutes apart by this clock, a moment apart in fact: a budget that lets them
    daemon = in_process(
        clock, monitor={"remind_every": "24h"}, late={"max_requests_per_minute": 600}
    )
    await daemon.poll()
    sim.add_post("acc_00001", T0 + timedelta(hours=3))
    sim.break_account("acc_00001")
    clock.advance(minutes=5)
    await daemon.poll()
    assert "1 scheduled post in the next 3 days" in sink.received[-1]["message"]

    sim.add_post("acc_00001", T0 + timedelta(hours=30))
    sim.add_post("acc_00001", T0 + timedelta(hours=40))
    clock.advance(hours=25)
    await daemon.poll()
    reminder = sink.received[-1]["message"]
    assert "since" in reminder  # the reminder's own note
    # 25 h later the 3 h post is past; the two new ones are counted
    assert "2 scheduled posts in the next 3 days, the first in 4 h 55 min" in reminder
    assert sim.count("/posts") == 2


def test_a_page_reads_account_ids_and_objects_and_skips_what_it_cannot_read() -> None:
    page = parse_page(
        json.dumps(
            {
                "posts": [
                    {
                        "scheduledFor": "2026-01-01T10:00:00Z",
                        "platforms": [
                            {"accountId": "a1"},
                            {"accountId": {"_id": "a2"}, "scheduledFor": "2026-01-01T11:00:00Z"},
                            {"accountId": "a3", "status": "published"},
                            {"accountId": None},
                            None,
                        ],
                    },
                    None,
                    {"scheduledFor": "not a date", "platforms": [{"accountId": "a4"}]},
                ],
                "pagination": {"page": 1, "pages": 4},
            }
        ).encode()
    )
    assert [(p.account_id, f"{p.due:%H}") for p in page.posts] == [("a1", "10"), ("a2", "11")]
    assert page.pages == 4


def state(account_id: str, status: str = "error", platform: str = "twitter") -> AccountState:
    return AccountState(
        account_id=account_id,
        platform=platform,
        username=account_id,
        status=status,
        needs_reconnect=False,
        can_post=True,
        since=T0,
    )


def post(account_id: str, **delta: float) -> ScheduledPost:
    return ScheduledPost(account_id, T0 + timedelta(**delta))


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        (Listing(error="HTTP 500"), (False, 0, None, False)),
        (
            Listing(
                posts=(post("a", hours=3), post("a", hours=1), post("b", hours=2)),
                until=T0 + timedelta(hours=72),
                complete=True,
            ),
            (True, 2, 3600.0, False),
        ),
        (  # cut after the post due in 1 h: what lies beyond is not counted
            Listing(posts=(post("a", hours=1),), until=T0 + timedelta(hours=1)),
            (True, 1, 3600.0, True),
        ),
        (  # a post already due, or past the horizon, does not count
            Listing(
                posts=(post("a", hours=-1), post("a", hours=80)),
                until=T0 + timedelta(hours=100),
                complete=True,
            ),
            (True, 0, None, False),
        ),
        (  # narrowed to another platform: not covered
            Listing(posts=(post("a", hours=1),), until=T0 + timedelta(hours=72), platform="x"),
            (False, 0, None, False),
        ),
    ],
)
def test_tally_counts_each_accounts_posts_as_far_as_the_listing_reached(
    listing: Listing, expected: tuple[bool, int, float | None, bool]
) -> None:
    (impact,) = tally(listing, [state("a")], now=T0, horizon=72 * 3600).values()
    assert (impact.known, impact.count, impact.first_in, impact.at_least) == expected


def test_needing_takes_failures_and_the_warnings_of_unhealthy_accounts() -> None:
    states = {s.account_id: s for s in (state("f", "healthy"), state("w"), state("t", "healthy"))}
    events = [
        Event(Kind.PERMISSION_LOST, NotifyType.FAILURE, states["f"]),  # healthy, cannot post
        Event(Kind.DEGRADED, NotifyType.WARNING, states["w"]),
        Event(Kind.TOKEN_EXPIRING, NotifyType.WARNING, states["t"]),  # healthy: nothing fails
        Event(Kind.API_UNREACHABLE, NotifyType.FAILURE),
    ]
    assert needing(events, states) == ["f", "w"]


@pytest.mark.parametrize(
    ("first_in", "within", "raised"),
    [(3599.0, 7200.0, True), (7200.0, 7200.0, False), (60.0, 0.0, False), (None, 7200.0, False)],
)
def test_a_warning_is_raised_only_when_a_post_is_due_within_the_threshold(
    first_in: float | None, within: float, raised: bool
) -> None:
    warned = state("w", "warning")
    event = Event(Kind.DEGRADED, NotifyType.WARNING, warned, "healthy", "warning")
    impact = Impact(known=True, count=1 if first_in else 0, first_in=first_in)
    updated, (out,), ids = apply_impact(
        {"w": warned}, [event], {"w": impact}, now=T0, escalate_within=within
    )
    assert (out.notify_type is NotifyType.FAILURE) is raised
    assert (ids == {"w"}) is raised
    assert updated["w"].scheduled_posts == impact.count
    assert out.account is updated["w"]


def test_a_post_whose_text_holds_a_lone_half_of_an_emoji_leaves_the_page_read() -> None:
    body = json.dumps(
        {
            "posts": [
                {
                    "content": "launch \ud83d",  # cut by JavaScript, escaped as \ud83d
                    "scheduledFor": "2026-01-01T10:00:00Z",
                    "platforms": [{"accountId": "a1"}],
                }
            ],
            "pagination": {"page": 1, "pages": 1},
        }
    ).encode()
    assert b"\\ud83d" in body
    page = parse_page(body)
    assert [post.account_id for post in page.posts] == ["a1"]
