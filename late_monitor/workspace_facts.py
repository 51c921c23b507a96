"""What a workspace's own Late account says about the monitor's reach (pure).

Three facts are read hourly beside the polls (workspace_watch.py does the I/O):
- `/v1/profiles?includeOverLimit=true`: profile names, for messages ("Acme Coffee / instagram
  @acme") and `[notify.routes] profile."..."`, and the profiles over the plan's limit, whose
  accounts Late leaves out of its account lists;
- `/v1/api-keys`: the key in use (found by its preview), its `expiresAt`, `scope` (a key
  limited to some profiles cannot see the others) and `permission`;
- `/v1/users`: `currentUserId`, since Late's rate limit is per user.

`review` turns them into events, each told once: a blind spot (per distinct set), the key's
expiry (once per threshold per expiry date, as for an account's token), and a one-time note
that a key which can write could be a read-only one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from late_monitor.events import Event, Kind, NotifyType


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    name: str
    over_limit: bool = False


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One of the user's API keys, as `/v1/api-keys` lists it (never the key itself)."""

    name: str
    preview: str
    expires_at: datetime | None
    scope: str  # "full" or "profiles"
    profiles: tuple[str, ...]  # names (or ids) of the profiles a "profiles" key may see
    permission: str  # "read-write" or "read"

    def matches(self, key: str) -> bool:
        """Whether `key` is this one: Late shows its first and last characters."""
        head, sep, tail = self.preview.partition("...")
        if not sep or len(head) < 4 or len(tail) < 4:
            return False
        return key.startswith(head) and key.endswith(tail) and len(key) > len(head + tail)


def parse_profiles(data: Any) -> list[Profile]:
    """The `profiles` of `/v1/profiles`; entries without an id are skipped."""
    raw = data.get("profiles") if isinstance(data, dict) else None
    profiles = []
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, dict) and isinstance(item.get("_id"), str) and item["_id"]:
            name = item.get("name")
            profiles.append(
                Profile(
                    id=item["_id"],
                    name=name.strip() if isinstance(name, str) and name.strip() else item["_id"],
                    over_limit=item.get("isOverLimit") is True,
                )
            )
    return profiles


def parse_keys(data: Any) -> list[KeyInfo]:
    """The `apiKeys` of `/v1/api-keys`; unreadable fields read as their defaults."""
    raw = data.get("apiKeys") if isinstance(data, dict) else None
    keys = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("keyPreview"), str):
            continue
        names = []
        for profile in item.get("profileIds") or ():
            if isinstance(profile, dict):
                names.append(str(profile.get("name") or profile.get("_id") or "?"))
            elif isinstance(profile, str):
                names.append(profile)
        keys.append(
            KeyInfo(
                name=str(item.get("name") or ""),
                preview=item["keyPreview"],
                expires_at=_when(item.get("expiresAt")),
                scope="profiles" if item.get("scope") == "profiles" else "full",
                profiles=tuple(names),
                permission="read" if item.get("permission") == "read" else "read-write",
            )
        )
    return keys


def current_user(data: Any) -> str | None:
    """`currentUserId` of `/v1/users`."""
    value = data.get("currentUserId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def blind_spots(key: KeyInfo | None, profiles: Sequence[Profile]) -> list[str]:
    """What this workspace's monitor cannot see, one sentence each."""
    notes = []
    if key is not None and key.scope == "profiles":
        shown = ", ".join(key.profiles) or "some profiles"
        notes.append(
            f"the API key is limited to {len(key.profiles) or 'some'} "
            f"profile{'s' if len(key.profiles) != 1 else ''} ({shown}): accounts in the "
            "workspace's other profiles are not watched"
        )
    over = [p.name for p in profiles if p.over_limit]
    if over:
        notes.append(
            f"{len(over)} profile{'s are' if len(over) > 1 else ' is'} over the plan's limit "
            f"({', '.join(over)}): Late leaves their accounts out of its lists, so they are not "
            "watched"
        )
    return notes


def review(
    told: Mapping[str, Any],
    *,
    key: KeyInfo | None,
    profiles: Sequence[Profile] | None,
    now: datetime,
    thresholds: Sequence[float],
) -> tuple[dict[str, Any], list[Event]]:
    """The events this look at the workspace brings, and what to remember as told.

    `told` holds: `blind` (a fingerprint of the blind spots last told), `spots` (them, by
    source: `key` and `profiles`), `writable` (the read-only note was given), `expires` (the
    key's expiry date warned about) and `warned` (the thresholds crossed for it). `profiles`
    or `key` None: that listing failed (or the key is not in it), its blind spots are left
    as they were."""
    record = dict(told)
    events: list[Event] = []
    # a listing that failed (None) keeps its part of the blind spots as last seen: a flapping
    # /v1/api-keys or /v1/profiles must not tell the other's blind spots again
    known = record.get("spots") or {}
    key_spots = blind_spots(key, ()) if key is not None else list(known.get("key", []))
    profile_spots = (
        blind_spots(None, profiles) if profiles is not None else list(known.get("profiles", []))
    )
    spots = [*key_spots, *profile_spots]
    if profiles is not None or key is not None:
        record["spots"] = {"key": key_spots, "profiles": profile_spots}
        fingerprint = hashlib.sha256("\n".join(spots).encode()).hexdigest()[:16] if spots else ""
        if fingerprint != record.get("blind", ""):
            if spots:
                note = "; ".join(spots)
                events.append(
                    Event(Kind.BLIND_SPOT, NotifyType.WARNING, note=note[0].upper() + note[1:])
                )
            record["blind"] = fingerprint
    if key is None:
        return record, events
    if key.permission != "read" and not record.get("writable"):
        events.append(
            Event(
                Kind.KEY_WRITABLE,
                NotifyType.INFO,
                note=f"the API key{_named(key)} can write (read-write); late-monitor only "
                "reads, so a key with permission 'read' would do and risk less if it leaked",
            )
        )
        record["writable"] = True
    expires = key.expires_at.isoformat() if key.expires_at else ""
    if expires != record.get("expires", ""):
        record["expires"], record["warned"] = expires, []
    if key.expires_at is not None and thresholds:
        left = (key.expires_at - now).total_seconds()
        warned = set(record.get("warned", []))
        crossed = {t for t in thresholds if left <= t}
        if crossed - warned:
            expired = left <= 0
            events.append(
                Event(
                    Kind.KEY_EXPIRING,
                    NotifyType.FAILURE if expired else NotifyType.WARNING,
                    note=(
                        f"the API key{_named(key)} "
                        + (
                            f"expired at {key.expires_at:%Y-%m-%d %H:%M} UTC: polls will fail"
                            if expired
                            else f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC "
                            f"(in {_span(left)}): make a new one and set it before then"
                        )
                    ),
                )
            )
            record["warned"] = sorted(warned | crossed)
    return record, events


def _named(key: KeyInfo) -> str:
    return f" {key.name!r}" if key.name else ""


def _span(seconds: float) -> str:
    delta = timedelta(seconds=max(0.0, seconds))
    if delta.days >= 2:
        return f"{delta.days} days"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} h" if hours else f"{int(delta.total_seconds() // 60)} min"
