"""Message text per destination format, from Jinja2 templates, with Late's words escaped.

Each destination gets one of four styles: `text`, `markdown`, `slack` (Markdown, escaped the
way Apprise's Slack converter reads it) and `html`. Every value from Late that a template
prints (names, statuses, issues, recommendations) is escaped for the style by the
environment's `finalize`, so `<!channel>`, `@everyone`, `[click](https://evil.example)` or
`<b>` in a display name is shown, never obeyed; only values marked `Safe` (links we built)
pass as they are. The built-in texts are templates in `late_monitor/templates`; a
`[notify] templates` directory overrides any of them. A user template that fails while
rendering falls back to the built-in one, and the reason is logged.

Template names: `title/<name>.<format>.j2` and `body/<name>.<format>.j2`, where `<format>` is
text, markdown or html (or left out: every format), and `<name>` is an event kind
(`degraded`, `reminder`, ...) or the fallback `digest` (title), `account` or `api` (body).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape as html_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from late_monitor.collector import imports_frozen
from late_monitor.errors import ConfigError
from late_monitor.events import Event, Kind
from late_monitor.impact import Impact, human
from late_monitor.models import Detail
from late_monitor.reconnect import Links

if TYPE_CHECKING:  # Jinja2 is imported when a message is written (~60 ms), not at start
    from jinja2 import BaseLoader, BytecodeCache, Template
    from jinja2.sandbox import SandboxedEnvironment

log = structlog.get_logger("late_monitor.render")

BUILTIN = Path(__file__).parent / "templates"
STYLES = ("text", "markdown", "slack", "html")
FORMAT_OF_STYLE = {"text": "text", "markdown": "markdown", "slack": "markdown", "html": "html"}
_NAMES = {"digest", "account", "api", *(str(kind) for kind in Kind)}
_TEMPLATE_NAME = re.compile(r"^(title|body)/([a-z_]+)(?:\.(text|markdown|html))?\.j2$")

# Apprise schemas by the format their service reads best (an explicit ?format= wins)
_SLACK = {"slack"}
_MARKDOWN = {"discord", "tgram", "msteams", "workflows"}
_HTML = {"mailto", "mailtos", "ses", "sendgrid", "mailgun", "sparkpost", "resend", "postmark"}


def style_for(schema: str | None, url_format: str | None = None) -> str:
    """The style a destination gets: its URL's `?format=`, else what its service reads."""
    if url_format in ("text", "html"):
        return url_format
    if url_format == "markdown":
        return "slack" if schema in _SLACK else "markdown"
    if schema in _SLACK:
        return "slack"
    if schema in _MARKDOWN:
        return "markdown"
    return "html" if schema in _HTML else "text"


class Safe(str):
    """Text we built for the target format (a link): printed as it is."""

    __slots__ = ()


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_PING = re.compile(r"@(?=(?:everyone|here|channel|all|room)\b)", re.IGNORECASE)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]()<>|#])")
_SLACK_SPECIAL = re.compile(r"([\\<>\[\]()])")


def escape_text(value: str) -> str:
    """One line, and no mass mention: a zero-width space after the @ of @everyone."""
    if value.isprintable() and "@" not in value:  # most values (~3x faster: ~4,000 a digest)
        return value  # every character _CONTROL takes is unprintable; _PING needs an @
    return _PING.sub("@\u200b", _CONTROL.sub(" ", value))


def escape_markdown(value: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape_text(value))


def escape_slack(value: str) -> str:
    """Apprise turns `\\<` into `&lt;` and `&` into `&amp;` for Slack, and drops the other
    backslashes of links; Slack has no escape for `_` or `*`, which only change emphasis."""
    return _SLACK_SPECIAL.sub(r"\\\1", escape_text(value))


def escape_html(value: str) -> str:
    return html_escape(escape_text(value), quote=True)


ESCAPES: dict[str, Callable[[str], str]] = {
    "text": escape_text,
    "markdown": escape_markdown,
    "slack": escape_slack,
    "html": escape_html,
}


def _finalizer(escape: Callable[[str], str]) -> Callable[[Any], str]:
    def finalize(value: Any) -> str:
        if isinstance(value, Safe):
            return str(value)
        if value is None:
            return ""
        return escape(str(value))

    return finalize


def _environment(
    loader: BaseLoader, style: str, cache: BytecodeCache | None = None
) -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalizer(ESCAPES[style]),
        bytecode_cache=cache,
    )
    env.filters["human"] = human
    env.filters["utc"] = lambda when: f"{when:%Y-%m-%d %H:%M} UTC" if when else ""
    return env


def check_templates(directory: str) -> list[str]:
    """Problems with a templates directory: each one `file:line: what`."""
    from jinja2 import FileSystemLoader, TemplateError, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    root = Path(directory).expanduser()
    if not root.is_dir():
        return [f"notify.templates: {root} is not a directory"]
    problems = []
    env = SandboxedEnvironment(loader=FileSystemLoader(str(root)))
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        name = path.relative_to(root).as_posix()
        match = _TEMPLATE_NAME.match(name)
        if not match or match.group(2) not in _NAMES:
            problems.append(
                f"notify.templates: {path}: not a template late-monitor uses (expected "
                "title/ or body/ NAME[.text|.markdown|.html].j2, NAME an event kind, "
                "digest, account or api)"
            )
            continue
        try:
            env.get_template(name)
        except TemplateSyntaxError as exc:
            problems.append(f"notify.templates: {path}:{exc.lineno}: {exc.message}")
        except (TemplateError, UnicodeDecodeError) as exc:
            problems.append(f"notify.templates: {path}: {exc}")
    return problems


@dataclass(frozen=True, slots=True)
class Extras:
    """What a message says about an account beyond its events: impact and how to fix it."""

    impact: Impact | None = None
    links: Links | None = None


class Renderer:
    """Titles and digest entries for each style, from the templates."""

    def __init__(self, templates: str = "") -> None:
        self.templates = templates
        if templates and (problems := check_templates(templates)):
            raise ConfigError(problems)
        self._builtin: dict[str, SandboxedEnvironment] = {}
        self._user: dict[str, SandboxedEnvironment] = {}
        self._chosen: dict[tuple[str, str, str, str], tuple[Template, Template]] = {}

    def _templates(
        self, part: str, name: str, fallback: str, style: str
    ) -> tuple[Template, Template]:
        key = (part, name, fallback, style)
        if not self._builtin:
            self._load()
        if key not in self._chosen:
            fmt = FORMAT_OF_STYLE[style]
            names = [
                f"{part}/{n}{suffix}.j2" for n in (name, fallback) for suffix in (f".{fmt}", "")
            ]
            builtin = self._builtin[style].select_template(names)
            user = builtin
            if self._user:
                from jinja2 import TemplatesNotFound

                with contextlib.suppress(TemplatesNotFound):
                    user = self._user[style].select_template(names)
            self._chosen[key] = (user, builtin)
        return self._chosen[key]

    def _load(self) -> None:
        with imports_frozen("jinja2"):
            from jinja2 import FileSystemLoader

            from late_monitor.template_cache import template_cache

            cache = template_cache()  # compiled templates, kept between processes
            builtin = FileSystemLoader(str(BUILTIN))
            self._builtin = {style: _environment(builtin, style, cache) for style in STYLES}
            if self.templates:  # a user's file of any name in the chain wins over every one
                user = FileSystemLoader(str(Path(self.templates).expanduser()))
                self._user = {style: _environment(user, style, cache) for style in STYLES}

    def render(
        self, part: str, name: str, fallback: str, style: str, context: Mapping[str, Any]
    ) -> str:
        """One template's text; the built-in one when the user's fails."""
        user, builtin = self._templates(part, name, fallback, style)
        if user is not builtin:
            try:
                return user.render(context)
            except Exception as exc:  # a bad template must never lose an alert
                log.warning(
                    "template_failed",
                    template=user.filename,
                    error=f"{type(exc).__name__}: {exc}",
                    fallback="built-in text",
                )
        return builtin.render(context)

    def entry(self, style: str, kind: str, context: Mapping[str, Any]) -> str:
        fallback = "api" if context.get("account") is None else "account"
        return _block(self.render("body", kind, fallback, style, context))

    def title(self, style: str, kind: str, context: Mapping[str, Any]) -> str:
        # a title is plain text wherever it lands (a subject line, an embed title)
        text = self.render(
            "title", kind, "digest", "text", {**context, "format": FORMAT_OF_STYLE[style]}
        )
        return " ".join(text.split())


def _block(text: str) -> str:
    """An entry as the digest cuts it (notify.fit): one first line, continuation lines
    indented, no blank lines, whatever the template did."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n") if line.strip()]
    if not lines:
        return ""
    rest = [line if line[:1].isspace() else "  " + line for line in lines[1:]]
    return "\n".join([lines[0].lstrip(), *rest])


def advice(issues: Iterable[str], detail: Detail | None) -> tuple[list[str], list[str]]:
    """Late's issues and recommendations, each said once, in Late's words."""
    seen: set[str] = set()

    def fresh(texts: Iterable[str]) -> list[str]:
        out = []
        for text in texts:
            key = " ".join(text.split()).casefold().rstrip(".")
            if key and key not in seen:
                seen.add(key)
                out.append(text.strip())
        return out

    said = fresh([*issues, *(detail.issues if detail else ())])
    fix = fresh(detail.recommendations if detail else ())
    return said, fix


def impact_context(impact: Impact | None) -> dict[str, Any] | None:
    if impact is None:
        return None
    return {
        "summary": impact_summary(impact),
        "known": impact.known,
        "count": impact.count,
        "at_least": impact.at_least,
        "first_due": impact.first_due,
        "first_in": human(impact.first_in) if impact.first_in is not None else "",
        "until": impact.until,
        "horizon": human(impact.horizon) if impact.horizon else "",
    }


def impact_summary(impact: Impact) -> str:
    """'4 scheduled posts in the next 72 h, the first in 2 h 14 min', or as far as known."""
    if not impact.known:
        return "scheduled posts unknown"
    span = (
        f"in the next {human(impact.horizon)}"
        if impact.complete
        else f"before {when(impact.until)}"
    )
    if not impact.count:
        return f"no scheduled posts {span}"
    count = f"{impact.count} scheduled post{'s' if impact.count != 1 else ''}"
    if impact.at_least:
        count = "at least " + count
    first = f", the first in {human(impact.first_in)}" if impact.first_in is not None else ""
    return f"{count} {span}{first}"


def links_context(links: Links | None) -> dict[str, Any]:
    links = links or Links()
    return {
        "reconnect": Safe(links.reconnect),
        "dashboard": Safe(links.dashboard),
        "command": links.command,  # holds an account id from Late: escaped
    }


def event_context(event: Event) -> dict[str, Any]:
    return {
        "kind": str(event.kind),
        "type": str(event.notify_type),
        "note": event.note,
        "old_status": event.old_status,
        "new_status": event.new_status,
        "first_seen": event.first_seen,
    }


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else ""


def account_context(
    events: Sequence[Event],
    detail: Detail | None,
    extras: Extras | None,
    worst: str,
    *,
    profiles: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What an account's entry template gets (README: "Templates")."""
    first = events[0]
    state = first.account
    assert state is not None
    kinds = {str(e.kind) for e in events}
    if Kind.DISCONNECTED in kinds:
        kinds.add(str(Kind.REMOVED))  # rendered alike: the note says who disconnected it
    status_event = next((e for e in events if e.old_status and e.new_status), None)
    removed = Kind.REMOVED in kinds
    if removed:
        change = "no longer connected to Late"
    elif any(e.first_seen for e in events):
        change = f"first seen in {state.status}"
    elif status_event and status_event.old_status != status_event.new_status:
        change = f"{status_event.old_status} -> {status_event.new_status}"
    else:
        change = state.status
    flags = []
    if Kind.RECONNECT_NEEDED in kinds or (state.needs_reconnect and not removed):
        flags.append("needs reconnect")
    if Kind.POSTING_BLOCKED in kinds or (not state.can_post and not removed):
        flags.append("cannot post")
    if Kind.RECOVERED in kinds:
        flags.append("recovered")
    quiet = removed or Kind.RECOVERED in kinds
    issues, fix = advice(() if quiet else state.issues, None if quiet else detail)
    return {
        "format": "",
        "type": worst,
        "kinds": sorted(kinds),
        "events": [event_context(e) for e in events],
        "account": {
            "id": state.account_id,
            "platform": state.platform,
            "username": state.username,
            "display_name": state.display_name,
            "name": state.username or state.display_name or state.account_id,
            "status": state.status,
            "needs_reconnect": state.needs_reconnect,
            "can_post": state.can_post,
            "since": state.since,
            "profile_id": state.profile_id or "",
            # the profile's name from Late's /v1/profiles, when known ("" otherwise)
            "profile": (profiles or {}).get(state.profile_id or "", ""),
            "healthy": state.healthy,
        },
        "change": change,
        "flags": flags,
        "notes": [e.note for e in events if e.note],
        "issues": issues,
        "missing": list(detail.missing) if detail is not None and not quiet else [],
        "fix": fix,
        "impact": None if quiet or extras is None else impact_context(extras.impact),
        "links": links_context(None if quiet or extras is None else extras.links),
    }
