"""Quiet hours: windows in local time (midnight, DST), held messages become one summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from late_monitor.config import load_settings
from late_monitor.errors import ConfigError
from late_monitor.quiet import QuietWindow, holding, parse_days
from late_monitor.simulator import Simulator
from late_monitor.status import status_report
from tests.support.clock import Clock, clocked_daemon
from tests.support.config import write_config
from tests.support.sink import Sink

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietWindow(start=time(22), end=time(7), zone=BERLIN)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (utc(2026, 1, 5, 20, 59), None),  # 21:59 Berlin (CET, +1)
        (utc(2026, 1, 5, 21, 0), utc(2026, 1, 6, 6, 0)),  # 22:00: until 07:00 Berlin
        (utc(2026, 1, 5, 23, 30), utc(2026, 1, 6, 6, 0)),  # after midnight UTC... and Berlin
        (utc(2026, 1, 6, 5, 59), utc(2026, 1, 6, 6, 0)),  # began yesterday, crosses midnight
        (utc(2026, 1, 6, 6, 0), None),
    ],
)
def test_a_window_that_crosses_midnight_ends_the_next_morning(
    now: datetime, until: datetime | None
) -> None:
    hold = holding([NIGHT], now)
    assert (hold.until if hold else None) == until


def test_the_spring_forward_night_is_an_hour_shorter_in_utc() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 22:00 (+1) to 07:00 (+2) is 8 hours, not 9
    assert NIGHT.around(utc(2026, 3, 29, 4, 59)) == (utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 5))
    assert holding([NIGHT], utc(2026, 3, 29, 5, 0)) is None


def test_the_fall_back_night_is_an_hour_longer_in_utc() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 22:00 (+2) to 07:00 (+1) is 10 hours
    assert NIGHT.around(utc(2026, 10, 25, 5, 30)) == (
        utc(2026, 10, 24, 20, 0),
        utc(2026, 10, 25, 6, 0),
    )
    assert holding([NIGHT], utc(2026, 10, 25, 6, 0)) is None


def test_a_window_starting_in_the_skipped_hour_starts_when_the_clock_jumps() -> None:
    window = QuietWindow(start=time(2, 30), end=time(4), zone=BERLIN)
    begin, end = window.around(utc(2026, 3, 29, 1, 45)) or (None, None)
    assert (begin, end) == (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 0))


def test_days_are_the_days_a_window_starts_on() -> None:
    friday_night = QuietWindow(start=time(22), end=time(7), zone=UTC, days=parse_days(["fri"]))
    assert holding([friday_night], utc(2026, 1, 10, 3, 0)) is not None  # Saturday 03:00
    assert holding([friday_night], utc(2026, 1, 11, 3, 0)) is None  # Sunday 03:00
    assert parse_days(["mon-fri"]) == frozenset(range(5))
    assert parse_days(["sat-mon"]) == frozenset({5, 6, 0})


def test_overlapping_windows_hold_the_union_until_the_last_ends() -> None:
    late = QuietWindow(start=time(20), end=time(23), zone=UTC, hold=frozenset({"failure"}))
    evening = QuietWindow(start=time(18), end=time(22), zone=UTC)
    hold = holding([late, evening], utc(2026, 1, 5, 21, 0))
    assert hold is not None
    assert hold.until == utc(2026, 1, 5, 23, 0)
    assert hold.types == {"info", "success", "warning", "failure"}


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ({"start": "25:00", "end": "07:00"}, "monitor.quiet_hours.0.start: '25:00' is not a time"),
        ({"start": "22:00"}, "monitor.quiet_hours.0.end: Field required"),
        (
            {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"},
            "monitor.quiet_hours.0.timezone: 'Mars/Olympus' is not a time zone",
        ),
        (
            {"start": "22:00", "end": "07:00", "days": ["someday"]},
            "monitor.quiet_hours.0.days: 'someday' is not a day",
        ),
    ],
)
def test_a_bad_window_is_one_line_naming_the_key_and_the_file(
    tmp_path: Path, window: dict[str, object], problem: str
) -> None:
    path = write_config(tmp_path / "c.toml", {"monitor": {"quiet_hours": [window]}})
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path), environ={})
    (line,) = caught.value.problems
    assert line.startswith(f"{path}: {problem}"), line


async def test_held_messages_become_one_summary_when_the_window_ends_and_failures_pass(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock(utc(2026, 1, 5, 21, 50))
    window = {"start": "22:00", "end": "07:00", "timezone": "UTC"}
    async with clocked_daemon(
        monitor_config,
        clock,
        monitor={"detail": "never", "quiet_hours": [window]},
        notify={"retry_for": "1h"},  # held longer than that: still never dropped
    ) as daemon:
        await daemon.poll()
        clock.advance(hours=1)  # 22:50
        sim.set("acc_00001", status="warning")
        sim.break_account("acc_00002")
        await daemon.poll()
        assert len(sink.received) == 1  # the failure, at once
        assert "acc_00002" in sink.received[0]["message"]
        assert "acc_00001" not in sink.received[0]["message"]
        held = status_report(daemon.store, now=clock.now)["held"]
        assert [h["until"] for h in held] == ["2026-01-06T07:00:00+00:00"]

        clock.advance(hours=4)  # 02:50: a recovery (success) is held too
        sim.heal("acc_00001")
        await daemon.poll()
        assert len(sink.received) == 1

        clock.advance(hours=4, minutes=9)  # 06:59
        await daemon.retry_outbox()
        assert len(sink.received) == 1
        clock.advance(minutes=1)  # 07:00: the outbox job releases them, between polls
        await daemon.retry_outbox()
        assert len(sink.received) == 2
        summary = sink.received[1]
        assert summary["title"] == "Late: 2 messages held during quiet hours"
        assert summary["type"] == "warning"
        body = summary["message"]
        assert body.index("2026-01-05 22:50 UTC") < body.index("2026-01-06 02:50 UTC")
        assert "acc_00001" in body
        assert "recovered" in body
        assert status_report(daemon.store, now=clock.now)["held"] == []
        clock.advance(minutes=5)
        await daemon.poll()
        assert len(sink.received) == 2  # sent once


async def test_a_window_that_holds_failures_holds_them_too(
    sim: Simulator, sink: Sink, monitor_config: Callable[..., Path]
) -> None:
    clock = Clock(utc(2026, 1, 5, 21, 50))
    window = {"start": "22:00", "end": "23:00", "hold": ["failure", "warning"]}
    async with clocked_daemon(
        monitor_config, clock, monitor={"detail": "never", "quiet_hours": [window]}
    ) as daemon:
        await daemon.poll()
        clock.advance(minutes=20)
        sim.break_account("acc_00003")
        await daemon.poll()
        assert sink.received == []
        clock.advance(minutes=50)  # 23:00, the next poll releases it
        await daemon.poll()
        assert [m["title"] for m in sink.received] == ["Late: 1 message held during quiet hours"]
        assert sink.received[0]["type"] == "failure"
