"""Rendering and routing through real Apprise objects, delivered to loopback sinks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from late_monitor.errors import DeliveryError
from late_monitor.events import Event, Kind, NotifyType
from late_monitor.models import Detail
from late_monitor.notify import Notifier, digest, fit, merge_held, render
from late_monitor.state import AccountState
from tests.support.sink import Sink

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def account(account_id: str, status: str = "error", **kw: object) -> AccountState:
    return AccountState(
        account_id=account_id,
        platform="twitter",
        username=f"@{account_id}",
        status=status,
        needs_reconnect=kw.pop("needs_reconnect", False),  # type: ignore[arg-type]
        can_post=True,
        since=T0,
        **kw,
    )  # type: ignore[arg-type]


def degraded(account_id: str) -> Event:
    return Event(Kind.DEGRADED, NotifyType.FAILURE, account(account_id), "healthy", "error")


def recovered(account_id: str) -> Event:
    return Event(
        Kind.RECOVERED, NotifyType.SUCCESS, account(account_id, "healthy"), "error", "healthy"
    )


def test_digest_puts_the_worst_first_and_counts_in_the_title() -> None:
    events = [
        recovered("r1"),
        degraded("d1"),
        Event(
            Kind.TOKEN_EXPIRING,
            NotifyType.WARNING,
            account("t1", "healthy"),
            note="token expires in 6 days",
        ),
    ]
    title, body, notify_type = render(
        events,
        {"d1": Detail("d1", missing_posting=("tweet.write",), recommendations=("Reconnect",))},
    )
    assert title == "Late: 2 accounts need attention, 1 recovered"
    assert notify_type == "failure"
    lines = body.splitlines()
    assert lines[0].startswith("[FAILURE] twitter @d1 (d1): healthy -> error")
    assert "    missing permissions: tweet.write" in lines
    assert "    fix: Reconnect" in lines
    assert lines[-1].startswith("[SUCCESS] twitter @r1 (r1): error -> healthy")


async def test_routes_send_failures_to_tagged_and_always_and_the_rest_everywhere(
    tmp_path: Path, sink: Sink, sink2: Sink
) -> None:
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n"
        f"  - json://127.0.0.1:{sink2.port}/oncall/TOKENONCALL1:\n"
        "      tag: oncall\n"
        f"  - json://127.0.0.1:{sink2.port}/always/TOKENALWAYS1:\n"
        "      tag: always\n"
    )
    notifier = Notifier(urls=[sink.url()], config_path=str(config), routes={"failure": ["oncall"]})
    await notifier.load()
    messages = notifier.plan([degraded("d1"), recovered("r1")])
    for message in messages:
        for key, _ in message.destinations:
            assert (
                await notifier.send(
                    key, title=message.title, body=message.body, notify_type=message.notify_type
                )
                is None
            )
    received = {m["path"].split("/")[1]: m["title"] for m in sink2.received}
    # failure is routed to oncall (+ always); success has no route, so it goes everywhere:
    # the untagged sink gets only the recovery, the tagged ones one digest of both
    assert sink.titles() == ["Late: 1 recovered"]
    assert received["oncall"] == "Late: 1 account needs attention, 1 recovered"
    assert received["always"] == "Late: 1 account needs attention, 1 recovered"
    assert len(sink2.received) == 2


async def test_group_account_sends_one_message_per_account(sink: Sink) -> None:
    notifier = Notifier(urls=[sink.url()], group="account")
    await notifier.load()
    messages = notifier.plan([degraded("a1"), degraded("a2")])
    assert [m.accounts for m in messages] == [("a1",), ("a2",)]


async def test_a_destination_that_is_down_reports_why(sink: Sink) -> None:
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    await sink.stop()
    (message,) = notifier.plan([degraded("a1")])
    reason = await notifier.send(
        message.destinations[0][0], title="t", body="b", notify_type="failure"
    )
    assert reason is not None
    assert "SINKTOKEN0001" not in reason


async def test_labels_hide_url_tokens(sink: Sink) -> None:
    notifier = Notifier(
        urls=[sink.url("VERYSECRETTOKEN42"), "slack://T1234567/B7654321/XXXXYYYYZZZZ"]
    )
    await notifier.load()
    labels = [d.label for d in notifier.destinations]
    assert all("VERYSECRETTOKEN42" not in label and "XXXXYYYYZZZZ" not in label for label in labels)


BODY = "\n".join(
    [
        "[FAILURE] twitter @a1 (a1): healthy -> error",
        "    issues: Token expired",
        "[FAILURE] twitter @a2 (a2): healthy -> error",
        "[SUCCESS] twitter @a3 (a3): error -> healthy - recovered",
    ]
)


@pytest.mark.parametrize(
    ("body_max", "title_in_body", "expected"),
    [
        (1000, False, BODY),
        (
            199,  # less the margin left for what Apprise adds, the last entry does not fit
            False,
            "\n".join(BODY.splitlines()[:3])
            + "\n... and 1 more accounts (see late-monitor status)",
        ),
        (
            159,  # the first entry whole, never half of the second
            False,
            "\n".join(BODY.splitlines()[:2])
            + "\n... and 2 more accounts (see late-monitor status)",
        ),
        (
            159 + len("Late: x") + 2,
            True,  # Discord counts the title in its 2,000 characters
            "\n".join(BODY.splitlines()[:2])
            + "\n... and 2 more accounts (see late-monitor status)",
        ),
        (
            139,  # not even one entry whole: its first line
            False,
            BODY.splitlines()[0] + "\n... and 2 more accounts (see late-monitor status)",
        ),
        (
            109,  # not even its first line: cut
            False,
            BODY[:27] + "\n... and 2 more accounts (see late-monitor status)",
        ),
    ],
)
def test_fit_cuts_the_body_after_the_last_whole_entry_that_fits(
    body_max: int, title_in_body: bool, expected: str
) -> None:
    title, body = fit(
        "Late: x", BODY, title_max=250, body_max=body_max, title_in_body=title_in_body
    )
    assert (title, body) == ("Late: x", expected)
    assert len(body) <= body_max


def test_fit_shortens_a_title_longer_than_the_service_takes() -> None:
    assert (
        fit("Late: " + "x" * 100, "b", title_max=60, body_max=1000)[0] == "Late: " + "x" * 53 + "…"
    )


def test_merged_digest_keeps_each_accounts_latest_entry_worst_first() -> None:
    held = []
    for events in ([degraded("a1"), degraded("a2")], [recovered("a1")], [degraded("a3")]):
        _, entries, notify_type = digest(events, {})
        held.append((notify_type, "\n".join(e.text for e in entries), entries))
    held.append(("warning", "[WARNING] written before entries were stored", ()))
    title, body, notify_type = merge_held(held)
    assert title == "Late: 3 need attention, 1 recovered (latest of 4 held messages)"
    assert notify_type == "failure"
    assert [line.split(":")[0] for line in body.splitlines()] == [
        "[FAILURE] twitter @a2 (a2)",
        "[FAILURE] twitter @a3 (a3)",
        "[WARNING] written before entries were stored",
        "[SUCCESS] twitter @a1 (a1)",
    ]


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (408, False), (429, False), (500, False), (503, False)],
)
async def test_a_4xx_answer_is_a_permanent_failure_and_the_rest_are_not(
    sink: Sink, status: int, permanent: bool
) -> None:
    notifier = Notifier(urls=[sink.url()])
    await notifier.load()
    sink.fail_status = status
    with pytest.raises(DeliveryError) as raised:
        await notifier.deliver(
            notifier.destinations[0].key, title="t", body="b", notify_type="info"
        )
    assert (raised.value.status, raised.value.permanent, raised.value.unanswered) == (
        status,
        permanent,
        False,
    )
