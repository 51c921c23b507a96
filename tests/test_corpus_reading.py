"""late-monitor reads every body of the corpus as the vendor's schema allows it to be sent.

The corpus (tests/corpus) holds the OpenAPI document's examples and their variants: nulls,
missing fields, unknown enums, new platforms, extra fields, and whole bodies of other shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from late_monitor.errors import BadPayload
from late_monitor.health_list import parse_health
from late_monitor.models import parse_detail
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from tests import corpus
from tests.support.config import write_config
from tests.support.process import run_cli
from tests.support.sink import Sink

ALERTING = {"status", "canPost", "needsReconnect", "tokenValid", "canFetchAnalytics"}


@pytest.mark.parametrize("name", corpus.names("health", documented_shape=True))
def test_every_documented_health_body_parses_and_the_good_entry_beside_it_reads_as_sent(
    name: str,
) -> None:
    snapshot = parse_health(corpus.health_body(name))

    listed = [entry for entry in corpus.entries(name) if isinstance(entry, dict)]
    if any(entry.get("accountId") == "def456" for entry in listed):
        other = snapshot.accounts["def456"]  # the vendor's own second entry, untouched
        assert (other.status, other.needs_reconnect, other.can_post) == ("error", True, False)
    for fields in snapshot.unreadable.values():
        assert set(fields) <= ALERTING  # only what decides alerts is ever "unreadable"


@pytest.mark.parametrize("name", corpus.names("health", documented_shape=False))
def test_every_body_without_an_accounts_array_is_a_shape_error(name: str) -> None:
    with pytest.raises(BadPayload, match="Late answered in a shape late-monitor cannot read"):
        parse_health(corpus.health_body(name))


@pytest.mark.parametrize(
    ("name", "unreadable"),
    [
        ("null_status", ("status",)),
        ("missing_status", ("status",)),
        ("null_can_post", ("canPost",)),
        ("null_needs_reconnect", ("needsReconnect",)),
        ("needs_reconnect_int", ()),  # 0 and 1 read as booleans, as JSON clients do
        ("status_suspended", ()),  # a status we do not know is kept verbatim, not unreadable
        ("status_uppercase_error", ()),
        ("status_empty", ("status",)),  # says nothing: as good as null
        ("null_username", ()),
        ("null_issues", ()),
        ("null_platform", ()),
        ("null_token_expires_at", ()),
        ("token_expires_epoch_millis", ()),
        ("missing_can_post", ()),  # left out: the schema's optional field, read as its default
    ],
)
def test_what_is_unreadable_is_exactly_the_alerting_fields_late_sent_null_or_garbled(
    name: str, unreadable: tuple[str, ...]
) -> None:
    snapshot = parse_health(corpus.health_body(name))
    assert snapshot.unreadable.get("abc123", ()) == unreadable


def test_an_entry_without_its_account_id_is_counted_not_invented() -> None:
    for name in ("null_account_id", "missing_account_id"):
        snapshot = parse_health(corpus.health_body(name))
        assert snapshot.unidentified == 1
        assert list(snapshot.accounts) == ["def456"]


@pytest.mark.parametrize("name", corpus.names("detail", documented_shape=True))
def test_every_documented_detail_body_parses(name: str) -> None:
    detail = parse_detail(corpus.detail_body(name))
    assert detail.account_id


def test_a_revoked_analytics_scope_counts_although_the_vendor_marks_it_not_required() -> None:
    detail = parse_detail(corpus.detail_body("analytics_revoked"))
    assert detail.missing_analytics
    assert detail.missing_posting == ()


async def test_the_simulator_serves_a_null_status_and_the_monitor_keeps_the_account(
    sink: Sink, base_env, tmp_path: Path
) -> None:
    sim = Simulator(make_accounts(4))
    await sim.start()
    try:
        config = write_config(
            tmp_path / "late-monitor.toml",
            {
                "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY},
                "monitor": {"detail": "never", "detail_every": "0"},
                "state": {"path": str(tmp_path / "state.db")},
                "notify": {"urls": [sink.url()]},
            },
        )
        runs = []
        for overlay in (None, corpus.overlay("health", "null_status"), None):
            if overlay is None:
                sim.clear_raw()
            else:
                sim.set("acc_00002", status="error")  # hidden behind the null: not to be guessed
                sim.set_raw("acc_00002", overlay)
            ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
            runs.append(ran.code)
    finally:
        await sim.stop()

    assert runs == [0, 0, 0]
    titles = sink.titles()
    assert titles[0] == "Late: Late listed accounts with fields late-monitor cannot read"
    assert "acc_00002): status (kept as healthy)" in sink.received[0]["message"]
    assert titles[1] == "Late: 1 account needs attention"  # readable again: now it is news
    assert "healthy -> error" in sink.received[1]["message"]


def test_a_status_in_capitals_or_with_spaces_is_the_status_it_names() -> None:
    snapshot = parse_health(corpus.health_body("status_uppercase_error"))
    assert snapshot.accounts["abc123"].status == "error"  # a failure, not an unknown warning
