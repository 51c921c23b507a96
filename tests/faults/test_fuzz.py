"""Hypothesis-made payloads: parsing either succeeds or says BadPayload; the rest never crashes."""

from __future__ import annotations

import json
import random
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from late_monitor.errors import BadPayload
from late_monitor.health_list import parse_health
from late_monitor.models import Snapshot, parse_detail
from late_monitor.notify import render
from late_monitor.rules import Policy, evaluate
from late_monitor.simulator import Fault, Simulator
from late_monitor.state import AccountState
from tests.support.process import daemon

NOW = datetime(2026, 6, 1, tzinfo=UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
dates = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
account = st.fixed_dictionaries(
    {},
    optional={
        "accountId": st.text(min_size=1, max_size=6) | json_values,
        "platform": st.sampled_from(["twitter", "instagram", "mastodon"]) | json_values,
        "username": st.text(max_size=8),
        "status": st.sampled_from(["healthy", "warning", "error", "paused"]) | json_values,
        "canPost": st.booleans() | json_values,
        "tokenValid": st.booleans(),
        "tokenExpiresAt": dates | st.none() | st.text(max_size=5),
        "needsReconnect": st.booleans(),
        "issues": st.lists(st.text(max_size=10), max_size=3) | json_values,
        "unexpected": json_values,
    },
)
payloads = st.one_of(
    st.fixed_dictionaries(
        {"accounts": st.lists(account, max_size=8)},
        optional={"summary": json_values, "extra": json_values},
    ),
    json_values,
)


def pipeline(body: bytes, previous: dict[str, AccountState]) -> dict[str, AccountState]:
    """What a cycle does with a body: parse, evaluate, render. Only BadPayload may escape."""
    try:
        snapshot = parse_health(body)
    except BadPayload:
        return previous
    assert isinstance(snapshot, Snapshot)
    result = evaluate(previous, snapshot, now=NOW, policy=Policy())
    if result.events:
        title, _, notify_type = render(result.events, {})
        assert title.startswith("Late: ")
        assert notify_type in {"info", "success", "warning", "failure"}
    return {k: v for k, v in result.states.items() if k not in result.removed}


@settings(max_examples=400, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=4))
def test_any_sequence_of_payloads_never_crashes_the_cycle_core(bodies: list[Any]) -> None:
    states: dict[str, AccountState] = {}
    for payload in bodies:
        states = pipeline(json.dumps(payload).encode(), states)
    again = evaluate(states, parse_or_empty(bodies[-1]), now=NOW, policy=Policy())
    assert again == evaluate(states, parse_or_empty(bodies[-1]), now=NOW, policy=Policy())


def parse_or_empty(payload: Any) -> Snapshot:
    try:
        return parse_health(json.dumps(payload).encode())
    except BadPayload:
        return Snapshot(accounts={})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_garbage_bodies_are_bad_payload_or_parse(body: bytes) -> None:
    for parse in (parse_health, parse_detail):
        outcome: object
        try:
            outcome = parse(body)
        except BadPayload as exc:
            outcome = str(exc)
        assert not isinstance(outcome, str) or "body starts:" in outcome


async def test_the_daemon_keeps_polling_through_random_bodies(
    sim: Simulator, monitor_config, base_env, tmp_path: Path
) -> None:
    rng = random.Random(7)
    for _ in range(15):
        body = json.dumps(
            rng.choice(
                [
                    {"accounts": [{"accountId": "x", "status": rng.choice(["paused", 5, None])}]},
                    {"accounts": None},
                    [1, 2],
                    "text",
                    {"accounts": [{"status": "error"}]},
                    {"accounts": [{"accountId": "acc_00001", "status": "error", "canPost": "no"}]},
                ]
            )
        )
        sim.inject(Fault(status=200, body=body, path="/accounts/health"))
    config = monitor_config(
        monitor={"interval": "0.3s"}, late={"timeout": "2s", "max_requests_per_minute": 6000}
    )
    async with daemon(config, base_env, tmp_path) as run:
        await run.until(lambda: run.count("poll_completed") >= 18, limit=30)
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    assert "Traceback" not in "".join(run.lines)
    assert run.count("cycle_crashed") == 0
