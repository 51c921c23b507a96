"""Settings: a TOML file overridden by LATE_MONITOR_<SECTION>__<KEY> variables, validated once.

The CLI calls `load_settings` once and passes plain values down; nothing else reads the
environment.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import math
import os
import re
import tomllib
import typing
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from late_monitor.errors import ConfigError
from late_monitor.models import KNOWN_PLATFORMS
from late_monitor.quiet import parse_days, parse_time
from late_monitor.state import DEFAULT_WORKSPACE

ENV_PREFIX = "LATE_MONITOR_"
DEFAULT_BASE_URL = "https://zernio.com/api/v1"
CREDENTIAL_NAME = "late-api-key"
WEBHOOK_CREDENTIAL = "late-webhook-secret"
STATE_CREDENTIAL = "late-state-password"
MIN_WEBHOOK_SECRET = 16  # characters; a short secret can be guessed, and alerts forged

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
# Far beyond any sensible setting, and short of where datetime and timedelta arithmetic
# (the scheduler's next run, a retry deadline) would overflow.
MAX_DURATION = 10 * 365 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds from `"90s"`, `"5m"`, `"24h"`, `"7d"`, `"1.5h"` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration like '90s', '5m', '24h' or '7d' is expected")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower().lstrip("+-") in (
        "nan",
        "inf",
        "infinity",
    ):
        seconds = math.nan
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1)
    else:
        raise ValueError("a duration like '90s', '5m', '24h' or '7d' is expected")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds, not nan or inf")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError("a duration longer than 10 years is not supported")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: 604800 -> '7d', 90 -> '90s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _hour(value: float) -> float:
    if value > 3600:
        raise ValueError("at most 1h (a webhook's mistake would stand uncorrected that long)")
    return value


class _Section(BaseModel):
    # Lists default to `Field(default=[])`: pydantic copies a default for each instance, and
    # `default_factory=list` made it read a builtin's signature, ~5 ms of every start.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def mask_url(url: str) -> str:
    """The URL with the password of a `user:password@` part replaced by ***."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _check_base_url(value: str) -> str:
    url = value.strip()
    shown = mask_url(url)
    if "://" not in url:
        raise ValueError(f"{shown!r} has no scheme; use https://{shown}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{shown!r}: the scheme must be https:// (or http://), not {parts.scheme}")
    if "@" in parts.netloc:
        # aiohttp refuses a request with both credentials in the URL and our Bearer header
        raise ValueError(
            f"{shown!r} holds credentials (user:password@); remove them, the API key is "
            "sent as a Bearer token"
        )
    try:
        port_ok = parts.hostname is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        port_ok = False
    if not port_ok:
        raise ValueError(f"{shown!r} has no valid host (or port)")
    return url


def insecure_base_url(url: str) -> bool:
    """Plain http:// to a host that is not this machine: the API key would cross in clear."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class LateSettings(_Section):
    api_key: SecretStr | None = None
    api_key_file: str = ""
    base_url: Annotated[str, AfterValidator(_check_base_url)] = DEFAULT_BASE_URL
    profile_id: str = ""
    platforms: list[Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]] = (
        Field(default=[])
    )
    timeout: PositiveDuration = 30.0
    max_requests_per_minute: int = Field(default=30, gt=0)
    max_body_mb: int = Field(default=128, gt=0, le=4096)


def _check_time(value: str) -> str:
    parse_time(value)
    return value


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone (e.g. 'Europe/Berlin', 'UTC')") from None
    return value


def _check_days(value: list[str]) -> list[str]:
    parse_days(value)
    return value


NotifyTypeName = Literal["info", "success", "warning", "failure"]
_QUIET_HOLD: tuple[NotifyTypeName, ...] = ("info", "success", "warning")


class QuietHoursSettings(_Section):
    """One `[[monitor.quiet_hours]]` window (see quiet.py)."""

    start: Annotated[str, AfterValidator(_check_time)]
    end: Annotated[str, AfterValidator(_check_time)]
    days: Annotated[list[str], AfterValidator(_check_days)] = Field(
        default_factory=lambda: ["mon-sun"]
    )
    timezone: Annotated[str, AfterValidator(_check_zone)] = "UTC"
    hold: list[NotifyTypeName] = Field(default_factory=lambda: list(_QUIET_HOLD))


class MonitorSettings(_Section):
    interval: PositiveDuration = 300.0
    confirm_after: int = Field(default=1, ge=1)
    detail: Literal["changed", "all", "never"] = "changed"
    detail_every: Duration = 6 * 3600.0
    token_expiry_warn: list[Duration] = Field(default_factory=lambda: [7 * 86400.0, 86400.0])
    remind_every: Duration = 86400.0
    notify_recovery: bool = True
    notify_first_seen: bool = True
    api_failure_after: int = Field(default=3, ge=1)
    quiet_hours: list[QuietHoursSettings] = Field(default=[])


def _check_state_url(url: str) -> str:
    """A PostgreSQL URL with no password in it (it would show wherever the URL is shown)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{parts.scheme or url!r}: only postgresql:// URLs are supported")
    if parts.password or "password=" in parts.query:
        raise ValueError(
            "the URL holds a password; put it in state.password_file or the systemd "
            f"credential {STATE_CREDENTIAL} instead"
        )
    return url


class StateSettings(_Section):
    path: str = ""
    url: Annotated[str, AfterValidator(_check_state_url)] = ""  # PostgreSQL: shared state, HA
    password_file: str = ""


def _check_routes(value: dict[str, Any]) -> dict[str, Any]:
    for key, tags in value.items():
        if key == "profile":
            if not isinstance(tags, dict) or not all(
                isinstance(v, list) and all(isinstance(t, str) for t in v) for v in tags.values()
            ):
                raise ValueError(
                    "profile routes are a table of profile name -> tags, e.g. "
                    'profile."Acme Coffee" = ["acme-slack"]'
                )
        elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{key}: a list of Apprise tags is expected")
    return value


RouteKey = Literal["info", "success", "warning", "failure", "profile"]


class NotifySettings(_Section):
    urls: list[SecretStr] = Field(default=[])
    config: str = ""
    group: Literal["cycle", "account"] = "cycle"
    retry_for: Duration = 86400.0
    # notify type -> tags; `profile` is profile name -> tags (that profile's news goes there)
    routes: Annotated[dict[RouteKey, Any], AfterValidator(_check_routes)] = Field(
        default_factory=dict
    )
    templates: str = ""  # a directory of Jinja2 templates overriding the built-in texts


def _check_public_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL (e.g. https://monitor.example.com)")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{url!r}: no query, fragment or credentials in the public URL")
    return url


class HttpSettings(_Section):
    listen: str = ""
    # where people reach `listen` from (a reverse proxy): links in messages point there
    public_url: Annotated[str, AfterValidator(_check_public_url)] = ""
    link_expiry: PositiveDuration = 7 * 86400.0  # how long a reconnect link works
    recheck_after: PositiveDuration = 60.0  # after a reconnect link is opened: poll again
    admin_token: SecretStr | None = None  # turns on the status page's actions


class ImpactSettings(_Section):
    """Scheduled posts of failing accounts: how far ahead to look, when to escalate."""

    horizon: PositiveDuration = 72 * 3600.0
    escalate_within: Duration = 2 * 3600.0  # "0" = never raise a warning to failure
    max_pages: int = Field(default=10, ge=0, le=1000)  # of 100 posts each; 0 = no lookup


def _check_heartbeat_url(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value():
        return value
    if "://" not in value.get_secret_value():
        raise ValueError(
            "not a URL: give an Apprise URL (json://..., slack://...) or an https:// ping URL"
        )
    return value


class HeartbeatSettings(_Section):
    url: Annotated[SecretStr | None, AfterValidator(_check_heartbeat_url)] = None
    on_failure: Literal["fail", "skip"] = "fail"
    fail_url: Annotated[SecretStr | None, AfterValidator(_check_heartbeat_url)] = None
    timeout: PositiveDuration = 10.0


class WebhooksSettings(_Section):
    secret: SecretStr | None = None
    secret_file: str = ""
    name: str = Field(default="late-monitor", min_length=1, max_length=50)
    watch_every: PositiveDuration = 3600.0
    poll_grace: Annotated[float, BeforeValidator(parse_duration), AfterValidator(_hour)] = 60.0


_WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def _check_workspace_name(value: str) -> str:
    if not _WORKSPACE_NAME.match(value):
        raise ValueError(
            f"{value!r}: a workspace name is 1-40 letters, digits, '-' or '_' (it names the "
            "workspace in messages, metrics, commands and its environment variable)"
        )
    return value


class WorkspaceNotifySettings(_Section):
    """A workspace's own destinations; without urls or config it uses the top-level [notify]."""

    urls: list[SecretStr] = Field(default=[])
    config: str = ""
    routes: Annotated[dict[RouteKey, Any], AfterValidator(_check_routes)] = Field(
        default_factory=dict
    )


class WorkspaceSettings(_Section):
    """One `[[workspaces]]` table: a Late API key and what to watch with it. Unset keys take
    the value of `[late]` (and `[monitor] interval`, `[notify]`)."""

    name: Annotated[str, AfterValidator(_check_workspace_name)]
    api_key: SecretStr | None = None
    api_key_file: str = ""
    base_url: Annotated[str | None, AfterValidator(lambda v: v and _check_base_url(v))] = None
    profile_id: str = ""
    platforms: list[Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]] = (
        Field(default=[])
    )
    max_requests_per_minute: int | None = Field(default=None, gt=0)
    interval: PositiveDuration | None = None
    notify: WorkspaceNotifySettings = Field(default_factory=WorkspaceNotifySettings)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """The whole configuration, as DESIGN.md lists it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,
        case_sensitive=False,
        defer_build=True,  # validated through _FileBacked: built once, there
    )

    late: LateSettings = Field(default_factory=LateSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    impact: ImpactSettings = Field(default_factory=ImpactSettings)
    webhooks: WebhooksSettings = Field(default_factory=WebhooksSettings)
    heartbeat: HeartbeatSettings = Field(default_factory=HeartbeatSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    workspaces: list[WorkspaceSettings] = Field(default=[])


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """Something allowed but probably wrong: `event` names it in logs, `text` says it in a line."""

    event: str
    text: str


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """Validated settings plus where they came from (for `config check`)."""

    settings: Settings
    path: Path | None
    api_key: SecretStr | None
    api_key_source: str
    sources: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[ConfigWarning, ...] = ()
    state_path: Path = Path("state.db")  # state.path, or the default for this environment
    webhook_secret: SecretStr | None = None  # webhooks.secret, its file or credential
    state_password: SecretStr | None = None  # state.password_file or its credential
    # The workspace this configuration (or this view of it) watches; `views` are the
    # [[workspaces]] tables, each a LoadedConfig whose [late] and [notify] are that
    # workspace's (what it does not set comes from the top level).
    workspace: str = DEFAULT_WORKSPACE
    views: tuple[LoadedConfig, ...] = ()
    label: str = ""  # how messages name the workspace: a [[workspaces]] view's name, else ""

    @property
    def workspaces(self) -> tuple[LoadedConfig, ...]:
        """Every workspace to watch: the [[workspaces]] views, or this config as the one."""
        return self.views or (self,)

    @property
    def named(self) -> bool:
        """Whether workspaces are configured by name (messages then say which)."""
        return bool(self.views)

    def workspace_named(self, name: str | None) -> LoadedConfig:
        """The view of workspace `name` (None: the only one); ConfigError naming the choices."""
        if name is None:
            if len(self.workspaces) > 1:
                raise ConfigError(
                    "several workspaces are configured; name one with -w/--workspace "
                    f"({', '.join(v.workspace for v in self.workspaces)})"
                )
            return self.workspaces[0]
        for view in self.workspaces:
            if view.workspace.lower() == name.lower():
                return view
        raise ConfigError(
            f"no workspace named {name!r}; configured: "
            + ", ".join(v.workspace for v in self.workspaces)
        )

    def require_api_key(self) -> str:
        if self.api_key is None or not self.api_key.get_secret_value():
            if self.named:
                problems = []
                for view in self.views:
                    try:
                        view.require_api_key()
                    except ConfigError as exc:
                        problems += exc.problems
                if problems:
                    raise ConfigError(problems)
                return self.views[0].require_api_key()
            if self.label:
                env = workspace_key_variable(self.workspace)
                raise ConfigError(
                    f"workspaces[{self.workspace}].api_key: no API key; set api_key or "
                    f"api_key_file in its [[workspaces]] table, {env}, or the systemd "
                    f"credential {CREDENTIAL_NAME}-{self.workspace}"
                )
            raise ConfigError(
                "late.api_key: no API key; set LATE_API_KEY, late.api_key, late.api_key_file "
                f"or the systemd credential {CREDENTIAL_NAME}"
            )
        return self.api_key.get_secret_value()


def workspace_key_variable(name: str) -> str:
    """The environment variable holding workspace `name`'s API key."""
    return f"{ENV_PREFIX}WORKSPACES__{_variable_part(name)}__API_KEY"


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' own environment parsing, over a mapping we pass in (tests, reload)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


# what `_FileBacked()` reads: (our environment, the file's tables), set by load_settings
_SOURCES: contextvars.ContextVar[tuple[Mapping[str, str], dict[str, Any]]] = contextvars.ContextVar(
    "late_monitor_config_sources"
)


class _FileBacked(Settings):
    """Settings from the given environment over the file, nothing else. One class, built on
    first use: a class per load built its validator again each time (~5 ms)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env, data = _SOURCES.get()
        return _EnvSource(settings_cls, env), InitSettingsSource(settings_cls, data)


def find_config_path(explicit: str | None, environ: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The config file to read and whether the user named it (a named file must exist)."""
    if explicit:
        return Path(explicit), True
    if env_path := environ.get("LATE_MONITOR_CONFIG"):
        return Path(env_path), True
    for candidate in (Path("late-monitor.toml"), Path("/etc/late-monitor/config.toml")):
        if candidate.is_file():
            return candidate, False
    return None, False


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _origin(
    loc: tuple[int | str, ...],
    data: Mapping[str, Any],
    path: Path | None,
    environ: Mapping[str, str],
) -> str:
    """Where a key's value came from: the environment variable, the file, or the default."""
    names = {key.upper() for key in environ}
    for depth in range(len(loc), 0, -1):
        if _env_name(loc[:depth]) in names:
            return _env_name(loc[:depth])
    deeper = sorted(name for name in names if name.startswith(_env_name(loc) + "__"))
    if deeper:
        return ", ".join(deeper)
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return "default"
    return str(path) if path else "default"


def _format_errors(
    exc: ValidationError, data: Mapping[str, Any], path: Path | None, environ: Mapping[str, str]
) -> list[str]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        key = ".".join(str(part) for part in loc) or "(top level)"
        origin = _origin(loc, data, path, environ)
        if origin == "default":
            origin = str(path) if path else "configuration"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{origin}: {key}: {message}")
    return problems


def _resolve_api_key(
    late: LateSettings, environ: Mapping[str, str], path: Path | None
) -> tuple[SecretStr | None, str]:
    env_name = f"{ENV_PREFIX}LATE__API_KEY"
    # late.api_key holds the variable's value when it is set, else the file's
    from_env = _named(environ, env_name)
    source = env_name if from_env else str(path) if path else "configuration"
    settings_key = late.api_key.get_secret_value() if late.api_key is not None else ""
    if from_env and (key := _clean_key(settings_key, source)):
        return SecretStr(key), source
    if key := _clean_key(environ.get("LATE_API_KEY", ""), "LATE_API_KEY"):
        return SecretStr(key), "LATE_API_KEY"
    if not from_env and (key := _clean_key(settings_key, f"{source}: late.api_key")):
        return SecretStr(key), source
    if late.api_key_file:
        key_file = Path(late.api_key_file).expanduser()
        return SecretStr(_read_secret_file(key_file, "late.api_key_file")), str(key_file)
    if credentials := environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(credentials) / CREDENTIAL_NAME
        if credential.is_file():
            return SecretStr(_read_secret_file(credential, "credential")), (
                f"systemd credential {CREDENTIAL_NAME}"
            )
    return None, "unset"


def _named(environ: Mapping[str, str], name: str) -> bool:
    return any(key.upper() == name for key in environ)


def _clean_key(value: str, source: str, name: str = "the API key") -> str:
    """The key without surrounding whitespace; a key with a character no key can hold inside
    (a line break from a pasted file, a space, a control or non-ASCII character) is refused,
    naming `source` and never showing the key."""
    key = value.strip()
    for char in key:
        if char in "\r\n":
            what = "a line break"
        elif char.isspace():
            what = "a space"
        elif unicodedata.category(char) == "Cc":
            what = "a control character"
        elif not char.isascii():
            what = "a non-ASCII character"
        else:
            continue
        raise ConfigError(
            f"{source}: {name} contains {what} inside it; it is one word "
            "(a pasted value often brings a second line or quotes with it)"
        )
    return key


def _read_secret_file(path: Path, what: str, name: str = "the API key") -> str:
    try:
        value = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    key = _clean_key(value, f"{what}: {path}", name)
    if not key:
        raise ConfigError(f"{what}: {path} is empty")
    return key


# A comma that starts the next URL; a comma inside a URL (`mailto://...?to=a,b`) does not.
_URL_COMMA = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def _known_variables() -> tuple[set[str], set[str], set[str]]:
    """Our variable names: every one, those holding a list, and prefixes of dict keys."""
    known, lists, prefixes = {f"{ENV_PREFIX}CONFIG"}, set(), set()
    for section, info in Settings.model_fields.items():
        known.add(_env_name((section,)))
        for key, field_info in getattr(info.annotation, "model_fields", {}).items():
            name = _env_name((section, key))
            known.add(name)
            origin = typing.get_origin(field_info.annotation)
            if origin is list:
                lists.add(name)
            elif origin is dict:
                prefixes.add(name + "__")
    return known, lists, prefixes


def _as_json_list(name: str, value: str) -> str:
    """A list variable as JSON: JSON as given, else comma-separated values (URLs split only
    where the next URL starts)."""
    text = value.strip()
    if text.startswith("["):
        return text
    parts = _URL_COMMA.split(text) if name.endswith("__URLS") else text.split(",")
    return json.dumps([part.strip() for part in parts if part.strip()])


def _closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was probably meant to be; difflib is imported for a typo only."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return close[0] if close else None


def _our_environment(
    environ: Mapping[str, str],
) -> tuple[dict[str, str], list[str], list[ConfigWarning]]:
    """The LATE_MONITOR_ variables that are settings (lists made JSON), the problems with
    them, and a warning for each other LATE_MONITOR_ variable: the environment is shared, so
    an unknown name is ignored rather than refused."""
    known, lists, prefixes = _known_variables()
    ours: dict[str, str] = {}
    problems: list[str] = []
    warnings: list[ConfigWarning] = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        if upper.startswith(f"{ENV_PREFIX}WORKSPACES__"):
            continue  # a workspace's API key: read by _workspace_views, never a setting
        if upper not in known and not upper.startswith(tuple(prefixes)):
            close = _closest(upper, known)
            hint = f"; did you mean {close}?" if close else ""
            warnings.append(
                ConfigWarning(
                    "unknown_variable_ignored",
                    f"{name}: not a late-monitor setting, ignored{hint}",
                )
            )
            continue
        if upper in lists or upper.startswith(tuple(prefixes)):
            value = _as_json_list(upper, value)
        if upper != f"{ENV_PREFIX}CONFIG" and value.lstrip().startswith(("[", "{")):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"{name}: not valid JSON ({exc.msg} at character {exc.pos}); give a JSON "
                    "list or table, or for a list comma-separated values"
                )
                continue
        ours[name] = value
    return ours, problems, warnings


def load_settings(
    explicit_path: str | None = None, *, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read, merge and validate the configuration; raise ConfigError with one line per problem."""
    full: Mapping[str, str] = os.environ if environ is None else environ
    path, named = find_config_path(explicit_path, full)
    data: dict[str, Any] = {}
    if path is not None and (named or path.exists()):
        data = _read_toml(path)
    env, env_problems, warnings = _our_environment(full)
    if env_problems:
        raise ConfigError(env_problems)

    token = _SOURCES.set((env, data))
    try:
        settings: Settings = _FileBacked()
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, data, path, env)) from None
    except ValueError as exc:  # pydantic-settings' own JSON decoding of complex env values
        raise ConfigError(f"environment: {exc}") from None
    finally:
        _SOURCES.reset(token)

    api_key, api_key_source = _resolve_api_key(settings.late, full, path)
    sources = {
        f"{section}.{key}": _origin((section, key), data, path, env)
        for section in Settings.model_fields
        if section != "workspaces"
        for key in type(getattr(settings, section)).model_fields
    }
    sources["late.api_key"] = api_key_source
    webhook_secret, sources["webhooks.secret"] = _resolve_webhook_secret(
        settings.webhooks, full, sources["webhooks.secret"], sources["webhooks.secret_file"]
    )
    if webhook_secret is not None:
        if len(webhook_secret.get_secret_value()) < MIN_WEBHOOK_SECRET:
            raise ConfigError(
                f"{sources['webhooks.secret']}: webhooks.secret: a webhook secret needs "
                f"{MIN_WEBHOOK_SECRET} characters or more (a guessable one lets anyone forge "
                "alerts); make one with `openssl rand -hex 32`"
            )
        if settings.webhooks.watch_every < 60:
            warnings.append(
                ConfigWarning(
                    "webhook_watch_often",
                    f"{sources['webhooks.watch_every']}: webhooks.watch_every: under 1m, each "
                    "look at Late's view of the webhook spends a request of the budget",
                )
            )
        if not settings.http.listen:
            warnings.append(
                ConfigWarning(
                    "webhooks_not_served",
                    f"{sources['webhooks.secret']}: webhooks.secret is set but http.listen is "
                    "not: the daemon has nowhere to receive Late's webhooks",
                )
            )
    for platform in settings.late.platforms:
        if platform not in KNOWN_PLATFORMS:
            close = _closest(platform, KNOWN_PLATFORMS)
            hint = f" (did you mean {close!r}?)" if close else ""
            warnings.append(
                ConfigWarning(
                    "platform_unknown",
                    f"{sources['late.platforms']}: late.platforms: {platform!r} is not a "
                    f"platform Late lists{hint}; no account matches it",
                )
            )
    if insecure_base_url(settings.late.base_url):
        warnings.append(
            ConfigWarning(
                "base_url_insecure",
                f"{sources['late.base_url']}: late.base_url: plain http:// to a host that is "
                "not this machine sends the API key unencrypted; use https://",
            )
        )
    loaded = LoadedConfig(
        settings=settings,
        path=path if data or named else None,
        api_key=api_key,
        api_key_source=api_key_source,
        sources=sources,
        warnings=tuple(warnings),
        state_path=(
            Path(settings.state.path).expanduser()
            if settings.state.path
            else default_state_path(env)
        ),
        webhook_secret=webhook_secret,
        state_password=_resolve_state_password(settings.state, full, sources),
    )
    if settings.workspaces:
        views, more = _workspace_views(loaded, full)
        loaded = replace(loaded, views=views, warnings=(*loaded.warnings, *more))
    return loaded


def _workspace_views(
    loaded: LoadedConfig, environ: Mapping[str, str]
) -> tuple[tuple[LoadedConfig, ...], list[ConfigWarning]]:
    """Each [[workspaces]] table as a LoadedConfig of its own: [late] and [notify] merged
    with the table's keys, its own API key."""
    settings, where = loaded.settings, str(loaded.path or "configuration")
    seen: dict[str, str] = {}
    problems: list[str] = []
    views = []
    for index, table in enumerate(settings.workspaces):
        folded = _variable_part(table.name)  # "a-b" and "a_b" would share a key variable
        if folded in seen:
            problems.append(
                f"{where}: workspaces[{index}].name: {table.name!r} is already the name of "
                f"another workspace ({seen[folded]!r}); names must differ (case, '-' and '_' "
                "aside: both would read the same environment variable)"
            )
            continue
        seen[folded] = table.name
        late = settings.late.model_copy(
            update={
                "base_url": table.base_url or settings.late.base_url,
                "profile_id": table.profile_id,
                "platforms": table.platforms,
                "max_requests_per_minute": (
                    table.max_requests_per_minute or settings.late.max_requests_per_minute
                ),
            }
        )
        notify = settings.notify
        if table.notify.urls or table.notify.config:
            notify = notify.model_copy(
                update={
                    "urls": table.notify.urls,
                    "config": table.notify.config,
                    "routes": table.notify.routes,
                }
            )
        elif table.notify.routes:
            notify = notify.model_copy(update={"routes": table.notify.routes})
        monitor = settings.monitor
        if table.interval is not None:
            monitor = monitor.model_copy(update={"interval": table.interval})
        try:
            key, source = _workspace_key(table, environ, where, index)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if key is None and loaded.api_key is not None:  # several profiles of one key
            key, source = loaded.api_key, loaded.api_key_source
        sources = dict(loaded.sources)
        sources["late.api_key"] = source
        sources["workspace"] = f"{where}: workspaces[{index}]"
        views.append(
            replace(
                loaded,
                settings=settings.model_copy(
                    update={"late": late, "notify": notify, "monitor": monitor, "workspaces": []}
                ),
                api_key=key,
                api_key_source=source,
                sources=sources,
                workspace=table.name,
                label=table.name,
            )
        )
    warnings = []
    names = {_variable_part(view.workspace) for view in views}
    for variable in environ:
        upper = variable.upper()
        if upper.startswith(f"{ENV_PREFIX}WORKSPACES__"):
            part, _, rest = upper.removeprefix(f"{ENV_PREFIX}WORKSPACES__").partition("__")
            if part not in names or rest != "API_KEY":
                warnings.append(
                    ConfigWarning(
                        "unknown_variable_ignored",
                        f"{variable}: not a late-monitor setting, ignored (a workspace's key "
                        f"is {ENV_PREFIX}WORKSPACES__<NAME>__API_KEY, NAME one of the "
                        "[[workspaces]] names)",
                    )
                )
    if problems:
        raise ConfigError(problems)
    return tuple(views), warnings


def _variable_part(name: str) -> str:
    """A workspace name as its environment variables spell it ("beta-co" -> "BETA_CO")."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _workspace_key(
    table: WorkspaceSettings, environ: Mapping[str, str], where: str, index: int
) -> tuple[SecretStr | None, str]:
    """A workspace's API key: its variable, then api_key, api_key_file, the credential."""
    variable = workspace_key_variable(table.name)
    label = f"workspaces[{table.name}]"
    for name, value in environ.items():
        if name.upper() == variable and (key := _clean_key(value, name)):
            return SecretStr(key), name
    if table.api_key is not None and table.api_key_file:
        raise ConfigError(f"{where}: {label}: api_key and api_key_file are both set; keep one")
    if table.api_key is not None and (
        key := _clean_key(table.api_key.get_secret_value(), f"{where}: {label}.api_key")
    ):
        return SecretStr(key), f"{where}: workspaces[{index}]"
    if table.api_key_file:
        key_file = Path(table.api_key_file).expanduser()
        return SecretStr(_read_secret_file(key_file, f"{label}.api_key_file")), str(key_file)
    if credentials := environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(credentials) / f"{CREDENTIAL_NAME}-{table.name}"
        if credential.is_file():
            return SecretStr(_read_secret_file(credential, "credential")), (
                f"systemd credential {credential.name}"
            )
    return None, "unset"


def _resolve_state_password(
    state: StateSettings, environ: Mapping[str, str], sources: Mapping[str, str]
) -> SecretStr | None:
    """The PostgreSQL password: state.password_file, else the systemd credential (else
    libpq's own ways: ~/.pgpass, PGPASSWORD, peer or certificate authentication)."""
    if not state.url:
        return None
    if state.password_file:
        what = f"{sources.get('state.password_file', 'configuration')}: state.password_file"
        path = Path(state.password_file).expanduser()
        return SecretStr(_read_secret_file(path, what, "the database password"))
    if credentials := environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(credentials) / STATE_CREDENTIAL
        if credential.is_file():
            return SecretStr(_read_secret_file(credential, "credential", "the database password"))
    return None


def _resolve_webhook_secret(
    webhooks: WebhooksSettings, environ: Mapping[str, str], source: str, file_source: str
) -> tuple[SecretStr | None, str]:
    """webhooks.secret (or LATE_MONITOR_WEBHOOKS__SECRET), webhooks.secret_file, or the
    systemd credential; None leaves the webhook endpoint off."""
    given = webhooks.secret is not None and bool(webhooks.secret.get_secret_value().strip())
    if given and webhooks.secret_file:
        raise ConfigError(
            f"{source}, {file_source}: webhooks.secret and webhooks.secret_file are both set; "
            "keep one"
        )
    if webhooks.secret is not None and given:
        return SecretStr(_clean_secret(webhooks.secret.get_secret_value(), source)), source
    if webhooks.secret_file:
        path = Path(webhooks.secret_file).expanduser()
        what = f"{file_source}: webhooks.secret_file"
        secret = _read_secret_file(path, what, "the webhook secret")
        return SecretStr(secret), str(path)
    if credentials := environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(credentials) / WEBHOOK_CREDENTIAL
        if credential.is_file():
            secret = _read_secret_file(credential, "credential", "the webhook secret")
            return SecretStr(secret), f"systemd credential {WEBHOOK_CREDENTIAL}"
    return None, "unset"


def _clean_secret(value: str, source: str) -> str:
    return _clean_key(value, f"{source}: webhooks.secret", "the webhook secret")


def default_state_path(environ: Mapping[str, str]) -> Path:
    """`$STATE_DIRECTORY/state.db` under systemd, else the XDG state directory."""
    if state_dir := environ.get("STATE_DIRECTORY"):
        return Path(state_dir.split(":")[0]) / "state.db"
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "late-monitor" / "state.db"
