"""The accounts the simulator serves: their fields, their JSON, and raw overrides of that JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Final

PLATFORMS = (
    "twitter",
    "instagram",
    "linkedin",
    "facebook",
    "tiktok",
    "youtube",
    "threads",
    "pinterest",
    "reddit",
    "bluesky",
    "googlebusiness",
    "telegram",
    "snapchat",
)

_SCOPES = {
    "twitter": (["tweet.read", "tweet.write", "users.read"], ["tweet.analytics"]),
    "instagram": (["instagram_basic", "instagram_content_publish"], ["instagram_manage_insights"]),
    "linkedin": (["w_member_social", "r_liteprofile"], ["r_organization_social"]),
    "facebook": (["pages_manage_posts", "pages_read_engagement"], ["read_insights"]),
}


# GET /v1/connect/{platform} takes these (the OpenAPI document's enum)
CONNECT_PLATFORMS = frozenset(
    [
        "facebook",
        "instagram",
        "linkedin",
        "twitter",
        "tiktok",
        "youtube",
        "threads",
        "reddit",
        "pinterest",
        "bluesky",
        "googlebusiness",
        "telegram",
        "snapchat",
    ]
)


class _Missing(Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""In a raw override, the key is removed from the served JSON."""


@dataclass
class Overlay:
    """Raw JSON keys served over an account's normal body: a value replaces the key's, MISSING
    removes it; `exact` serves only these keys."""

    values: dict[str, Any] = field(default_factory=dict)
    exact: bool = False

    def over(self, base: dict[str, Any]) -> dict[str, Any]:
        served = {} if self.exact else dict(base)
        served.update(self.values)
        return {key: value for key, value in served.items() if value is not MISSING}


@dataclass
class SimAccount:
    """One connected account as the simulator serves it."""

    account_id: str
    platform: str
    username: str
    status: str = "healthy"
    display_name: str = ""
    profile_id: str = "prof_1"
    can_post: bool = True
    can_fetch_analytics: bool = True
    token_valid: bool = True
    token_expires_at: datetime | None = None
    needs_reconnect: bool = False
    issues: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    recommendations: list[str] = field(default_factory=list)
    # The vendor's example marks analytics scopes required: false; True marks them required, so
    # that a revoked analytics scope is in missingRequired (the simulator's old behaviour).
    analytics_required: bool = False
    raw: Overlay = field(default_factory=Overlay)  # over summary()
    raw_detail: Overlay = field(default_factory=Overlay)  # over detail()

    def scopes(self) -> tuple[list[str], list[str]]:
        return _SCOPES.get(
            self.platform, ([f"{self.platform}.publish"], [f"{self.platform}.stats"])
        )

    def summary(self) -> dict[str, Any]:
        expires = (
            {} if self.token_expires_at is None else {"tokenExpiresAt": _iso(self.token_expires_at)}
        )
        item: dict[str, Any] = {
            "accountId": self.account_id,
            "platform": self.platform,
            "username": self.username,
            "displayName": self.display_name or self.username.lstrip("@").title(),
            "profileId": self.profile_id,
            "status": self.status,
            "canPost": self.can_post,
            "canFetchAnalytics": self.can_fetch_analytics,
            "tokenValid": self.token_valid,
            **expires,
            "needsReconnect": self.needs_reconnect,
            "issues": list(self.issues),
        }
        return self.raw.over(item)

    def detail(self, now: datetime) -> dict[str, Any]:
        posting, analytics = self.scopes()

        def scope(name: str, required: bool) -> dict[str, Any]:
            return {"scope": name, "granted": name not in self.revoked, "required": required}

        missing = [name for name in posting if name in self.revoked]
        lost_analytics = [name for name in analytics if name in self.revoked]
        required = missing + (lost_analytics if self.analytics_required else [])
        token: dict[str, Any] = {"valid": self.token_valid, "needsRefresh": False}
        if self.token_expires_at is not None:
            left = self.token_expires_at - now
            token["expiresAt"] = _iso(self.token_expires_at)
            token["expiresIn"] = f"{max(left.days, 0)} days"
            token["needsRefresh"] = left <= timedelta(hours=24)
        body = {
            "accountId": self.account_id,
            "platform": self.platform,
            "username": self.username,
            "displayName": self.display_name or self.username.lstrip("@").title(),
            "status": self.status,
            "tokenStatus": token,
            "permissions": {
                "posting": [scope(name, True) for name in posting],
                "analytics": [scope(name, self.analytics_required) for name in analytics],
                "optional": [],
                "canPost": self.can_post and not missing,
                "canFetchAnalytics": self.can_fetch_analytics and not lost_analytics,
                "missingRequired": required,
            },
            "issues": list(self.issues),
            "recommendations": list(self.recommendations)
            or (["Reconnect the account in Late"] if self.needs_reconnect or required else []),
        }
        return self.raw_detail.over(body)


@dataclass
class SimPost:
    """A scheduled post: its time and its platform targets (platform, account id)."""

    post_id: str
    title: str
    scheduled_for: datetime
    targets: list[tuple[str, str]]

    def json(self, accounts: dict[str, SimAccount]) -> dict[str, Any]:
        def target(platform: str, account_id: str) -> dict[str, Any]:
            account = accounts.get(account_id)
            ref: Any = account_id
            if account is not None:  # the listing populates the account, as Late's example
                ref = {
                    "_id": account_id,
                    "platform": account.platform,
                    "username": account.username,
                    "displayName": account.display_name or account.username,
                    "isActive": True,
                }
            return {"platform": platform, "accountId": ref, "status": "pending"}

        return {
            "_id": self.post_id,
            "title": self.title,
            "content": self.title,
            "status": "scheduled",
            "scheduledFor": _iso(self.scheduled_for),
            "timezone": "UTC",
            "platforms": [target(p, a) for p, a in self.targets],
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_accounts(count: int, *, now: datetime | None = None) -> list[SimAccount]:
    """`count` healthy accounts over every platform, tokens valid for 60-120 days."""
    now = now or datetime.now(UTC)
    accounts = []
    for index in range(count):
        platform = PLATFORMS[index % len(PLATFORMS)]
        accounts.append(
            SimAccount(
                account_id=f"acc_{index:05d}",
                platform=platform,
                username=f"@{platform}_{index:05d}",
                profile_id=f"prof_{index % 3 + 1}",
                token_expires_at=(now + timedelta(days=60 + index % 60)).replace(microsecond=0),
            )
        )
    return accounts
