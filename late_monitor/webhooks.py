"""Late's webhook deliveries: their signature and their documented shapes (no I/O).

Late signs the raw body with HMAC-SHA256 and our secret, lowercase hex, in `X-Zernio-Signature`
(older deliveries: `X-Late-Signature`; some proxies add `sha256=`). There is no timestamp in
what is signed, so a captured delivery could be replayed: the payload `id` is the guard (see
`intake`), kept for Late's 7-day retry and log window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADERS = ("X-Zernio-Signature", "X-Late-Signature")
MAX_BODY = 1 << 20  # 1 MiB: Late's payloads are a few KB; more is not Late
DEDUPE_WINDOW = 7 * 86400.0  # Late retries and keeps its logs 7 days

# The events late-monitor subscribes to (webhooks setup) and acts on
SUBSCRIBED = ("account.disconnected", "account.connected", "post.failed", "post.partial")

# A platform's error text that blames the account's token or permissions, not the post
_TOKEN_CAUSE = re.compile(
    r"token|expired|revoked|re-?auth|reconnect|permission|scope|unauthori[sz]ed|forbidden"
    r"|access (?:was )?denied|not authori[sz]ed|oauth|session (?:has )?(?:expired|invalid)"
    r"|\b40[13]\b|\bcode 190\b",
    re.IGNORECASE,
)


class HookError(ValueError):
    """A delivery that is not one of Late's documented payloads (answered 400)."""


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_of(headers: Mapping[str, str]) -> str | None:
    """The signature a delivery carries, without a `sha256=` prefix; None if it has none."""
    for name in SIGNATURE_HEADERS:
        value = headers.get(name)
        if value is not None:
            value = value.strip()
            return value[7:] if value.lower().startswith("sha256=") else value
    return None


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Constant time, whatever the signature's length or case."""
    expected = sign(secret, body).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode("ascii", "replace"))


@dataclass(frozen=True, slots=True)
class HookAccount:
    account_id: str
    platform: str = ""
    username: str = ""
    display_name: str = ""
    profile_id: str | None = None
    intentional: bool = False  # account.disconnected: a person disconnected it in Late
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PostFailure:
    """One platform of a failed post: its account when Late names it, and the error."""

    platform: str
    error: str
    account_id: str = ""

    @property
    def blames_account(self) -> bool:
        return bool(_TOKEN_CAUSE.search(self.error))


@dataclass(frozen=True, slots=True)
class Hook:
    """One delivery, as far as late-monitor reads it."""

    id: str
    event: str
    account: HookAccount | None = None
    failures: tuple[PostFailure, ...] = ()  # post.failed / post.partial
    post_id: str = ""
    sent: float | None = None  # the payload's own timestamp, epoch seconds

    def stale(self, now: float) -> bool:
        """Sent before Late's retry window (a replay of a delivery whose id we have
        forgotten) or more than a day ahead of our clock."""
        return self.sent is not None and not now - DEDUPE_WINDOW < self.sent < now + 86400


def parse(body: bytes) -> Hook:
    """The delivery's id, event and what late-monitor needs of it; HookError when the body
    is not a JSON object with a string `id` and `event`, or an account/post event lacks the
    object its schema requires. Unknown events are valid (acknowledged, not acted on)."""
    try:
        payload = json.loads(body)
        # a lone surrogate (\ud83d: an emoji cut in half) cannot be stored or sent on
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, json.JSONDecodeError) as exc:
        raise HookError(f"not JSON in UTF-8 ({exc})") from None
    except (RecursionError, ValueError):  # nested 100,000 deep; a 5,000-digit number
        raise HookError("JSON nested too deep or with a number too large") from None
    if not isinstance(payload, dict):
        raise HookError("not a JSON object")
    hook_id, event = payload.get("id"), payload.get("event")
    if not isinstance(hook_id, str) or not hook_id.strip():
        raise HookError("no string 'id'")
    if len(hook_id) > 200 or not hook_id.isprintable():
        raise HookError("'id' longer than 200 characters or with control characters")
    if not isinstance(event, str) or not event:
        raise HookError("no string 'event'")
    sent = _timestamp(payload.get("timestamp"))
    if event.startswith("account."):
        return Hook(hook_id, event, account=_account(payload.get("account"), event), sent=sent)
    if event in ("post.failed", "post.partial"):
        post = payload.get("post")
        if not isinstance(post, dict) or not isinstance(post.get("platforms"), list):
            raise HookError(f"{event} without a 'post' object with 'platforms'")
        failures = tuple(
            PostFailure(
                platform=_text(entry, "platform").lower(),
                error=_text(entry, "error"),
                account_id=_text(entry, "accountId")[:200],
            )
            for entry in post["platforms"]
            if isinstance(entry, dict) and (entry.get("error") or entry.get("status") == "failed")
        )
        return Hook(hook_id, event, failures=failures, post_id=_text(post, "id"), sent=sent)
    return Hook(hook_id, event, sent=sent)


def _timestamp(value: Any) -> float | None:
    """The payload's `timestamp` (inside the signed body) in epoch seconds, if readable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _account(raw: Any, event: str) -> HookAccount:
    if not isinstance(raw, dict):
        raise HookError(f"{event} without an 'account' object")
    account_id = raw.get("accountId")
    if not isinstance(account_id, str) or not account_id.strip() or len(account_id) > 200:
        raise HookError(f"{event} without account.accountId")
    if not account_id.isprintable():
        raise HookError(f"{event}: account.accountId has control characters")
    profile = raw.get("profileId")
    if isinstance(profile, dict):  # as Late's /accounts gives it: {"_id": ..., "name": ...}
        profile = profile.get("_id")
    return HookAccount(
        account_id=account_id,
        platform=_text(raw, "platform").lower(),
        username=_text(raw, "username"),
        display_name=_text(raw, "displayName"),
        profile_id=profile.strip() if isinstance(profile, str) and profile.strip() else None,
        intentional=raw.get("disconnectionType") == "intentional",
        reason=_text(raw, "reason"),
    )


def _text(raw: Mapping[str, Any], key: str) -> str:
    """A string field, one line: a control character (a newline that would start a line of
    its own in a message) becomes a space."""
    value = raw.get(key)
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub(" ", value).strip()[:500]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class LateWebhook:
    """One webhook as Late configures it (`/v1/webhooks/settings`); never its secret."""

    id: str
    name: str
    url: str = ""
    events: tuple[str, ...] = ()
    is_active: bool = True
    failure_count: int = 0
    last_fired_at: str = ""

    def shown(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "events": list(self.events),
            "isActive": self.is_active,
            "failureCount": self.failure_count,
            "lastFiredAt": self.last_fired_at or None,
        }


def parse_webhook(raw: Any) -> LateWebhook | None:
    """One entry of Late's list; None for an entry without an `_id` (nothing to update)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("_id"), str):
        return None
    events = raw.get("events")
    active = raw.get("isActive", True)
    failures = raw.get("failureCount")
    try:
        count = max(0, int(failures)) if failures is not None else 0
    except (TypeError, ValueError):
        count = 0
    return LateWebhook(
        id=raw["_id"],
        name=_text(raw, "name"),
        url=_text(raw, "url"),
        events=tuple(e for e in events if isinstance(e, str)) if isinstance(events, list) else (),
        is_active=active if isinstance(active, bool) else str(active).lower() == "true",
        failure_count=count,
        last_fired_at=_text(raw, "lastFiredAt"),
    )
