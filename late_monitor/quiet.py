"""Quiet hours, as data: whether an instant falls in a window, when that window ends, and the
one summary that the messages it held become.

Pure: `now` comes from the caller; windows are wall-clock times in their own time zone
(zoneinfo), so a window keeps its local hours across daylight-saving changes and may cross
midnight (22:00-07:00 ends the next morning).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from late_monitor.events import NotifyType

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_HOLD = frozenset({"info", "success", "warning"})


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """From `start` to `end` local time in `zone`, starting on `days` (0 = Monday); an end
    at or before the start is the next day's. Messages of the `hold` notify types wait."""

    start: time
    end: time
    zone: tzinfo
    days: frozenset[int] = frozenset(range(7))
    hold: frozenset[str] = DEFAULT_HOLD

    def around(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) in UTC of this window's occurrence that contains `now`."""
        local_day = now.astimezone(self.zone).date()
        for offset in (0, -1):  # one that began today, or yesterday and crosses midnight
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            begin, finish = self._on(day)
            if begin <= now < finish:
                return begin, finish
        return None

    def _on(self, day: date) -> tuple[datetime, datetime]:
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        # A wall time in a spring-forward gap is read with the offset before the change
        # (fold=0): 02:30 on that night is 03:30 of the new offset, the hour after the gap.
        begin = datetime.combine(day, self.start, tzinfo=self.zone).astimezone(UTC)
        finish = datetime.combine(end_day, self.end, tzinfo=self.zone).astimezone(UTC)
        return begin, finish


@dataclass(frozen=True, slots=True)
class Hold:
    """The notify types held at an instant, and until when."""

    until: datetime
    types: frozenset[str]


def holding(windows: Iterable[QuietWindow], now: datetime) -> Hold | None:
    """What the windows around `now` hold, until the last of them ends; None outside them."""
    found = [(w, span) for w in windows if (span := w.around(now)) is not None]
    if not found:
        return None
    return Hold(
        until=max(span[1] for _, span in found),
        types=frozenset().union(*(w.hold for w, _ in found)),
    )


def parse_time(text: str) -> time:
    """ "HH:MM" (24 h); "24:00" is midnight at the end of the day."""
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text!r} is not a time like '22:00'")
    h, m = int(hours), int(minutes)
    if (h, m) == (24, 0):
        return time(0, 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return time(h, m)


def parse_days(names: Sequence[str]) -> frozenset[int]:
    """["mon", "tue", ...] or ranges like "mon-fri" -> weekday numbers (0 = Monday)."""
    out: set[int] = set()
    for name in names:
        first, _, last = name.strip().lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{name!r} is not a day ({', '.join(DAYS)} or a range like mon-fri)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class HeldMessage:
    created_at: float  # epoch seconds
    notify_type: str
    title: str
    body: str


def summary(held: Sequence[HeldMessage]) -> tuple[str, str, str]:
    """Title, body and notify type of the one message that replaces those held for one
    destination: each held message in order, its time and title, then its body indented."""
    ordered = sorted(held, key=lambda m: m.created_at)
    worst = max((m.notify_type for m in ordered), key=_weight, default="info")
    count = len(ordered)
    title = f"Late: {count} message{'s' if count != 1 else ''} held during quiet hours"
    blocks = []
    for message in ordered:
        when = datetime.fromtimestamp(message.created_at, UTC)
        lines = [f"{when:%Y-%m-%d %H:%M} UTC {message.title}"]
        lines += ["    " + line.strip() for line in message.body.splitlines() if line.strip()]
        blocks.append("\n".join(lines))
    return title, "\n".join(blocks), worst


def _weight(notify_type: str) -> int:
    try:
        return NotifyType(notify_type).weight
    except ValueError:
        return NotifyType.WARNING.weight
