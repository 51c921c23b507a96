"""What Late's webhooks mean for an account's state, and what people hear (pure, no I/O).

A webhook's news is a claim (`AccountState.claimed_at`): the poll that next sees the same
condition confirms it silently; one fetched at least `Policy.claim_grace` later that finds
the account better corrects it (rules.evaluate).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from late_monitor.events import Event, Kind, NotifyType
from late_monitor.models import Detail
from late_monitor.rules import Policy, corrected, transition
from late_monitor.state import HEALTHY, AccountState, Condition
from late_monitor.webhooks import HookAccount, LateWebhook

DISCONNECTED: Condition = ("error", True, False)  # as Late lists an account whose token died


def _known_as(hook: HookAccount, now: datetime) -> AccountState:
    """An account first heard of through a webhook, as healthy until the webhook's news."""
    return AccountState(
        account_id=hook.account_id,
        platform=hook.platform or "unknown",
        username=hook.username,
        status=HEALTHY,
        needs_reconnect=False,
        can_post=True,
        since=now,
        display_name=hook.display_name,
        profile_id=hook.profile_id,
    )


def disconnected(
    prev: AccountState | None, hook: HookAccount, *, now: datetime, policy: Policy
) -> tuple[AccountState | None, list[Event]]:
    """`account.disconnected`. Unintentional (a token expired or was revoked): the account
    needs reconnecting, the same failure a poll would find. Intentional (a person removed it
    in Late): one info line, and the account is forgotten (it leaves Late's list)."""
    if hook.intentional:
        shown = prev or _known_as(hook, now)
        note = "disconnected in Late by a person" + (f": {hook.reason}" if hook.reason else "")
        old = prev.status if prev else None
        return None, [Event(Kind.DISCONNECTED, NotifyType.INFO, shown, old, None, note)]
    base = prev or _known_as(hook, now)
    if prev is not None and prev.condition == DISCONNECTED:
        return prev, []  # a poll (or an earlier webhook) has told it already
    state = replace(
        base.entering(DISCONNECTED, at=now),
        token_valid=False,
        issues=(hook.reason,) if hook.reason else base.issues,
        claimed_at=now,
        last_notice_at=now,
    )
    events = [
        replace(event, first_seen=prev is None, old_status=prev.status if prev else None)
        for event in transition(base.condition, DISCONNECTED, state, policy)
    ]
    if events:  # the reason is the account's issue; the note says how the news came
        events[0] = replace(events[0], note="told by Late's webhook")
    return state, events


def checked(
    prev: AccountState, detail: Detail, *, now: datetime, policy: Policy, reconnected: bool
) -> tuple[AccountState, list[Event]]:
    """An account's detail fetched because a webhook gave cause (`account.connected`, a post
    that failed for its token): the condition it shows, if it differs from what we hold, is
    news now, not at the next poll. What the detail does not say stays as known.

    Better than a webhook's own news, without a reconnection (`reconnected`) in between:
    nothing was fixed, so it is a correction, not a recovery."""
    can_post = bool(detail.can_post) and not detail.missing_posting
    new: Condition = (
        detail.status or prev.status,
        prev.needs_reconnect if detail.token_valid is None else not detail.token_valid,
        prev.can_post if detail.can_post is None else can_post,
    )
    state = replace(
        prev,
        issues=detail.issues or prev.issues,
        missing_scopes=detail.missing,
        detail_at=now,
        detail_due=False,
        token_valid=prev.token_valid if detail.token_valid is None else detail.token_valid,
    )
    if new == prev.condition:
        return state, []
    state = replace(state.entering(new, at=now), claimed_at=now, last_notice_at=now)
    events = transition(prev.condition, new, state, policy)
    if prev.claimed_at is not None and not reconnected:
        events = corrected(prev, new, state, events)
    return state, events


FAILING_AFTER = 3  # Late's consecutive failures before we say so; it disables at 10


def webhook_watch(
    told: str, hook: LateWebhook | None, *, name: str, failures_before: int
) -> tuple[str, list[Event]]:
    """What Late's view of our webhook means, given what was told last ("" nothing, or
    "missing", "failing", "disabled"): a webhook Late disabled, failing, or gone leaves
    polling alone to notice changes, and people should know; once it works again, say so."""
    if hook is None:
        if told == "missing":
            return told, []
        note = (
            f"Late has no webhook named {name!r}: changes are noticed by polling only; "
            "run `late-monitor webhooks setup --url https://.../webhooks/late`"
        )
        return "missing", [Event(Kind.WEBHOOK_DISABLED, NotifyType.WARNING, note=note)]
    if not hook.is_active:
        if told == "disabled":
            return told, []
        note = (
            f"Late has disabled the webhook {name!r} ({hook.failure_count} failed deliveries "
            "in a row): changes are noticed by polling only; fix the endpoint, then run "
            "`late-monitor webhooks setup --url https://.../webhooks/late` to enable it again"
        )
        return "disabled", [Event(Kind.WEBHOOK_DISABLED, NotifyType.FAILURE, note=note)]
    if hook.failure_count >= FAILING_AFTER and hook.failure_count > failures_before:
        if told in ("failing", "disabled"):
            return told, []
        note = (
            f"Late failed to deliver to the webhook {name!r} {hook.failure_count} times in a "
            "row; at 10 it disables it (check that the daemon is reachable at its URL)"
        )
        return "failing", [Event(Kind.WEBHOOK_FAILING, NotifyType.WARNING, note=note)]
    if hook.failure_count == 0 and told:
        note = f"Late delivers to the webhook {name!r} again"
        return "", [Event(Kind.WEBHOOK_RESTORED, NotifyType.SUCCESS, note=note)]
    return told, []
