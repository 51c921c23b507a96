"""Load only the Apprise plugins that the configured destinations use.

Apprise's first lookup imports all of its ~190 plugin modules: 0.35-0.45 s and ~22 MB here,
most of what a `run --once` with one message to send spends beyond its imports. A monitor
that posts to one Slack channel needs one of them. Each schema is looked up by module name
(with a table for the names that do not follow the schema) and checked against the plugin's
own protocols; anything not found that way (a typo, a native `https://` webhook URL, an
Apprise config file) loads everything, exactly as Apprise would have. Only Apprise's public
manager methods are used.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

CONSOLE = "console"

# schema -> module under apprise.plugins, where the module is not named after the schema
# (nor after it without its trailing "s", nor "custom_" + either); a test holds each entry
# to what Apprise's own full load maps the schema to
_MODULES = {
    "46elks": "fortysixelks",
    "apprise": "apprise_api",
    "apprises": "apprise_api",
    "atalk": "africas_talking",
    "azure": "office365",
    "bsky": "bluesky",
    "d7sms": "d7networks",
    "elks": "fortysixelks",
    "gchat": "google_chat",
    "gio": "glib",
    "hassio": "home_assistant",
    "hassios": "home_assistant",
    "kakao": "kakaotalk",
    "kde": "dbus",
    "klr": "kaleyra",
    "kudosity": "burstsms",
    "lfg": "lfgalarm",
    "mailto": "email",
    "mailtos": "email",
    "mmost": "mattermost",
    "mmosts": "mattermost",
    "mobilemsg": "mobilemessage",
    "msgbird": "messagebird",
    "ncloud": "nextcloud",
    "nclouds": "nextcloud",
    "nctalk": "nextcloudtalk",
    "nctalks": "nextcloudtalk",
    "nexmo": "vonage",
    "o365": "office365",
    "onesignal": "one_signal",
    "parsep": "parseplatform",
    "parseps": "parseplatform",
    "pbul": "pushbullet",
    "pjet": "pushjet",
    "pjets": "pushjet",
    "pover": "pushover",
    "psafer": "pushsafer",
    "psafers": "pushsafer",
    "push": "techuluspush",
    "qt": "dbus",
    "ringc": "ringcentral",
    "rocket": "rocketchat",
    "rockets": "rocketchat",
    "schan": "serverchan",
    "session": "sogs",
    "sessions": "sogs",
    "signal": "signal_api",
    "signals": "signal_api",
    "smsmgr": "smsmanager",
    "spush": "simplepush",
    "strmlabs": "streamlabs",
    "tgram": "telegram",
    "toot": "mastodon",
    "toots": "mastodon",
    "tweet": "twitter",
    "victorops": "splunk",
    "webex": "webexteams",
    "wecom": "pushplus",
    "workflow": "workflows",
    "wxteams": "webexteams",
    "x": "twitter",
    "xbmc": "kodi",
    "xbmcs": "kodi",
    "zcliq": "cliq",
    "zohocliq": "cliq",
}
_SCHEMA = re.compile(r"\s*([a-z0-9]+)://", re.IGNORECASE)

_lock = threading.Lock()
_everything = False


def schema_of(url: str) -> str | None:
    match = _SCHEMA.match(url)
    return match.group(1).lower() if match else None


def prepare(urls: Iterable[str], *, everything: bool = False) -> None:
    """Make Apprise know the schemas of `urls` (and late-monitor's `console://`).

    Call before building Apprise objects for these URLs; `everything` loads every plugin.
    Runs in a worker thread: importing blocks.
    """
    global _everything
    manager = _manager()
    with _lock:
        if not _everything:
            schemas = {schema_of(url) for url in urls} - {CONSOLE}
            known = {schema for schema in schemas if schema is not None}
            plugins = None if everything or len(known) < len(schemas) else _find_all(known)
            if plugins is not None and (manager or _mark_loaded(manager)):
                for plugin in plugins:
                    if not all(schema in manager for schema in protocols(plugin)):
                        manager.add(plugin)
            else:
                if manager:
                    manager.unload_modules()  # a fresh full load, without clashing entries
                manager.load_modules()
                _everything = True
        if CONSOLE not in manager:
            _register_console()


def _mark_loaded(manager: Any) -> bool:
    """Have the manager count as loaded while holding no plugin: load an empty directory."""
    try:
        with tempfile.TemporaryDirectory(prefix="late-monitor-") as empty:
            manager.load_modules(path=empty)
    except OSError:
        return False
    return bool(manager)


def protocols(plugin: Any) -> set[str]:
    """Every schema a plugin class answers to."""
    found: set[str] = set()
    for value in (plugin.protocol, plugin.secure_protocol):
        if isinstance(value, str):
            found.add(value.lower())
        elif value:
            found.update(str(v).lower() for v in value)
    return found


def find(schema: str) -> Any | None:
    """The plugin class for `schema`, importing only its module; None when not found so."""
    stem = schema[:-1] if schema.endswith("s") else schema
    names = [_MODULES[schema]] if schema in _MODULES else [schema, stem, f"custom_{stem}"]
    for name in dict.fromkeys(names):
        module_name = f"apprise.plugins.{name}"
        if name == "base" or importlib.util.find_spec(module_name) is None:
            continue
        plugin = _plugin_of(importlib.import_module(module_name))
        if plugin is not None and schema in protocols(plugin):
            return plugin
    return None


def _plugin_of(module: Any) -> Any | None:
    """The class Apprise's own loader takes from a plugin module: the first Notify* by name."""
    pattern = _manager().module_filter_re
    for name in dir(module):
        if pattern.match(name) and hasattr(value := getattr(module, name), "app_id"):
            return value
    return None


def _find_all(schemas: set[str]) -> list[Any] | None:
    plugins: list[Any] = []
    for schema in sorted(schemas):
        plugin = find(schema)
        if plugin is None:
            return None
        if plugin not in plugins:
            plugins.append(plugin)
    return plugins


def _manager() -> Any:
    # Apprise's plugin registry is a process-wide singleton
    return importlib.import_module("apprise.manager_plugins").NotificationManager()


def _register_console() -> None:
    """`console://`: print messages to stdout through the real Apprise path (demo, dry-run)."""
    decorators: Any = importlib.import_module("apprise.decorators")  # untyped plugin API

    def _console(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
        print(f"\n=== [{notify_type}] {title}\n{body}", file=sys.stdout, flush=True)
        return True

    decorators.notify(on=CONSOLE, name="late-monitor console")(_console)
