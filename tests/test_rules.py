"""The pure rules: tables of transitions and Hypothesis invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from late_monitor.events import Kind, NotifyType
from late_monitor.models import Detail, Observation, Snapshot
from late_monitor.rules import (
    Policy,
    api_failed,
    api_succeeded,
    apply_details,
    evaluate,
    unreadable_told,
)
from late_monitor.state import AccountState, ApiHealth

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy()


def obs(account_id: str = "a1", status: str = "healthy", **kw: object) -> Observation:
    return Observation(
        account_id=account_id, platform="twitter", username="@x", status=status, **kw
    )  # type: ignore[arg-type]


def snap(*observations: Observation) -> Snapshot:
    return Snapshot(accounts={o.account_id: o for o in observations})


def run(*polls: Snapshot, policy: Policy = POLICY, step: timedelta = timedelta(minutes=5)):
    """Evaluate polls in sequence; the events of each poll."""
    states: dict[str, AccountState] = {}
    out = []
    for index, poll in enumerate(polls):
        result = evaluate(states, poll, now=T0 + index * step, policy=policy)
        states = dict(result.states)
        for gone in result.removed:
            states.pop(gone, None)
        out.append([(e.kind, e.notify_type) for e in result.events])
    return out, states


HEALTHY = obs()
WARNING = obs(status="warning")
ERROR = obs(status="error")
ERROR_RECONNECT = obs(status="error", needs_reconnect=True, can_post=False)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (HEALTHY, HEALTHY, []),
        (HEALTHY, WARNING, [(Kind.DEGRADED, NotifyType.WARNING)]),
        (HEALTHY, ERROR, [(Kind.DEGRADED, NotifyType.FAILURE)]),
        (WARNING, ERROR, [(Kind.DEGRADED, NotifyType.FAILURE)]),
        (
            HEALTHY,
            ERROR_RECONNECT,
            [(Kind.DEGRADED, NotifyType.FAILURE), (Kind.RECONNECT_NEEDED, NotifyType.FAILURE)],
        ),
        (HEALTHY, obs(needs_reconnect=True), [(Kind.RECONNECT_NEEDED, NotifyType.FAILURE)]),
        (HEALTHY, obs(can_post=False), [(Kind.POSTING_BLOCKED, NotifyType.FAILURE)]),
        (ERROR, WARNING, [(Kind.IMPROVED, NotifyType.INFO)]),
        (ERROR, HEALTHY, [(Kind.RECOVERED, NotifyType.SUCCESS)]),
        (ERROR_RECONNECT, HEALTHY, [(Kind.RECOVERED, NotifyType.SUCCESS)]),
        (obs(needs_reconnect=True), HEALTHY, [(Kind.RECOVERED, NotifyType.SUCCESS)]),
        (
            ERROR_RECONNECT,
            obs(status="healthy", needs_reconnect=True),
            [(Kind.IMPROVED, NotifyType.INFO)],
        ),
        (HEALTHY, obs(status="suspended"), [(Kind.STATUS_UNKNOWN, NotifyType.WARNING)]),
        (WARNING, obs(status="suspended"), [(Kind.STATUS_UNKNOWN, NotifyType.WARNING)]),
        # an unknown status is never an improvement, nor a recovery
        (ERROR, obs(status="suspended"), [(Kind.STATUS_UNKNOWN, NotifyType.WARNING)]),
        (obs(status="suspended"), obs(status="suspended", issues=("x",)), []),
        (
            obs(status="suspended"),
            obs(status="paused"),
            [(Kind.STATUS_UNKNOWN, NotifyType.WARNING)],
        ),
        (obs(status="suspended"), ERROR, [(Kind.DEGRADED, NotifyType.FAILURE)]),
        (obs(status="suspended"), HEALTHY, [(Kind.RECOVERED, NotifyType.SUCCESS)]),
    ],
)
def test_transition_table(before: Observation, after: Observation, expected: list) -> None:
    events, _ = run(snap(HEALTHY), snap(before), snap(after))
    assert events[2] == expected


def test_first_seen_healthy_is_silent_and_unhealthy_is_reported() -> None:
    events, _ = run(snap(HEALTHY, obs("a2", "error", needs_reconnect=True)))
    assert events[0] == [
        (Kind.DEGRADED, NotifyType.FAILURE),
        (Kind.RECONNECT_NEEDED, NotifyType.FAILURE),
    ]


def test_first_seen_unhealthy_is_silent_when_notify_first_seen_is_off() -> None:
    events, _ = run(snap(ERROR_RECONNECT), policy=Policy(notify_first_seen=False))
    assert events == [[]]


def test_recovery_is_silent_when_notify_recovery_is_off() -> None:
    events, states = run(snap(ERROR), snap(HEALTHY), policy=Policy(notify_recovery=False))
    assert events[1] == []
    assert states["a1"].status == "healthy"


def test_confirm_after_needs_n_polls_in_a_row() -> None:
    policy = Policy(confirm_after=3)
    events, _ = run(
        snap(HEALTHY),
        snap(ERROR),
        snap(ERROR),
        snap(HEALTHY),
        snap(ERROR),
        snap(ERROR),
        snap(ERROR),
        snap(ERROR),
        policy=policy,
    )
    assert events[1:4] == [[], [], []]  # the flap never reached 3 in a row
    assert events[4:6] == [[], []]
    assert events[6] == [(Kind.DEGRADED, NotifyType.FAILURE)]
    assert events[7] == []


def test_token_expiry_warns_once_per_threshold_and_rearms_on_a_new_token() -> None:
    day = timedelta(days=1)
    expiry = T0 + 8 * day
    polls = [snap(obs(token_expires_at=expiry)) for _ in range(8)]
    events, _ = run(*polls, step=day / 2)  # polls at 0, 12h, ... 3.5 days
    flat = [kinds for kinds in events if kinds]
    assert flat == [[(Kind.TOKEN_EXPIRING, NotifyType.WARNING)]]  # the 7-day line, once
    later = [snap(obs(token_expires_at=expiry)) for _ in range(15)]
    events, _ = run(*later, step=day / 2)  # reaches 7 days at 0.5 d and 1 day at 7 d
    assert sum(1 for kinds in events if kinds) == 2
    refreshed = [snap(obs(token_expires_at=expiry)), snap(obs(token_expires_at=T0 + 3 * day))]
    events, _ = run(*refreshed, step=day * 1.5)
    assert events[1] == [(Kind.TOKEN_EXPIRING, NotifyType.WARNING)]  # new token value re-armed


def test_reminder_after_remind_every_while_still_unhealthy() -> None:
    policy = Policy(remind_every=3600)
    polls = [snap(ERROR)] * 14
    events, _ = run(*polls, policy=policy, step=timedelta(minutes=10))
    reminders = [
        i for i, kinds in enumerate(events) if (Kind.REMINDER, NotifyType.FAILURE) in kinds
    ]
    assert reminders == [6, 12]


def test_removed_waits_three_polls_and_fifteen_minutes_when_more_than_half_vanish() -> None:
    accounts = [obs(f"a{i}") for i in range(4)]
    events, states = run(snap(*accounts), snap(), snap(), snap(), snap())
    assert events[1:4] == [[], [], []]  # 3 polls, but only 10 minutes since the first
    assert sorted(events[4]) == [(Kind.REMOVED, NotifyType.INFO)] * 4
    assert states == {}


def test_many_removed_at_once_are_told_in_one_line() -> None:
    accounts = [obs(f"a{i:02d}") for i in range(30)]
    policy = Policy(vanish_polls=1, vanish_wait=0)
    first = evaluate({}, snap(*accounts), now=T0, policy=policy)
    gone = evaluate(first.states, snap(), now=T0, policy=policy)

    assert len(gone.removed) == 30
    assert [(e.kind, e.account, e.note) for e in gone.events] == [
        (Kind.REMOVED, None, "30 accounts are no longer listed; the key's scope may have changed")
    ]


def test_an_account_id_back_on_another_platform_is_a_new_account() -> None:
    before = evaluate({}, snap(ERROR), now=T0, policy=POLICY)
    moved = Observation(account_id="a1", platform="instagram", username="@x", status="healthy")
    after = evaluate(before.states, snap(moved), now=T0, policy=POLICY)

    assert after.events == ()  # first seen healthy: recorded silently, not "recovered"
    assert after.states["a1"].platform == "instagram"


def test_empty_poll_once_then_back_reports_nothing() -> None:
    accounts = [obs(f"a{i}") for i in range(4)]
    events, states = run(snap(*accounts), snap(), snap(*accounts))
    assert events == [[], [], []]
    assert all(s.absent_polls == 0 for s in states.values())


def test_one_of_many_removed_is_reported_at_once() -> None:
    accounts = [obs(f"a{i}") for i in range(4)]
    events, _ = run(snap(*accounts), snap(*accounts[1:]))
    assert events[1] == [(Kind.REMOVED, NotifyType.INFO)]


def test_permission_lost_from_detail_posting_is_failure_analytics_is_warning() -> None:
    first = evaluate({}, snap(HEALTHY), now=T0, policy=POLICY)
    base = apply_details(first, {"a1": Detail("a1")}, now=T0, policy=POLICY)
    second = evaluate(base.states, snap(HEALTHY), now=T0 + timedelta(minutes=5), policy=POLICY)
    lost = apply_details(
        second,
        {"a1": Detail("a1", missing_posting=("tweet.write",))},
        now=T0 + timedelta(minutes=5),
        policy=POLICY,
    )
    assert [(e.kind, e.notify_type, e.note) for e in lost.events] == [
        (Kind.PERMISSION_LOST, NotifyType.FAILURE, "missing tweet.write")
    ]
    third = evaluate(lost.states, snap(HEALTHY), now=T0 + timedelta(minutes=10), policy=POLICY)
    analytics = apply_details(
        third,
        {
            "a1": Detail(
                "a1", missing_posting=("tweet.write",), missing_analytics=("tweet.analytics",)
            )
        },
        now=T0 + timedelta(minutes=10),
        policy=POLICY,
    )
    assert [(e.kind, e.notify_type) for e in analytics.events] == [
        (Kind.ANALYTICS_LOST, NotifyType.WARNING)
    ]


def test_api_unreachable_after_n_failures_once_then_recovered_once() -> None:
    api = ApiHealth()
    kinds = []
    for _ in range(5):
        api, events = api_failed(api, error="boom", auth=False, policy=Policy(api_failure_after=3))
        kinds.append([e.kind for e in events])
    assert kinds == [[], [], [Kind.API_UNREACHABLE], [], []]
    api, events = api_succeeded(api)
    assert [e.kind for e in events] == [Kind.API_RECOVERED]
    assert api == ApiHealth()
    assert api_succeeded(api)[1] == []


def test_auth_failure_alerts_once_until_a_success() -> None:
    api = ApiHealth()
    api, first = api_failed(api, error="401", auth=True, policy=POLICY)
    api, second = api_failed(api, error="401", auth=True, policy=POLICY)
    assert [e.kind for e in first] == [Kind.AUTH_FAILED]
    assert second == []


# -- properties ----------------------------------------------------------------------------

statuses = st.sampled_from(["healthy", "warning", "error", "suspended"])
observations = st.builds(
    Observation,
    account_id=st.sampled_from([f"a{i}" for i in range(6)]),
    platform=st.sampled_from(["twitter", "instagram"]),
    username=st.just("@u"),
    status=statuses,
    needs_reconnect=st.booleans(),
    can_post=st.booleans(),
    token_valid=st.booleans(),
    can_fetch_analytics=st.booleans(),
    token_expires_at=st.none() | st.integers(-2, 30).map(lambda d: T0 + timedelta(days=d)),
    issues=st.lists(st.sampled_from(["Token expired", "Rate limited"]), max_size=2).map(tuple),
)
snapshots = st.lists(observations, max_size=6).map(lambda obs_: snap(*obs_))
policies = st.builds(
    Policy,
    confirm_after=st.integers(1, 3),
    remind_every=st.sampled_from([0.0, 3600.0, 86400.0]),
    notify_recovery=st.booleans(),
    notify_first_seen=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=6), policies)
def test_evaluate_is_deterministic(polls: list[Snapshot], policy: Policy) -> None:
    assert run(*polls, policy=policy) == run(*polls, policy=policy)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=5), snapshots, policies)
def test_the_same_snapshot_again_gives_no_new_events(
    history: list[Snapshot], last: Snapshot, policy: Policy
) -> None:
    policy = Policy(
        confirm_after=1,
        remind_every=0,
        notify_recovery=policy.notify_recovery,
        notify_first_seen=policy.notify_first_seen,
    )
    states: dict[str, AccountState] = {}
    now = T0
    for poll in [*history, last, last]:
        result = evaluate(states, poll, now=now, policy=policy)
        states = {k: v for k, v in result.states.items() if k not in result.removed}
    # one more identical poll, a moment later: nothing new to say (accounts that vanished
    # in a crowd are still being counted until they are removed)
    again = evaluate(states, last, now=now, policy=policy)
    assert again.events == ()
    assert again.changed <= {k for k, s in again.states.items() if s.absent_polls}


@settings(max_examples=500, deadline=None)
@given(
    st.lists(snapshots, min_size=1, max_size=5),
    snapshots,
    policies,
    st.integers(0, 40 * 24).map(lambda h: timedelta(hours=h)),
)
def test_the_quiet_shortcut_agrees_with_the_full_rules(
    history: list[Snapshot], last: Snapshot, policy: Policy, later: timedelta
) -> None:
    from late_monitor import rules

    states: dict[str, AccountState] = {}
    for index, poll in enumerate(history):
        result = evaluate(states, poll, now=T0 + index * timedelta(hours=6), policy=policy)
        states = {k: v for k, v in result.states.items() if k not in result.removed}
    now = T0 + later
    horizon = rules._horizon(now, policy)
    for account_id, obs in last.accounts.items():
        prev = states.get(account_id)
        if prev is not None and rules._quiet(prev, obs, now, policy, horizon):
            assert rules._full(prev, obs, now, policy) == (prev, [])


def test_the_detail_sweep_takes_never_fetched_then_oldest() -> None:
    from late_monitor.rules import due_for_detail

    def st_(account_id: str, hours: int | None) -> AccountState:
        detail_at = None if hours is None else T0 + timedelta(hours=hours)
        return AccountState(
            account_id=account_id,
            platform="x",
            username="",
            status="healthy",
            needs_reconnect=False,
            can_post=True,
            since=T0,
            detail_at=detail_at,
        )

    states = [st_("a", 5), st_("b", None), st_("c", 1), st_("d", 3), st_("e", None)]
    assert due_for_detail(states, count=3) == ["b", "e", "c"]
    assert due_for_detail(states, count=0) == []
    assert due_for_detail(states, count=10) == ["b", "e", "c", "d", "a"]


# -- what Late leaves unsaid, refreshes by itself, or has never been told of ---------------


def test_a_token_late_keeps_refreshing_never_warns() -> None:
    hour = timedelta(hours=1)
    # a one-hour token, refreshed by Late every poll: always within both thresholds
    polls = [snap(obs(token_expires_at=T0 + (i + 1) * hour)) for i in range(12)]
    events, states = run(*polls, step=hour)
    assert events[0] == [(Kind.TOKEN_EXPIRING, NotifyType.WARNING)]  # first sight: news
    assert events[1:] == [[]] * 11
    assert states["a1"].token_warned == (7 * 86400.0, 86400.0)


def test_a_refreshed_token_that_stops_moving_warns_once_per_threshold() -> None:
    day = timedelta(days=1)
    expiries = [T0 + 10 * day, T0 + 11 * day, T0 + 12 * day] + [T0 + 12 * day] * 24
    polls = [snap(obs(token_expires_at=e)) for e in expiries]
    events, _ = run(*polls, step=day / 2)
    told = [i for i, kinds in enumerate(events) if kinds]
    # refreshed twice (silently), then still: 7 days left at poll 10, 1 day at poll 22
    assert told == [10, 22]


def test_a_token_replaced_by_one_that_expires_sooner_is_news() -> None:
    day = timedelta(days=1)
    polls = [snap(obs(token_expires_at=T0 + 30 * day)), snap(obs(token_expires_at=T0 + 2 * day))]
    events, _ = run(*polls, step=day)
    assert events[1] == [(Kind.TOKEN_EXPIRING, NotifyType.WARNING)]


def test_losing_analytics_access_is_a_warning_of_its_own() -> None:
    events, states = run(
        snap(HEALTHY),
        snap(obs(can_fetch_analytics=False)),
        snap(obs(can_fetch_analytics=False)),
        snap(HEALTHY),
    )
    assert events == [[], [(Kind.ANALYTICS_LOST, NotifyType.WARNING)], [], []]
    assert states["a1"].can_fetch_analytics is True


def test_an_analytics_scope_lost_in_the_detail_is_told_once_with_the_list_flag() -> None:
    first = evaluate({}, snap(HEALTHY), now=T0, policy=POLICY)
    base = apply_details(first, {"a1": Detail("a1")}, now=T0, policy=POLICY)
    later = T0 + timedelta(minutes=5)
    second = evaluate(base.states, snap(obs(can_fetch_analytics=False)), now=later, policy=POLICY)
    both = apply_details(
        second, {"a1": Detail("a1", missing_analytics=("insights",))}, now=later, policy=POLICY
    )
    assert [e.kind for e in both.events] == [Kind.ANALYTICS_LOST]


def test_an_unknown_field_value_keeps_the_last_known_state_and_the_rest_is_evaluated() -> None:
    broken = obs(status="error", needs_reconnect=True, can_post=False)
    unsaid = obs(status=None, needs_reconnect=None, can_post=None)  # type: ignore[arg-type]
    before = evaluate({}, snap(broken, obs("a2")), now=T0, policy=POLICY)
    later = T0 + timedelta(minutes=5)
    poll = Snapshot(
        accounts={"a1": unsaid, "a2": obs("a2", status="error")},
        unreadable={"a1": ("status", "needsReconnect", "canPost")},
    )
    after = evaluate(before.states, poll, now=later, policy=POLICY)

    assert after.states["a1"].condition == ("error", True, False)  # kept, not "recovered"
    assert after.removed == frozenset()
    assert [(e.kind, e.account_id) for e in after.events] == [(Kind.DEGRADED, "a2")]


def test_a_new_account_whose_status_cannot_be_read_is_not_tracked_until_it_can() -> None:
    poll = Snapshot(
        accounts={"a1": obs(status=None)},  # type: ignore[arg-type]
        unreadable={"a1": ("status",)},
    )
    result = evaluate({}, poll, now=T0, policy=POLICY)
    assert result.states == {}
    assert result.events == ()


def test_unreadable_accounts_are_told_once_and_again_only_for_something_new() -> None:
    states = evaluate({}, snap(HEALTHY, obs("a2")), now=T0, policy=POLICY).states
    one = Snapshot(accounts={}, unreadable={"a1": ("status",)})
    two = Snapshot(accounts={}, unreadable={"a1": ("status",), "a2": ("canPost",)}, unidentified=1)
    api = ApiHealth()
    api, first = unreadable_told(api, one, states)
    api, again = unreadable_told(api, one, states)
    api, more = unreadable_told(api, two, states)
    api, cleared = unreadable_told(api, Snapshot(accounts={}), states)
    api, back = unreadable_told(api, one, states)

    assert [e.note for e in first] == ["twitter @x (a1): status (kept as healthy)"]
    assert again == []
    assert [e.note for e in more] == [
        "1 entries without an accountId (ignored); twitter @x (a2): canPost (kept as healthy)"
    ]
    assert cleared == []
    assert [e.kind for e in back] == [Kind.UNREADABLE]
    assert all(e.notify_type is NotifyType.WARNING for e in first + more + back)


def test_a_body_late_cannot_be_read_in_is_never_called_unreachable() -> None:
    api = ApiHealth()
    kinds = []
    for _ in range(3):
        api, events = api_failed(api, error="shape", auth=False, policy=POLICY, unreadable=True)
        kinds += [e.kind for e in events]
    assert kinds == [Kind.API_UNREADABLE]
    api, events = api_succeeded(api)
    assert [e.kind for e in events] == [Kind.API_RECOVERED]


def test_an_account_first_seen_unhealthy_is_marked_first_seen_without_a_from() -> None:
    result = evaluate({}, snap(ERROR), now=T0, policy=POLICY)
    assert [(e.kind, e.first_seen, e.old_status) for e in result.events] == [
        (Kind.DEGRADED, True, None)
    ]


def test_accounts_missing_while_as_many_entries_lack_an_id_are_kept_as_they_were() -> None:
    before = evaluate({}, snap(*(obs(f"a{i}") for i in range(4))), now=T0, policy=POLICY)
    poll = Snapshot(accounts={o.account_id: o for o in (obs("a0"), obs("a1"), obs("a2"))})
    anonymous = Snapshot(accounts=poll.accounts, unidentified=1)

    kept = evaluate(before.states, anonymous, now=T0, policy=POLICY)
    gone = evaluate(before.states, poll, now=T0, policy=POLICY)

    assert kept.removed == frozenset()
    assert kept.events == ()
    assert "a3" in kept.states
    assert gone.removed == {"a3"}
