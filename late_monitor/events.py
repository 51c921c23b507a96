"""What a person should hear about: the kinds of event, their Apprise types, the events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from late_monitor.state import AccountState


class NotifyType(StrEnum):
    """Apprise's notify types, ordered by how loud they are."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"

    @property
    def weight(self) -> int:
        return _TYPE_WEIGHT[self]


_TYPE_WEIGHT = {
    NotifyType.SUCCESS: 0,
    NotifyType.INFO: 1,
    NotifyType.WARNING: 2,
    NotifyType.FAILURE: 3,
}


class Kind(StrEnum):
    DEGRADED = "degraded"
    RECONNECT_NEEDED = "reconnect_needed"
    POSTING_BLOCKED = "posting_blocked"
    PERMISSION_LOST = "permission_lost"
    TOKEN_EXPIRING = "token_expiring"  # noqa: S105 (an event name, not a secret)
    IMPROVED = "improved"
    RECOVERED = "recovered"
    REMOVED = "removed"
    REMINDER = "reminder"
    STATUS_UNKNOWN = "status_unknown"
    ANALYTICS_LOST = "analytics_lost"
    DETAILS = "details"
    UNREADABLE = "unreadable"
    SCOPE_CONFLICT = "scope_conflict"
    API_UNREACHABLE = "api_unreachable"
    API_UNREADABLE = "api_unreadable"
    API_RECOVERED = "api_recovered"
    AUTH_FAILED = "auth_failed"
    DISCONNECTED = "disconnected"  # a person disconnected the account in Late (webhook)
    CORRECTED = "corrected"  # a poll contradicts what a webhook said
    WEBHOOK_FAILING = "webhook_failing"
    WEBHOOK_DISABLED = "webhook_disabled"
    WEBHOOK_RESTORED = "webhook_restored"
    BLIND_SPOT = "blind_spot"  # profiles the workspace's key cannot see, or over the limit
    KEY_EXPIRING = "key_expiring"  # the monitor's own API key
    KEY_WRITABLE = "key_writable"  # the monitor's key could be read-only


@dataclass(frozen=True, slots=True)
class Event:
    """Something a person should hear about. `account` is the state after the change."""

    kind: Kind
    notify_type: NotifyType
    account: AccountState | None = None
    old_status: str | None = None
    new_status: str | None = None
    note: str = ""
    first_seen: bool = False  # the account was not known before: there is no "from"

    @property
    def account_id(self) -> str | None:
        return self.account.account_id if self.account else None


def worst_type(events: Iterable[Event]) -> NotifyType:
    return max((e.notify_type for e in events), key=lambda t: t.weight, default=NotifyType.INFO)
