"""What a state file watches (the Late API, a profile, some platforms), recorded in the file.

Two configurations sharing one state file would each take the other's accounts for removed
and re-announce its own every run. So a file remembers the scope it was written for: the
same scope, or a narrower one (deliberately fewer platforms or one profile), may use it;
anything else is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from late_monitor.errors import ScopeConflict
from late_monitor.state import AccountState

_SAME_API = {"getlate.dev": "zernio.com", "www.getlate.dev": "zernio.com"}  # one vendor, renamed


@dataclass(frozen=True, slots=True)
class Scope:
    """The accounts one configuration watches: empty profile or platforms mean all."""

    api: str
    profile_id: str = ""
    platforms: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, base_url: str, profile_id: str, platforms: tuple[str, ...]) -> Scope:
        return cls(
            api=canonical_api(base_url), profile_id=profile_id, platforms=frozenset(platforms)
        )

    @classmethod
    def load(cls, data: Any) -> Scope | None:
        if not isinstance(data, dict):
            return None
        return cls(
            api=str(data.get("api", "")),
            profile_id=str(data.get("profile_id", "")),
            platforms=frozenset(data.get("platforms", ())),
        )

    def dump(self) -> dict[str, Any]:
        return {"api": self.api, "profile_id": self.profile_id, "platforms": sorted(self.platforms)}

    def covers(self, state: AccountState) -> bool:
        return (not self.profile_id or state.profile_id == self.profile_id) and (
            not self.platforms or state.platform in self.platforms
        )

    def within(self, wider: Scope) -> bool:
        """Every account this scope watches, `wider` watches too (same API)."""
        return bool(
            self.api == wider.api
            and (not wider.profile_id or self.profile_id == wider.profile_id)
            and (not wider.platforms or (self.platforms and self.platforms <= wider.platforms))
        )

    def describe(self) -> str:
        platforms = ", ".join(sorted(self.platforms)) or "all platforms"
        return f"{self.api}, profile {self.profile_id or '(all)'}, {platforms}"


def canonical_api(base_url: str) -> str:
    """The API a base URL names, so that getlate.dev/api/v1 and zernio.com/api are one."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    host = _SAME_API.get(host, host)
    port = f":{parts.port}" if parts.port else ""
    path = parts.path.rstrip("/").removesuffix("/v1")
    return f"{host}{port}{path}"


def check_scope(recorded: Scope | None, current: Scope, *, path: str, workspace: str = "") -> bool:
    """Whether `current` may use a state file written for `recorded`; True when it narrows
    it (the caller then forgets the accounts left out). Raises StateError otherwise.
    `workspace`: a [[workspaces]] name, whose state is its own part of the one file."""
    if recorded is None or recorded == current:
        return False
    if current.within(recorded):
        return True
    if workspace:
        raise ScopeConflict(
            f"workspace {workspace}: state file {path} was written for it with "
            f"{recorded.describe()}; it now watches {current.describe()}. If it is another "
            "Late account, give the workspace another name (its state starts afresh): two "
            "scopes under one name would report each other's accounts as removed"
        )
    raise ScopeConflict(
        f"state file {path} was written for {recorded.describe()}; this configuration "
        f"watches {current.describe()}. Give it its own state.path (or delete the file to "
        "start over): two scopes on one file would report each other's accounts as removed"
    )
