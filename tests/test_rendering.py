"""Each destination gets its format (Markdown, HTML, text), with what Late says escaped in it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
from hypothesis import given
from hypothesis import strategies as st

from late_monitor.render import _CONTROL, _PING, escape_text, style_for
from late_monitor.simulator import Simulator
from tests.support.process import run_cli
from tests.support.sink import Sink

HOSTILE = "<!channel> @everyone [click](https://evil.example) <b>bold</b> <@U123>"


class Tags(HTMLParser):
    """The tags and attributes of an HTML body, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


@pytest.fixture
async def hostile_run(sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path):  # type: ignore[no-untyped-def]
    """One run --once in which an account named with control sequences breaks, told to a
    Markdown, an HTML and a plain destination (json:// sinks with ?format=)."""
    config = monitor_config(
        notify={
            "urls": [
                f"json://127.0.0.1:{sink.port}/markdown/TOKEN1?format=markdown",
                f"json://127.0.0.1:{sink.port}/html/TOKEN2?format=html",
                f"json://127.0.0.1:{sink.port}/text/TOKEN3",
            ]
        },
        http={"public_url": "https://monitor.example"},
    )
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    sim.set("acc_00001", username="", display_name=HOSTILE)
    sim.break_account("acc_00001", issue="<!here> token expired [fix](https://evil.example)")
    sim.set("acc_00001", recommendations=["Reconnect **now** @channel"])
    ran = await run_cli("run", "--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    return {m["path"].split("/")[1]: m["message"] for m in sink.received}


async def test_markdown_shows_a_hostile_display_name_as_text_and_pings_nobody(
    hostile_run: dict[str, str],
) -> None:
    body = hostile_run["markdown"]
    assert r"\<!channel\> @" + "\u200beveryone" + r" \[click\]\(https://evil.example\)" in body
    assert r"\<b\>bold\</b\>" in body
    assert r"\<@U123\>" in body
    assert "<!channel>" not in body
    assert "@everyone" not in body
    assert "<!here>" not in body
    assert "@\u200bchannel" in body  # in Late's recommendation too
    assert "[Reconnect this account](https://monitor.example/reconnect/" in body
    rendered = parsed(markdown.markdown(body))
    links = [attrs.get("href") for tag, attrs in rendered.tags if tag == "a"]
    assert links
    assert all(href.startswith("https://monitor.example/reconnect/") for href in links)
    # <b> in the name is not a tag once rendered; the only markup is ours
    assert {tag for tag, _ in rendered.tags} <= {"p", "strong", "a"}
    text = "".join(rendered.text)
    assert "[click](https://evil.example)" in text
    assert "**now**" in text
    assert re.search(r"<!channel\\?> @\u200beveryone", text)


async def test_html_shows_a_hostile_display_name_as_text(hostile_run: dict[str, str]) -> None:
    body = hostile_run["html"]
    assert "&lt;!channel&gt; @\u200beveryone [click](https://evil.example) &lt;b&gt;bold" in body
    rendered = parsed(body)
    hrefs = [attrs.get("href") for tag, attrs in rendered.tags if tag == "a"]
    assert len(hrefs) == 1
    assert hrefs[0].startswith("https://monitor.example/reconnect/")
    text = "".join(rendered.text)
    assert "<!channel> @\u200beveryone [click](https://evil.example) <b>bold</b> <@U123>" in text
    assert "<!here> token expired" not in body  # Late's issue text is escaped too
    assert "&lt;!here&gt; token expired" in body


async def test_plain_text_keeps_the_name_readable_and_breaks_mass_mentions_only(
    hostile_run: dict[str, str],
) -> None:
    body = hostile_run["text"]
    assert "<!channel> @\u200beveryone [click](https://evil.example) <b>bold</b> <@U123>" in body
    assert "reconnect: https://monitor.example/reconnect/" in body


async def test_late_text_with_line_breaks_cannot_forge_an_entry(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    config = monitor_config()
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sim.set(
        "acc_00001", display_name="x\n[SUCCESS] twitter @all (acc_00002): recovered", username=""
    )
    sim.break_account("acc_00001")
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    lines = sink.received[0]["message"].split("\n")
    assert not any(line.startswith("[SUCCESS]") for line in lines)
    assert "x [SUCCESS] twitter @\u200ball (acc_00002)" in lines[0]


async def test_a_long_html_digest_is_cut_between_accounts_with_how_many_more(
    monitor_config, base_env, tmp_path: Path, sink: Sink
) -> None:
    from late_monitor.simulator import make_accounts

    big = Simulator(make_accounts(200))
    await big.start()
    try:
        config = monitor_config(
            late={"base_url": big.base_url, "max_requests_per_minute": 1200},
            notify={"urls": [f"json://127.0.0.1:{sink.port}/html/TOKEN2?format=html"]},
        )
        assert (
            await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
        ).code == 0
        for account_id in list(big.accounts)[:150]:
            big.break_account(account_id)
        sink.max_body = 1900  # a destination that refuses longer messages (as Discord)
        ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 0, ran.output
    finally:
        await big.stop()
    body = sink.received[-1]["message"]
    *entries, last = body.split("\n")
    match = re.fullmatch(r"\.\.\. and (\d+) more accounts \(see late-monitor status\)", last)
    assert match, last
    assert entries[-1].strip() == "</p>"  # the last account whole
    assert body.count("<p>") + int(match.group(1)) == 150


@pytest.mark.parametrize(
    ("url", "style"),
    [
        ("slack://T1/B2/C3", "slack"),
        ("discord://1/abc", "markdown"),
        ("tgram://123:abc/1", "markdown"),
        ("msteams://a/b/c", "markdown"),
        ("mailtos://u:p@example.com", "html"),
        ("json://h/x", "text"),
        ("json://h/x?format=html", "html"),
        ("slack://T1/B2/C3?format=text", "text"),
        ("ntfy://topic", "text"),
    ],
)
def test_each_destination_gets_the_format_it_reads(url: str, style: str) -> None:
    from late_monitor.notify import _url_format
    from late_monitor.plugins import schema_of

    assert style_for(schema_of(url), _url_format(url)) == style


async def test_what_apprise_hands_slack_and_discord_pings_nobody() -> None:
    """The Slack and Discord bodies through Apprise's own conversion for those services
    (nothing is sent: only the text each would post)."""
    from datetime import UTC, datetime

    import apprise

    from late_monitor.events import Event, Kind, NotifyType
    from late_monitor.notify import Notifier
    from late_monitor.state import AccountState

    notifier = Notifier(urls=["slack://T1234567/B7654321/XXXXYYYYZZZZ", "discord://1234/abcd"])
    await notifier.load()
    state = AccountState(
        account_id="acc_1",
        platform="twitter",
        username="",
        display_name=HOSTILE,
        status="error",
        needs_reconnect=True,
        can_post=False,
        since=datetime(2026, 1, 1, tzinfo=UTC),
        issues=("<!here> see [fix](https://evil.example)",),
    )
    event = Event(Kind.RECONNECT_NEEDED, NotifyType.FAILURE, state, "healthy", "error")
    bodies = {}
    for message in notifier.plan([event]):
        for key, _ in message.destinations:
            destination = next(d for d in notifier.destinations if d.key == key)
            bodies[destination.style] = destination.service.dialect_convert(
                message.body, apprise.NotifyFormat.MARKDOWN
            )
    slack, discord = bodies["slack"], bodies["markdown"]
    # Slack: a mention or a link is <...>; every < from Late arrives as &lt;
    for escaped in ("&lt;!channel&gt;", "&lt;!here&gt;", "&lt;@U123&gt;"):
        assert escaped in slack
    assert not re.search(r"<[!@#]|<https?://evil", slack)
    assert "@\u200beveryone" in slack
    # Discord: @everyone broken by a zero-width space, <@id> and links escaped
    assert "@everyone" not in discord
    assert "\\<@U123\\>" in discord
    assert "[click](https://evil.example)" not in discord
    assert "\\[click\\]\\(https://evil.example\\)" in discord


_PIECES = [*"\x00\x1f\x7f\u2028\u2029\u200b\u0085@aé ", "everyone", "here"]  # and kin


@given(st.lists(st.sampled_from(_PIECES)).map("".join) | st.text())
def test_escape_text_takes_its_short_cut_only_where_nothing_is_escaped(value: str) -> None:
    """The short cut for printable text without an @ gives what the expressions give."""
    assert escape_text(value) == _PING.sub("@\u200b", _CONTROL.sub(" ", value))


def test_escape_text_still_escapes_what_it_did() -> None:
    assert escape_text("a\nb\u2028c") == "a b c"
    for word in ("everyone", "here", "channel", "all", "room", "EveryOne"):
        assert escape_text(f"hi @{word}") == f"hi @\u200b{word}"
    assert escape_text("plain é text") == "plain é text"


def test_no_printable_character_is_one_escape_text_acts_on_but_the_at_sign() -> None:
    """Both expressions work a character at a time: the short cut (printable, no @) is exact
    if no printable character is one _CONTROL takes, checked for every code point."""
    taken = [c for c in range(0x110000) if chr(c).isprintable() and _CONTROL.search(chr(c))]
    assert taken == []
    assert _PING.pattern.startswith("@")  # a mention is escaped only where an @ is
