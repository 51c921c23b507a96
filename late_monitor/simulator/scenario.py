"""Scenarios: accounts and timed changes for the simulator, from TOML or built in (the demo).

```toml
accounts = 20                       # generated healthy accounts (optional)
[[account]]                         # explicit accounts
id = "acc_tw"
platform = "twitter"
username = "@acme"
token_expires_in = "60d"
[[change]]
at = "5s"                           # after the start
account = "acc_tw"
status = "error"
needs_reconnect = true
can_post = false
issues = ["Token expired"]
[[change]]
at = "20s"
fault = "status"                    # status | hang | truncate | drop | empty | shape
status_code = 500
count = 3
```
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from late_monitor.config import parse_duration
from late_monitor.errors import ConfigError
from late_monitor.simulator.app import DEFAULT_KEY, Fault, SimAccount, Simulator, make_accounts

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
}


@dataclass(frozen=True)
class Change:
    at: float
    account: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    fault: Fault | None = None
    remove: bool = False
    label: str = ""


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

    @property
    def duration(self) -> float:
        return max((c.at for c in self.changes), default=0.0)

    async def play(
        self, sim: Simulator, *, on_change: Callable[[Change], None] | None = None
    ) -> None:
        """Apply each change at its time after now."""
        start = time.monotonic()
        for change in sorted(self.changes, key=lambda c: c.at):
            delay = start + change.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            apply_change(sim, change)
            if on_change is not None:
                on_change(change)


def apply_change(sim: Simulator, change: Change) -> None:
    if change.fault is not None:
        sim.inject(change.fault)
    if change.account:
        if change.remove:
            sim.accounts.pop(change.account, None)
            return
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
        profile_id=str(raw.get("profile_id", "prof_1")),
        token_expires_at=(
            datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=parse_duration(expires))
            if expires is not None
            else None
        ),
    )


def _change(raw: dict[str, Any], where: str) -> Change:
    try:
        at = parse_duration(raw.get("at", 0))
    except ValueError as exc:
        raise ConfigError(f"{where}.at: {exc}") from None
    fault = None
    if "fault" in raw:
        headers = {}
        if "retry_after" in raw:
            headers["Retry-After"] = str(int(parse_duration(raw["retry_after"])))
        fault = Fault(
            kind=str(raw["fault"]),
            status=int(raw.get("status_code", 500)),
            body=str(raw.get("body", '{"error": "Internal server error"}')),
            content_type=str(raw.get("content_type", "application/json")),
            headers=headers,
            count=int(raw.get("count", 1)),
            delay=parse_duration(raw.get("delay", 0)),
            path=str(raw.get("path", "")),
        )
    fields = {key: raw[key] for key in raw if key in _ACCOUNT_FIELDS | {"revoked"}}
    if "token_expires_in" in raw:
        fields["token_expires_in"] = parse_duration(raw["token_expires_in"])
    return Change(
        at=at,
        account=str(raw.get("account", "")),
        fields=fields,
        fault=fault,
        remove=bool(raw.get("remove", False)),
        label=str(raw.get("label", "")),
    )


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
    changes = [_change(c, f"{path}: change[{i}]") for i, c in enumerate(raw.get("change", []))]
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
