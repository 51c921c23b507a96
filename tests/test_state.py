"""AccountState's own copies: `evolved` is `dataclasses.replace`, only faster."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

from late_monitor.state import AccountState, Changes, evolved, marked
from tests.support.state import T0
from tests.support.state import full_state as state

INIT = [f for f in fields(AccountState) if f.init]


def other_values() -> dict[str, Any]:
    """A value for each init field unlike `state()`'s."""
    return {
        "account_id": "b2",
        "platform": "tiktok",
        "username": "@b",
        "status": "healthy",
        "needs_reconnect": False,
        "can_post": True,
        "since": T0 + timedelta(hours=1),
        "token_valid": False,
        "token_expires_at": None,
        "issues": (),
        "display_name": "B",
        "profile_id": "p9",
        "pending": None,
        "pending_count": 0,
        "last_notice_at": None,
        "token_warned": (),
        "missing_scopes": (),
        "detail_at": None,
        "absent_polls": 2,
        "can_fetch_analytics": False,
        "absent_since": T0,
        "detail_due": True,
        "scheduled_posts": 3,
        "next_post_at": T0,
        "impact_at": T0,
        "recovered_at": T0,
        "claimed_at": T0,
    }


def test_the_changes_evolved_takes_are_the_states_init_fields_with_their_types() -> None:
    declared = {
        name: getattr(kind, "__forward_arg__", kind)
        for name, kind in Changes.__annotations__.items()
    }
    assert declared == {f.name: f.type for f in INIT}


def test_evolved_makes_what_replace_makes_field_by_field_and_all_at_once() -> None:
    before = state("a1")
    others = other_values()
    assert sorted(others) == sorted(f.name for f in INIT)
    for name, value in others.items():
        assert getattr(before, name) != value, name
        assert evolved(before, **{name: value}) == replace(before, **{name: value}), name
    assert evolved(before, **others) == replace(before, **others) == AccountState(**others)
    assert evolved(before) == before
    assert evolved(before) is not before


def test_evolved_clears_the_quiet_mark_as_replace_does() -> None:
    quiet = marked(state("a1"), b"k" * 16, 5000.0)
    copy = evolved(quiet, status="warning")
    assert (copy.listed, copy.quiet_until) == (None, None)
    assert (quiet.listed, quiet.quiet_until) == (b"k" * 16, 5000.0)
    again = marked(quiet, b"j" * 16, 9.0)
    assert again is not quiet  # a copy: the state given keeps its own mark
    assert (quiet.listed, quiet.quiet_until) == (b"k" * 16, 5000.0)
    assert again == quiet
    assert (again.listed, again.quiet_until) == (b"j" * 16, 9.0)
