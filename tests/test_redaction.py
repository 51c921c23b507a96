"""The redactor hides what is secret in each Apprise URL, and nothing else."""

from __future__ import annotations

import apprise
import pytest
import structlog
from structlog.testing import capture_logs

from late_monitor import plugins
from late_monitor.logs import MASK, Redactor

# (url, secrets that must never show, words that must still show)
TABLE = [
    (
        "jsons://example.com/alerts/monitoring?format=markdown",
        [],
        ["alerts", "monitoring", "markdown"],
    ),
    ("json://127.0.0.1:8080/hook/SINKTOKEN0001", ["SINKTOKEN0001"], ["hook"]),
    (
        "json://ops:Pa55word@host.example/path?+X-Token=abcdef123456",
        ["Pa55word", "abcdef123456"],
        ["ops", "path"],
    ),
    (
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
        ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
        ["general"],
    ),
    (
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
        ["4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"],
        [],
    ),
    (
        "tgram://123456789:ABCadefghijklmno-pqrstuvwxyz1234/-1001234567890",
        ["ABCadefghijklmno-pqrstuvwxyz1234"],
        [],
    ),
    (
        "mailtos://alerts:app-password@gmail.com?to=ops@example.com",
        ["app-password"],
        ["alerts", "gmail.com", "ops@example.com"],
    ),
    (
        "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi",
        ["uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"],
        [],
    ),
    ("ntfys://ntfy.sh/alerts-2f9a7c31?priority=high", ["alerts-2f9a7c31"], ["high", "ntfy.sh"]),
    ("gotify://gotify.example.com/AbCdEfGhIjKlMnO", ["AbCdEfGhIjKlMnO"], ["gotify.example.com"]),
    (
        "json://127.0.0.1:9/SLACKTOKENBBBB/my-private-topic",
        ["SLACKTOKENBBBB", "my-private-topic"],
        [],
    ),
]


def _captured(redactor: Redactor, text: str) -> str:
    with capture_logs(processors=[redactor]) as logs:
        structlog.get_logger("test").info("notification_failed", detail=text)
    return str(logs[0]["detail"])


@pytest.mark.parametrize(("url", "secrets", "words"), TABLE, ids=[t[0][:18] for t in TABLE])
def test_a_url_is_masked_where_it_is_secret_and_nowhere_else(
    url: str, secrets: list[str], words: list[str]
) -> None:
    redactor = Redactor()
    redactor.add_url(url)
    shown = _captured(redactor, f"sent to {url}; words: {' '.join(words)}; format=markdown")

    for secret in secrets:
        assert secret not in shown
    for word in [*words, "markdown", "format", "sent"]:
        assert word in shown
    assert MASK in shown or not secrets


@pytest.mark.parametrize(("url", "secrets", "words"), TABLE, ids=[t[0][:18] for t in TABLE])
def test_what_apprise_itself_hides_is_masked_too(
    url: str, secrets: list[str], words: list[str]
) -> None:
    plugins.prepare([url])  # as Notifier does: another test may have loaded only json://
    services = apprise.Apprise()
    assert services.add(url)
    [service] = list(services)
    raw = str(service.url(privacy=False))
    redactor = Redactor()
    redactor.add_url(raw, private=str(service.url(privacy=True)))

    shown = _captured(redactor, f"sent to {raw}")

    for secret in secrets:
        assert secret not in shown
    assert "overflow=upstream" in shown  # Apprise's own options stay readable
