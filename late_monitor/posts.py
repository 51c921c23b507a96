"""One cycle's lookup of scheduled posts: one listing, page by page, bounded in time and pages.

A cycle makes one `Lookup` and asks it as often as it likes (the news, then the follow-up):
the listing is fetched once and kept. It never raises: a listing that fails or is late is
"unknown", and the alert goes out without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from late_monitor.errors import LateApiError
from late_monitor.impact import Listing, ScheduledPost
from late_monitor.late import LateClient
from late_monitor.state import AccountState

log = structlog.get_logger("late_monitor.posts")


class Lookup:
    """The cycle's listing of scheduled posts, fetched on first need and then cached."""

    def __init__(
        self,
        client: LateClient,
        *,
        now: datetime,
        horizon: float,
        max_pages: int,
        profile_id: str = "",
    ) -> None:
        self._client = client
        self._now = now
        self._horizon = horizon
        self._max_pages = max_pages
        self._profile_id = profile_id
        self._listing: Listing | None = None

    @property
    def requests(self) -> int:
        return self._listing.pages if self._listing else 0

    async def listing(self, accounts: Sequence[AccountState], *, within: float | None) -> Listing:
        """The listing for these accounts (narrowed to their platform when they share one),
        as far as it got in `within` seconds (None: no limit but the page cap)."""
        if self._listing is not None:
            return self._listing
        if not accounts:
            return Listing(error="no account to look up")
        if self._max_pages <= 0:
            self._listing = Listing(error="impact.max_pages is 0")
            return self._listing
        platforms = {state.platform for state in accounts}
        platform = next(iter(platforms)) if len(platforms) == 1 else ""
        listing = await self._fetch(platform=platform, within=within)
        self._listing = replace(listing, platform=platform)
        log.info(
            "scheduled_posts_listed",
            posts=len(self._listing.posts),
            requests=self._listing.pages,
            complete=self._listing.complete,
            error=self._listing.error or None,
        )
        return self._listing

    async def _fetch(self, *, platform: str, within: float | None) -> Listing:
        end = self._now + timedelta(seconds=self._horizon)
        posts: list[ScheduledPost] = []
        deadline = None if within is None else time.monotonic() + within
        page, pages, spent = 1, 1, 0
        while page <= pages:
            if page > self._max_pages:
                return self._cut(posts, spent, f"cut at impact.max_pages ({self._max_pages})")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self._cut(posts, spent, f"cut after {within:g}s")
            spent += 1
            try:
                async with asyncio.timeout(left):
                    found = await self._client.scheduled_posts(
                        date_from=f"{self._now:%Y-%m-%d}",
                        date_to=f"{end:%Y-%m-%d}",
                        page=page,
                        profile_id=self._profile_id,
                        platform=platform,
                    )
            except TimeoutError:
                return self._cut(posts, spent, f"no answer within {within:g}s")
            except LateApiError as exc:
                return self._cut(posts, spent, str(exc))
            posts.extend(found.posts)
            pages = found.pages
            page += 1
        return Listing(posts=tuple(posts), until=end, complete=True, pages=spent)

    def _cut(self, posts: list[ScheduledPost], spent: int, why: str) -> Listing:
        """A listing that stopped early: what came is exact up to its last post (pages come
        soonest first); with nothing read, nothing is known."""
        if not posts:
            return Listing(pages=spent, error=why)
        return Listing(posts=tuple(posts), until=max(p.due for p in posts), pages=spent, error=why)
