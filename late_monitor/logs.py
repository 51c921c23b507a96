"""Logging: structlog everywhere (stdlib loggers routed through it), secrets redacted.

JSON lines when not on a TTY, a readable console otherwise. The redaction processor runs last
before rendering, on every line, at every level, so the API key and the token parts of
notification URLs never reach a log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

import structlog

MASK = "***"
_NOISY = ("apprise", "urllib3", "requests", "asyncio", "aiohttp.access")


class Redactor:
    """Replaces every registered secret in every string value of a log line."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if secret and len(secret) >= 4 and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def add_url(self, url: str, *, private: str | None = None) -> None:
        """Register a notification URL's secrets; with Apprise's privacy view of it, also
        every piece Apprise hides."""
        self.add(*url_secrets(url))
        if private is not None:
            self.add(*apprise_secrets(url, private))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._secrets:
            for key, value in event_dict.items():
                if isinstance(value, str):
                    event_dict[key] = self.redact(value)
                elif value is not None and not isinstance(value, int | float | bool):
                    event_dict[key] = self.redact(str(value))
        return event_dict


_SECRET_KEY = re.compile(r"(?i)token|key|secret|pass|auth|sig|hash|webhook")
_SPLIT = re.compile(r"[/:@?&=#]+")
_COMMON = frozenset({"localhost", "hooks", "webhook", "webhooks", "services", "api"})


def _token_like(text: str) -> bool:
    """A string that looks like a credential, not a word: masking "markdown" or "alerts"
    everywhere would hide half of every log line. Lowercase words stay; anything with a
    digit or a capital, or long and joined with - or _, is taken for a token."""
    if len(text) < 6 or text.lower() in _COMMON:
        return False
    return (
        any(c.isdigit() or c.isupper() for c in text)
        or len(text) >= 24
        or (len(text) >= 12 and ("-" in text or "_" in text))
    )


def url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that are credentials, before Apprise has read it: the
    password; a host that is a token (slack://TOKEN/..., tgram://BOTTOKEN/...); user names,
    path segments and query values that look like tokens; header (`+X-Key=...`) values and
    values of keys named like a secret. Words and options (`format=markdown`) are kept."""
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return secrets
    if parts.password:
        secrets.append(parts.password)
    hostport = parts.netloc.rpartition("@")[2]
    host, _, port = hostport.partition(":")  # not .hostname: it would lowercase a token
    if port and not port.isdigit():
        secrets += [hostport, port]  # tgram://BOTID:TOKEN/...: a token, not a port
    if host and "." not in host and host != "localhost" and len(host) >= 6:
        secrets.append(host)
    if parts.username and _token_like(parts.username):
        secrets.append(parts.username)
    secrets += [segment for segment in parts.path.split("/") if _token_like(segment)]
    for key, value in parse_qsl(parts.query):
        header_or_secret = key.startswith("+") or (_SECRET_KEY.search(key) and len(value) >= 6)
        if header_or_secret or (_token_like(value) and not {"@", "."} & set(value)):
            secrets.append(value)
    return secrets


def apprise_secrets(raw: str, private: str) -> list[str]:
    """What Apprise itself hides: the pieces of a destination's URL that its privacy view
    (`url(privacy=True)`) does not show."""
    shown = set(_SPLIT.split(private))
    return [piece for piece in _SPLIT.split(raw) if piece and piece not in shown]


REDACTOR = Redactor()


class _Stream(logging.StreamHandler[TextIO]):
    """A stream handler that drops a record quietly when the stream's reader has gone
    (`late-monitor run --once | head`): the standard one prints the broken pipe's traceback
    for each record. It writes again once a reader is back (a FIFO's log shipper restarted);
    any other failure to write is reported as the standard handler does."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            return
        super().handleError(record)


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    urls: Iterable[str] = (),
) -> None:
    """Set up structlog and the stdlib root logger; safe to call again on reload."""
    stream = stream or sys.stderr
    REDACTOR.add(*secrets)
    for url in urls:
        REDACTOR.add_url(url)
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
    )
    handler = _Stream(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name in _NOISY:
        # Apprise and urllib3 print URLs with tokens at DEBUG.
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    logging.getLogger("apprise").setLevel(max(numeric, logging.WARNING))
    # APScheduler logs every job run at INFO, and every skipped run (a cycle longer than the
    # interval) at WARNING; the daemon reports slow cycles itself, once each.
    logging.getLogger("apscheduler").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("apscheduler.scheduler").setLevel(max(numeric, logging.ERROR))
