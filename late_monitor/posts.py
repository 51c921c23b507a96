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
from late_monitor.impact import Listing, Page, ScheduledPost
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
        """Page 1, then the other pages (up to the cap) at once: the budget paces them, and
        the listing takes one round trip more than the first page instead of one per page.
        What is kept is the run of pages from the first that all came."""
        end = self._now + timedelta(seconds=self._horizon)
        deadline = None if within is None else time.monotonic() + within

        async def page(number: int) -> Page:
            return await self._client.scheduled_posts(
                date_from=f"{self._now:%Y-%m-%d}",
                date_to=f"{end:%Y-%m-%d}",
                page=number,
                profile_id=self._profile_id,
                platform=platform,
            )

        try:
            async with asyncio.timeout(within):
                first = await page(1)
        except TimeoutError:
            return Listing(pages=1, error=f"no answer within {within:g}s")
        except LateApiError as exc:
            return Listing(pages=1, error=str(exc))
        wanted = min(first.pages, self._max_pages)
        tasks = [asyncio.ensure_future(page(n)) for n in range(2, wanted + 1)]
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=left)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        posts = list(first.posts)
        why = ""
        for task in tasks:
            if task.cancelled():
                why = f"cut after {within:g}s"
                break
            if (failed := task.exception()) is not None:
                why = str(failed) if isinstance(failed, LateApiError) else repr(failed)
                break
            posts.extend(task.result().posts)
        spent = 1 + len(tasks)
        if not why and first.pages > self._max_pages:
            why = f"cut at impact.max_pages ({self._max_pages})"
        if why:
            return self._cut(posts, spent, why)
        return Listing(posts=tuple(posts), until=end, complete=True, pages=spent)

    def _cut(self, posts: list[ScheduledPost], spent: int, why: str) -> Listing:
        """A listing that stopped early: what came is exact up to its last post (pages come
        soonest first); with nothing read, nothing is known."""
        if not posts:
            return Listing(pages=spent, error=why)
        return Listing(posts=tuple(posts), until=max(p.due for p in posts), pages=spent, error=why)
