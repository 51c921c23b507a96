"""Scenarios: accounts and timed changes for the simulator, from TOML or built in (the demo).

```toml
accounts = 20                       # generated healthy accounts acc_00000... (optional)
rate_limit = 600                    # requests per minute (optional)
latency = "0.1s"                    # added to every answer (optional)
[[account]]                         # explicit accounts
id = "acc_tw"
platform = "twitter"                # any string: the simulator does not check platforms
username = "@acme"
token_expires_in = "60d"
revoked = ["tweet.write"]           # scopes not granted in the detail body
analytics_required = true           # mark analytics scopes required (the vendor: false)

[[change]]
at = "5s"                           # after the start; "0.05s" or 0.05 works too
account = "acc_tw"
label = "the token expires"         # printed by the demo (optional)
status = "error"                    # account fields: status needs_reconnect can_post
needs_reconnect = true              #   can_fetch_analytics token_valid issues username
can_post = false                    #   display_name platform profile_id recommendations
issues = ["Token expired"]          #   analytics_required revoked token_expires_in

[[change]]                          # raw JSON of one account, beside the others' normal JSON
at = "10s"
account = "acc_tw"
raw = { status = "suspended", messagingRestriction = { restricted = true } }
null = ["username"]                 # served as null (TOML has no null)
unset = ["canPost"]                 # removed from the entry
raw_detail = { integrationLane = "direct" }   # the same three for the detail body:
null_detail = ["tokenStatus"]       #   raw_detail, null_detail, unset_detail
unset_detail = ["permissions"]
replace = false                     # true: serve only these keys (and drop earlier raw keys)
# Raw keys accumulate over changes until `clear_raw = true` (this account; without
# `account`: all). Quote date-times ("2025-06-15T00:00:00Z") to serve them verbatim.

[[change]]
at = "20s"
fault = "status"                    # status hang drop truncate empty shape body redirect
status_code = 500                   #   claim huge echo_key (see faults.Fault); 0: the kind's
count = 3                           # keys: body content_type retry_after delay path location
                                    #   size chunked body_file

[[change]]                          # a whole body, verbatim, until cleared
at = "30s"
body_file = "bodies/accounts_null.json"   # relative to this file; read when it is loaded
content_type = "application/json"   # as sent (default application/json)
status_code = 200                   # default 200
path = "/accounts/health"           # requests whose path contains this (default the list)
[[change]]
at = "40s"
clear_body = true                   # stop serving whole bodies
```
With `fault = "body"` a `body_file` is served `count` times instead of until cleared.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any

from late_monitor.config import parse_duration
from late_monitor.errors import ConfigError
from late_monitor.simulator.app import (
    DEFAULT_KEY,
    MISSING,
    Fault,
    SimAccount,
    Simulator,
    make_accounts,
)

_ACCOUNT_FIELDS = {
    "status",
    "needs_reconnect",
    "can_post",
    "can_fetch_analytics",
    "token_valid",
    "issues",
    "username",
    "display_name",
    "platform",
    "profile_id",
    "recommendations",
    "analytics_required",
}
_FAULT_KEYS = {
    "fault",
    "status_code",
    "body",
    "content_type",
    "retry_after",
    "count",
    "delay",
    "path",
    "location",
    "size",
    "chunked",
    "body_file",
}
_RAW_KEYS = {"raw", "null", "unset", "raw_detail", "null_detail", "unset_detail", "replace"}
_CHANGE_KEYS = (
    {"at", "account", "remove", "label", "token_expires_in", "revoked", "clear_raw", "clear_body"}
    | _ACCOUNT_FIELDS
    | _FAULT_KEYS
    | _RAW_KEYS
)


@dataclass(frozen=True)
class Change:
    at: float
    account: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    fault: Fault | None = None
    remove: bool = False
    label: str = ""
    raw: dict[str, Any] | None = None  # Simulator.set_raw(account, raw, ...)
    raw_detail: dict[str, Any] | None = None  # ... detail=raw_detail
    replace: bool = False
    clear_raw: bool = False  # before raw: this account's, or without account every account's
    serve: Fault | None = None  # a whole body served until cleared (Simulator.serve_body)
    clear_body: bool = False  # before serve


@dataclass
class Scenario:
    accounts: list[SimAccount]
    changes: list[Change]
    rate_limit: int = 600
    latency: float = 0.0

    def simulator(self, *, api_key: str = DEFAULT_KEY) -> Simulator:
        return Simulator(
            self.accounts, api_key=api_key, rate_limit=self.rate_limit, latency=self.latency
        )

    async def play(
        self,
        sim: Simulator,
        *,
        on_change: Callable[[Change], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Apply each change at its time after now (`clock` and `sleep` can be a test's)."""
        start = clock()
        for change in sorted(self.changes, key=lambda c: c.at):
            delay = start + change.at - clock()
            if delay > 0:
                await sleep(delay)
            apply_change(sim, change)
            if on_change is not None:
                on_change(change)


def apply_change(sim: Simulator, change: Change) -> None:
    if change.clear_body:
        sim.clear_body()
    if change.clear_raw:
        sim.clear_raw(change.account or None)
    if change.fault is not None:
        sim.inject(change.fault)
    if change.serve is not None:
        sim.served[change.serve.path] = change.serve
    if change.account:
        if change.remove:
            sim.remove(change.account)
            return
        if change.raw is not None or change.raw_detail is not None:
            sim.set_raw(
                change.account, change.raw, detail=change.raw_detail, replace=change.replace
            )
        fields = dict(change.fields)
        if "token_expires_in" in fields:
            seconds = fields.pop("token_expires_in")
            fields["token_expires_at"] = datetime.now(UTC) + timedelta(seconds=seconds)
        if "revoked" in fields:
            fields["revoked"] = set(fields["revoked"])
        sim.set(change.account, **fields)


def _account(raw: dict[str, Any], where: str) -> SimAccount:
    unknown = set(raw) - _ACCOUNT_FIELDS - {"id", "token_expires_in", "revoked"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if "id" not in raw or "platform" not in raw:
        raise ConfigError(f"{where}: an account needs 'id' and 'platform'")
    expires = raw.get("token_expires_in")
    return SimAccount(
        account_id=str(raw["id"]),
        platform=str(raw["platform"]),
        username=str(raw.get("username", f"@{raw['id']}")),
        status=str(raw.get("status", "healthy")),
        needs_reconnect=bool(raw.get("needs_reconnect", False)),
        can_post=bool(raw.get("can_post", True)),
        token_valid=bool(raw.get("token_valid", True)),
        issues=list(raw.get("issues", [])),
        revoked=set(raw.get("revoked", [])),
        analytics_required=bool(raw.get("analytics_required", False)),
        profile_id=str(raw.get("profile_id", "prof_1")),
        token_expires_at=(
            datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=parse_duration(expires))
            if expires is not None
            else None
        ),
    )


def _change(raw: dict[str, Any], where: str, directory: Path) -> Change:
    unknown = set(raw) - _CHANGE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    try:
        at = parse_duration(raw.get("at", 0))
    except ValueError as exc:
        raise ConfigError(f"{where}.at: {exc}") from None
    data = _body_file(raw["body_file"], where, directory) if "body_file" in raw else None
    fault = serve = None
    try:
        if "fault" in raw:
            headers = {}
            if "retry_after" in raw:
                headers["Retry-After"] = str(int(parse_duration(raw["retry_after"])))
            fault = Fault(
                kind=str(raw["fault"]),
                status=int(raw.get("status_code", 0)),
                body=str(raw.get("body", "")),
                content_type=str(raw.get("content_type", "application/json")),
                headers=headers,
                count=int(raw.get("count", 1)),
                delay=parse_duration(raw.get("delay", 0)),
                path=str(raw.get("path", "")),
                data=data or b"",
                location=str(raw.get("location", "")),
                size=int(raw.get("size", 0)),
                chunked=bool(raw.get("chunked", True)),
            )
        elif data is not None:
            serve = Fault(
                kind="body",
                status=int(raw.get("status_code", 200)),
                data=data,
                content_type=str(raw.get("content_type", "application/json")),
                path=str(raw.get("path", "/accounts/health")),
            )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    fields = {key: raw[key] for key in raw if key in _ACCOUNT_FIELDS | {"revoked"}}
    if "token_expires_in" in raw:
        fields["token_expires_in"] = parse_duration(raw["token_expires_in"])
    entry = _raw(raw, "", where)
    detail = _raw(raw, "_detail", where)
    if (entry is not None or detail is not None) and not raw.get("account"):
        raise ConfigError(f"{where}: raw keys need an 'account'")
    return Change(
        at=at,
        account=str(raw.get("account", "")),
        fields=fields,
        fault=fault,
        remove=bool(raw.get("remove", False)),
        label=str(raw.get("label", "")),
        raw=entry,
        raw_detail=detail,
        replace=bool(raw.get("replace", False)),
        clear_raw=bool(raw.get("clear_raw", False)),
        serve=serve,
        clear_body=bool(raw.get("clear_body", False)),
    )


def _raw(raw: dict[str, Any], suffix: str, where: str) -> dict[str, Any] | None:
    """`raw`, `null` and `unset` (or their `_detail` forms) as one set_raw mapping."""
    keys = [f"raw{suffix}", f"null{suffix}", f"unset{suffix}"]
    if not any(key in raw for key in keys):
        return None
    values = raw.get(keys[0], {})
    if not isinstance(values, dict):
        raise ConfigError(f"{where}.{keys[0]}: a table of JSON keys is expected")
    out = {key: _json_value(value) for key, value in values.items()}
    for key, marker in ((keys[1], None), (keys[2], MISSING)):
        names = raw.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.{key}: a list of key names is expected")
        out.update(dict.fromkeys(names, marker))
    return out


def _json_value(value: Any) -> Any:
    """TOML values as JSON serves them: date-times become ISO strings."""
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    return value


def _body_file(name: object, where: str, directory: Path) -> bytes:
    path = directory / str(name)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}.body_file: cannot read {path} ({exc.strerror})") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; a problem is a ConfigError naming the file and the entry."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    accounts = make_accounts(int(raw.get("accounts", 0)))
    accounts += [_account(a, f"{path}: account[{i}]") for i, a in enumerate(raw.get("account", []))]
    changes = [
        _change(c, f"{path}: change[{i}]", path.parent) for i, c in enumerate(raw.get("change", []))
    ]
    known = {a.account_id for a in accounts}
    for index, change in enumerate(changes):
        if change.account and change.account not in known:
            raise ConfigError(f"{path}: change[{index}]: unknown account {change.account!r}")
    return Scenario(
        accounts=accounts,
        changes=changes,
        rate_limit=int(raw.get("rate_limit", 600)),
        latency=parse_duration(raw.get("latency", 0)),
    )
