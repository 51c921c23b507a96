"""Webhook deliveries read, verified and decided without I/O: webhooks.py, hook_rules.py, and
how a poll treats what a webhook said (rules.evaluate with claims)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from late_monitor.events import Kind, NotifyType
from late_monitor.hook_rules import checked, disconnected, webhook_watch
from late_monitor.models import OBSERVATIONS, Detail, Snapshot
from late_monitor.rules import Policy, evaluate
from late_monitor.state import AccountState
from late_monitor.webhooks import (
    HookAccount,
    HookError,
    LateWebhook,
    parse,
    sign,
    signature_of,
    verify,
)

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
POLICY = Policy()
SECRET = "s3cret-s3cret-s3cret"


def healthy(account_id: str = "a1", **changes: object) -> AccountState:
    state = AccountState(
        account_id=account_id,
        platform="twitter",
        username="@a",
        status="healthy",
        needs_reconnect=False,
        can_post=True,
        since=NOW - timedelta(days=3),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def observed(account_id: str = "a1", **fields: object) -> Snapshot:
    values = {"accountId": account_id, "platform": "twitter", "username": "@a",
              "status": "healthy", "needsReconnect": False, "canPost": True, **fields}  # fmt: skip
    return Snapshot(accounts={account_id: OBSERVATIONS.validate_python([values])[0]})


# -- signatures ---------------------------------------------------------------------------


def test_a_signature_is_checked_whatever_its_header_prefix_or_case() -> None:
    body = b'{"id": "evt_1", "event": "webhook.test"}'
    good = sign(SECRET, body)
    for headers in (
        {"X-Zernio-Signature": good},
        {"X-Late-Signature": good},
        {"X-Zernio-Signature": "sha256=" + good.upper()},
        {"X-Zernio-Signature": f"  {good} "},
    ):
        signature = signature_of(headers)
        assert signature is not None
        assert verify(SECRET, body, signature), headers
    assert signature_of({}) is None
    assert not verify(SECRET, body + b" ", good)
    assert not verify("another secret", body, good)
    assert not verify(SECRET, body, good[:-1])
    assert not verify(SECRET, body, "")
    assert not verify(SECRET, body, "\u00e9" * 64)


# -- payloads -----------------------------------------------------------------------------


def test_the_documented_payloads_are_read() -> None:
    account = {"accountId": "a1", "profileId": "p1", "platform": "Instagram", "username": "u",
               "displayName": "U", "disconnectionType": "unintentional",
               "reason": "Token expired"}  # fmt: skip
    hook = parse(json.dumps({"id": "e1", "event": "account.disconnected", "account": account,
                             "timestamp": "2026-11-29T10:00:00Z"}).encode())  # fmt: skip
    assert hook.account == HookAccount("a1", "instagram", "u", "U", "p1", False, "Token expired")
    post = {"id": "post_1", "content": "x", "status": "partial",
            "scheduledFor": "2026-11-29T10:00:00Z",
            "platforms": [{"platform": "twitter", "status": "published"},
                          {"platform": "facebook", "status": "failed",
                           "error": "Error validating access token"}]}  # fmt: skip
    hook = parse(json.dumps({"id": "e2", "event": "post.partial", "post": post}).encode())
    assert [f.platform for f in hook.failures] == ["facebook"]
    assert hook.failures[0].blames_account
    assert hook.post_id == "post_1"
    assert parse(b'{"id": "e3", "event": "comment.received"}').event == "comment.received"
    assert parse(b'{"id": "e4", "event": "webhook.test", "message": "hi"}').account is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b'"text"',
        b"[1, 2]",
        b'{"event": "account.connected"}',
        b'{"id": "", "event": "account.connected"}',
        b'{"id": 5, "event": "account.connected"}',
        b'{"id": "e1"}',
        b'{"id": "e1", "event": "account.connected"}',
        b'{"id": "e1", "event": "account.connected", "account": {"accountId": null}}',
        b'{"id": "e1", "event": "post.failed", "post": {"id": "p"}}',
        b'{"id": "e1", "event": "post.failed", "post": []}',
        b"\xff\xfe\x00",
    ],
)
def test_a_body_that_is_not_a_documented_payload_is_refused(body: bytes) -> None:
    with pytest.raises(HookError):
        parse(body)


@pytest.mark.parametrize(
    ("error", "blames"),
    [
        ("Error validating access token: Session has expired", True),
        ("The user has not authorized application", True),
        ("Permissions error: missing scope pages_manage_posts", True),
        ("HTTP 401 Unauthorized", True),
        ("Please reconnect your account", True),
        ("Media upload failed: file too large", False),
        ("Duplicate content", False),
        ("Image aspect ratio 3:1 not supported", False),
    ],
)
def test_only_errors_that_blame_the_account_count_as_evidence(error: str, blames: bool) -> None:
    failure = {"platform": "facebook", "status": "failed", "error": error}
    body = {"id": "e", "event": "post.failed", "post": {"platforms": [failure]}}
    assert parse(json.dumps(body).encode()).failures[0].blames_account is blames


# -- what a webhook means -----------------------------------------------------------------

TOKEN_DIED = HookAccount("a1", "twitter", "@a", reason="Token expired")


def test_an_unintentional_disconnection_is_the_failure_a_poll_would_find() -> None:
    state, events = disconnected(healthy(), TOKEN_DIED, now=NOW, policy=POLICY)
    assert state is not None
    assert (state.status, state.needs_reconnect, state.can_post) == ("error", True, False)
    assert state.claimed_at == NOW
    assert state.issues == ("Token expired",)
    assert {e.kind for e in events} == {Kind.DEGRADED, Kind.RECONNECT_NEEDED}
    assert {e.notify_type for e in events} == {NotifyType.FAILURE}
    again, more = disconnected(state, TOKEN_DIED, now=NOW, policy=POLICY)
    assert (again, more) == (state, [])


def test_an_account_first_heard_of_through_a_webhook_is_first_seen() -> None:
    state, events = disconnected(None, TOKEN_DIED, now=NOW, policy=POLICY)
    assert state is not None
    assert state.account_id == "a1"
    assert events
    assert all(e.first_seen and e.old_status is None for e in events)


def test_an_intentional_disconnection_is_info_and_forgets_the_account() -> None:
    hook = replace(TOKEN_DIED, intentional=True, reason="Removed by Ann")
    state, events = disconnected(healthy(), hook, now=NOW, policy=POLICY)
    assert state is None
    assert [(e.kind, e.notify_type) for e in events] == [(Kind.DISCONNECTED, NotifyType.INFO)]
    assert "Removed by Ann" in events[0].note


def test_a_check_after_connected_confirms_the_recovery_or_says_nothing() -> None:
    broken = healthy(status="error", needs_reconnect=True, can_post=False, token_valid=False)
    fine = Detail("a1", status="healthy", can_post=True, token_valid=True)
    state, events = checked(broken, fine, now=NOW, policy=POLICY, reconnected=True)
    assert [e.kind for e in events] == [Kind.RECOVERED]
    assert state.healthy
    assert state.claimed_at == NOW
    still = Detail("a1", status="error", can_post=False, token_valid=False)
    state, events = checked(broken, still, now=NOW, policy=POLICY, reconnected=True)
    assert events == []
    assert state.condition == broken.condition
    silent = Detail("a1")  # a detail that says nothing of the condition changes nothing
    assert checked(broken, silent, now=NOW, policy=POLICY, reconnected=True)[1] == []
    # what a webhook claimed, found better by a check nobody reconnected for: a correction
    claim = replace(broken, claimed_at=NOW)
    _, events = checked(claim, fine, now=NOW, policy=POLICY, reconnected=False)
    assert [(e.kind, e.notify_type) for e in events] == [(Kind.CORRECTED, NotifyType.SUCCESS)]


# -- the poll after a webhook -------------------------------------------------------------


def claimed() -> AccountState:
    state, _ = disconnected(healthy(), TOKEN_DIED, now=NOW, policy=POLICY)
    assert state is not None
    return state


def test_a_poll_sent_within_the_grace_does_not_judge_the_webhook() -> None:
    previous = {"a1": claimed()}
    later = NOW + timedelta(seconds=30)
    result = evaluate(previous, observed(), now=later, policy=POLICY, fetched_at=later)
    assert result.events == ()
    assert result.states["a1"] is previous["a1"]
    before = NOW - timedelta(seconds=1)  # a poll sent before the webhook came
    result = evaluate(previous, observed(), now=later + timedelta(minutes=5), policy=POLICY,
                      fetched_at=before)  # fmt: skip
    assert result.events == ()


def test_a_poll_that_agrees_confirms_silently() -> None:
    later = NOW + timedelta(minutes=2)
    snapshot = observed(status="error", needsReconnect=True, canPost=False, tokenValid=False,
                        issues=["Token expired"])  # fmt: skip
    result = evaluate({"a1": claimed()}, snapshot, now=later, policy=POLICY)
    assert result.events == ()
    assert result.states["a1"].claimed_at is None
    assert "a1" in result.changed


def test_a_poll_that_finds_the_account_better_corrects_the_webhook() -> None:
    later = NOW + timedelta(minutes=2)
    result = evaluate({"a1": claimed()}, observed(), now=later, policy=POLICY)
    assert [(e.kind, e.notify_type) for e in result.events] == [
        (Kind.CORRECTED, NotifyType.SUCCESS)
    ]
    assert "a poll now finds it healthy" in result.events[0].note
    assert result.states["a1"].claimed_at is None
    partly = observed(status="warning", needsReconnect=True, canPost=False)
    result = evaluate({"a1": claimed()}, partly, now=later, policy=POLICY)
    kinds = [(e.kind, e.notify_type) for e in result.events]
    assert (Kind.CORRECTED, NotifyType.INFO) in kinds
    assert Kind.IMPROVED not in {k for k, _ in kinds}


def test_a_recovery_after_a_confirmed_claim_is_a_recovery() -> None:
    later = NOW + timedelta(minutes=2)
    snapshot = observed(status="error", needsReconnect=True, canPost=False)
    confirmed = evaluate({"a1": claimed()}, snapshot, now=later, policy=POLICY).states
    result = evaluate(confirmed, observed(), now=later + timedelta(minutes=5), policy=POLICY)
    assert [e.kind for e in result.events] == [Kind.RECOVERED]


# -- Late's view of our webhook -----------------------------------------------------------


def test_the_watch_tells_disabled_failing_gone_and_back_once_each() -> None:
    hook = LateWebhook("w1", "late-monitor", failure_count=0)
    assert webhook_watch("", hook, name="late-monitor", failures_before=0) == ("", [])
    failing = replace(hook, failure_count=4)
    told, events = webhook_watch("", failing, name="late-monitor", failures_before=2)
    assert told == "failing"
    assert events[0].kind is Kind.WEBHOOK_FAILING
    assert webhook_watch(told, replace(hook, failure_count=5), name="late-monitor",
                         failures_before=4) == ("failing", [])  # fmt: skip
    off = replace(hook, failure_count=10, is_active=False)
    told, events = webhook_watch(told, off, name="late-monitor", failures_before=5)
    assert told == "disabled"
    assert events[0].notify_type is NotifyType.FAILURE
    assert webhook_watch(told, off, name="late-monitor", failures_before=10) == ("disabled", [])
    told, events = webhook_watch(told, hook, name="late-monitor", failures_before=10)
    assert told == ""
    assert events[0].kind is Kind.WEBHOOK_RESTORED
    told, events = webhook_watch("", None, name="late-monitor", failures_before=0)
    assert told == "missing"
    assert "webhooks setup" in events[0].note
    assert webhook_watch(told, None, name="late-monitor", failures_before=0) == ("missing", [])
    steady = replace(hook, failure_count=2)  # a blip below the threshold is not news
    assert webhook_watch("", steady, name="late-monitor", failures_before=0) == ("", [])
