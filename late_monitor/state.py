"""What late-monitor remembers between polls: each account's state and the API's health.

Plain frozen values, shared by the rules that compute them, the store that keeps them and
the commands that show them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import TypedDict, Unpack

HEALTHY = "healthy"
DEFAULT_WORKSPACE = "default"  # the one implicit workspace of a config without [[workspaces]]
_RANK = {"healthy": 0, "warning": 1, "error": 2}


def rank(status: str) -> int:
    """healthy < warning < error; an unknown status ranks as warning."""
    return _RANK.get(status, 1)


def known_status(status: str) -> bool:
    return status in _RANK


Condition = tuple[str, bool, bool]  # (status, needs_reconnect, can_post)


@dataclass(frozen=True, slots=True)
class AccountState:
    """What we remember about one account between polls."""

    account_id: str
    platform: str
    username: str
    status: str
    needs_reconnect: bool
    can_post: bool
    since: datetime
    token_valid: bool = True
    token_expires_at: datetime | None = None
    issues: tuple[str, ...] = ()
    display_name: str = ""
    profile_id: str | None = None
    pending: Condition | None = None
    pending_count: int = 0
    last_notice_at: datetime | None = None
    token_warned: tuple[float, ...] = ()
    missing_scopes: tuple[str, ...] = ()
    detail_at: datetime | None = None
    absent_polls: int = 0
    can_fetch_analytics: bool = True
    absent_since: datetime | None = None
    detail_due: bool = False  # news went out before its detail came: fetch it next
    scheduled_posts: int | None = None  # due within [impact] horizon at impact_at; None: unknown
    next_post_at: datetime | None = None
    impact_at: datetime | None = None
    recovered_at: datetime | None = None  # reconnect links issued before this are spent
    claimed_at: datetime | None = None  # a webhook said so; no poll has confirmed it yet
    # The quiet mark, set by the rules only (`marked`): `listed` is the fingerprint of the
    # listing entry this state agrees with, `quiet_until` (epoch seconds, inf: never) when
    # that same entry could next bring news (a token threshold, a reminder). Not init fields,
    # so every `replace` clears them: a state changed by anything else is judged in full
    # at the next poll.
    listed: bytes | None = field(default=None, init=False, compare=False)
    quiet_until: float | None = field(default=None, init=False, compare=False)

    @property
    def condition(self) -> Condition:
        return (self.status, self.needs_reconnect, self.can_post)

    @property
    def healthy(self) -> bool:
        return is_healthy(self.condition)

    def entering(self, condition: Condition, *, at: datetime) -> AccountState:
        """This account in `condition` from `at` on, nothing left pending confirmation."""
        status, needs_reconnect, can_post = condition
        return evolved(
            self,
            status=status,
            needs_reconnect=needs_reconnect,
            can_post=can_post,
            since=at,
            pending=None,
            pending_count=0,
        )


def marked(state: AccountState, listed: bytes | None, quiet_until: float | None) -> AccountState:
    """`state` with the quiet mark given (itself when it has that mark already)."""
    if state.listed == listed and state.quiet_until == quiet_until:
        return state
    return stamped(evolved(state), listed, quiet_until)  # a copy, then its mark


def stamped(fresh: AccountState, listed: bytes | None, quiet_until: float | None) -> AccountState:
    """A state just made (decoded, copied), that no one else holds yet, given its mark."""
    object.__setattr__(fresh, "listed", listed)
    object.__setattr__(fresh, "quiet_until", quiet_until)
    return fresh


_FIELDS = tuple(f.name for f in fields(AccountState) if f.init)
_VALUES = attrgetter(*_FIELDS)  # a state's init fields, in order, in one call
_POSITION = {name: index for index, name in enumerate(_FIELDS)}


class Changes(TypedDict, total=False):
    """What `evolved` may change: AccountState's init fields, by name and type (a test
    holds the two alike)."""

    account_id: str
    platform: str
    username: str
    status: str
    needs_reconnect: bool
    can_post: bool
    since: datetime
    token_valid: bool
    token_expires_at: datetime | None
    issues: tuple[str, ...]
    display_name: str
    profile_id: str | None
    pending: Condition | None
    pending_count: int
    last_notice_at: datetime | None
    token_warned: tuple[float, ...]
    missing_scopes: tuple[str, ...]
    detail_at: datetime | None
    absent_polls: int
    can_fetch_analytics: bool
    absent_since: datetime | None
    detail_due: bool
    scheduled_posts: int | None
    next_post_at: datetime | None
    impact_at: datetime | None
    recovered_at: datetime | None
    claimed_at: datetime | None


def evolved(state: AccountState, /, **changes: Unpack[Changes]) -> AccountState:
    """`dataclasses.replace(state, **changes)`, the quiet mark cleared as by it, at half its
    cost (~8 against ~16 us): the rules copy a changed account's state ~5 times a poll."""
    values = list(_VALUES(state))
    for name, value in changes.items():
        values[_POSITION[name]] = value
    return AccountState(*values)


QUIET_FOREVER = math.inf  # an entry that, unchanged, never brings news by itself


def is_healthy(condition: Condition) -> bool:
    status, needs_reconnect, can_post = condition
    return status == HEALTHY and not needs_reconnect and can_post


@dataclass(frozen=True, slots=True)
class ApiHealth:
    """How the Late API itself has been answering."""

    consecutive_failures: int = 0
    unreachable_alerted: bool = False
    auth_alerted: bool = False
    last_error: str = ""
    unreadable: dict[str, list[str]] = field(default_factory=dict)  # account -> fields told
    scope_alerted: bool = False  # told that the state file is another scope's
