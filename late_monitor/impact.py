"""What an account's failure costs: its scheduled posts, read from one listing per cycle.

Pure: parses a `GET /posts` page, counts each account's posts due within the horizon, and
raises a warning to a failure when a post is due soon. No I/O, no clock (`now` is passed in).
Late has no accountId filter on the listing, so posts are matched on `platforms[].accountId`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from late_monitor.events import Event, NotifyType
from late_monitor.models import Body, OrDefault, _instant, bad_payload, describe, validated
from late_monitor.state import AccountState, evolved

PAGE_SIZE = 100  # the largest `limit` the listing takes


class _Target(TypedDict, total=False):
    accountId: Annotated[Any, OrDefault(None)]  # an id, or the account object with `_id`
    scheduledFor: Annotated[str | None, OrDefault(None)]
    status: Annotated[str | None, OrDefault(None)]


class _Post(TypedDict, total=False):
    scheduledFor: Annotated[str | None, OrDefault(None)]
    platforms: Annotated[list[Annotated[_Target, OrDefault(None)]], OrDefault([])]


class _Pagination(TypedDict, total=False):
    page: Annotated[int, OrDefault(1)]
    pages: Annotated[int, OrDefault(1)]
    total: Annotated[int, OrDefault(0)]


class _PostsPage(TypedDict, total=False):
    posts: list[Annotated[_Post, OrDefault(None)]]
    pagination: Annotated[_Pagination, OrDefault({})]


@functools.cache
def _page_adapter() -> TypeAdapter[_PostsPage]:
    """Built on the first listing: a cycle with no failing account lists nothing."""
    return TypeAdapter(_PostsPage)


@dataclass(frozen=True, slots=True)
class ScheduledPost:
    """One platform target of a scheduled post: whose account, and when it is due."""

    account_id: str
    due: datetime


@dataclass(frozen=True, slots=True)
class Page:
    posts: tuple[ScheduledPost, ...]
    pages: int  # how many pages the listing has, as Late says


@dataclass(frozen=True, slots=True)
class Listing:
    """The scheduled posts of one cycle's lookup. `until` is how far it is known to reach:
    the horizon when every page came, else the due time of the last post read (pages come
    soonest first). `error` says why there is nothing (a failed or late first page)."""

    posts: tuple[ScheduledPost, ...] = ()
    until: datetime | None = None
    complete: bool = False
    pages: int = 0  # requests spent
    error: str = ""
    platform: str = ""  # the listing was narrowed to this platform ("" = every one)

    @property
    def known(self) -> bool:
        return self.until is not None


@dataclass(frozen=True, slots=True)
class Impact:
    """One account's scheduled posts within the horizon, as far as the listing reached."""

    known: bool
    count: int = 0
    first_due: datetime | None = None
    first_in: float | None = None  # seconds from the lookup to the first post
    until: datetime | None = None  # posts after this are not counted (a cut listing)
    complete: bool = True
    horizon: float = 0.0

    @property
    def at_least(self) -> bool:
        """The count is a lower bound: the listing was cut before the horizon."""
        return self.known and not self.complete


UNKNOWN = Impact(known=False)


def parse_page(body: Body, *, status: int = 200) -> Page:
    """A `GET /posts` page; raise BadPayload when it has no `posts` array."""
    try:
        payload = validated(_page_adapter(), body)
    except ValidationError as exc:
        raise bad_payload(body, status, describe(exc)) from None
    if "posts" not in payload:
        raise bad_payload(body, status, "no posts array")
    found: list[ScheduledPost] = []
    for post in payload["posts"]:
        if not post:
            continue
        for target in post.get("platforms", ()):
            if not target or target.get("status") in ("published", "failed"):
                continue
            account = _account_id(target.get("accountId"))
            due = _due(target.get("scheduledFor") or post.get("scheduledFor"))
            if account and due is not None:
                found.append(ScheduledPost(account, due))
    pages = payload.get("pagination", {}).get("pages", 1)
    return Page(posts=tuple(found), pages=max(int(pages), 1))


def _account_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("_id"), str):
        return str(value["_id"])
    return ""


def _due(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _instant(value)
    except ValueError:
        return None


def needing(events: Iterable[Event], states: Mapping[str, AccountState]) -> list[str]:
    """The accounts whose impact a cycle's message should say: a failure (a lost posting
    permission too), or a warning about an account that is not healthy (a warning may be
    raised). Each once, in the order of their events."""
    wanted: dict[str, None] = {}
    for event in events:
        account_id = event.account_id
        state = states.get(account_id or "")
        if account_id is None or state is None:
            continue
        if event.notify_type is NotifyType.FAILURE or (
            event.notify_type is NotifyType.WARNING and not state.healthy
        ):
            wanted[account_id] = None
    return list(wanted)


def tally(
    listing: Listing, accounts: Sequence[AccountState], *, now: datetime, horizon: float
) -> dict[str, Impact]:
    """Each account's posts due between now and the horizon (or the listing's reach); an
    account the listing did not cover (another platform than it was narrowed to) is unknown."""
    covered = [
        s.account_id for s in accounts if not listing.platform or s.platform == listing.platform
    ]
    impacts = {s.account_id: UNKNOWN for s in accounts}
    if not listing.known:
        return impacts
    accounts_ids = covered
    assert listing.until is not None
    end = min(listing.until, now + timedelta(seconds=horizon))
    wanted = set(accounts_ids)
    due: dict[str, list[datetime]] = {}
    for post in listing.posts:
        if post.account_id in wanted and now <= post.due <= end:
            due.setdefault(post.account_id, []).append(post.due)
    for account_id in accounts_ids:
        times = due.get(account_id, [])
        first = min(times) if times else None
        impacts[account_id] = Impact(
            known=True,
            count=len(times),
            first_due=first,
            first_in=(first - now).total_seconds() if first else None,
            until=end,
            complete=listing.complete,
            horizon=horizon,
        )
    return impacts


def apply_impact(
    states: Mapping[str, AccountState],
    events: Sequence[Event],
    impacts: Mapping[str, Impact],
    *,
    now: datetime,
    escalate_within: float,
) -> tuple[dict[str, AccountState], list[Event], set[str]]:
    """Record each counted account's impact in its state, and raise its warnings to
    failures when its next post is due within `escalate_within` seconds (0: never).

    Returns the states that changed, the events (their accounts updated), and the accounts
    that were raised."""
    updated: dict[str, AccountState] = {}
    for account_id, impact in impacts.items():
        state = states.get(account_id)
        if state is None:
            continue
        updated[account_id] = evolved(
            state,
            scheduled_posts=impact.count if impact.known else None,
            next_post_at=impact.first_due,
            impact_at=now,
        )
    raised = {
        account_id
        for account_id, impact in impacts.items()
        if escalate_within > 0 and impact.first_in is not None and impact.first_in < escalate_within
    }
    out = []
    for event in events:
        account_id = event.account_id or ""
        if account_id in updated and event.account is not None:
            event = replace(event, account=updated[account_id])
        if account_id in raised and event.notify_type is NotifyType.WARNING:
            first_in = impacts[account_id].first_in or 0.0
            note = f"raised to failure: a scheduled post is due in {human(first_in)}"
            event = replace(
                event,
                notify_type=NotifyType.FAILURE,
                note=f"{event.note}; {note}" if event.note else note,
            )
        out.append(event)
    return updated, out, raised


def human(seconds: float) -> str:
    """A short span for people: '45 min', '2 h 14 min', '3 days'."""
    seconds = max(seconds, 0.0)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    hours, rest = divmod(int(seconds) // 60, 60)
    if hours:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{max(rest, 1)} min"
