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


def parse(body: bytes) -> Hook:
    """The delivery's id, event and what late-monitor needs of it; HookError when the body
    is not a JSON object with a string `id` and `event`, or an account/post event lacks the
    object its schema requires. Unknown events are valid (acknowledged, not acted on)."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HookError(f"not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise HookError("not a JSON object")
    hook_id, event = payload.get("id"), payload.get("event")
    if not isinstance(hook_id, str) or not hook_id.strip() or len(hook_id) > 200:
        raise HookError("no string 'id'")
    if not isinstance(event, str) or not event:
        raise HookError("no string 'event'")
    if event.startswith("account."):
        return Hook(hook_id, event, account=_account(payload.get("account"), event))
    if event in ("post.failed", "post.partial"):
        post = payload.get("post")
        if not isinstance(post, dict) or not isinstance(post.get("platforms"), list):
            raise HookError(f"{event} without a 'post' object with 'platforms'")
        failures = tuple(
            PostFailure(
                platform=_text(entry, "platform").lower(),
                error=_text(entry, "error"),
                account_id=_text(entry, "accountId"),
            )
            for entry in post["platforms"]
            if isinstance(entry, dict) and (entry.get("error") or entry.get("status") == "failed")
        )
        return Hook(hook_id, event, failures=failures, post_id=_text(post, "id"))
    return Hook(hook_id, event)


def _account(raw: Any, event: str) -> HookAccount:
    if not isinstance(raw, dict):
        raise HookError(f"{event} without an 'account' object")
    account_id = raw.get("accountId")
    if not isinstance(account_id, str) or not account_id:
        raise HookError(f"{event} without account.accountId")
    profile = raw.get("profileId")
    return HookAccount(
        account_id=account_id,
        platform=_text(raw, "platform").lower(),
        username=_text(raw, "username"),
        display_name=_text(raw, "displayName"),
        profile_id=profile if isinstance(profile, str) and profile else None,
        intentional=raw.get("disconnectionType") == "intentional",
        reason=_text(raw, "reason")[:500],
    )


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value.strip() if isinstance(value, str) else ""


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
    failures = raw.get("failureCount")
    return LateWebhook(
        id=raw["_id"],
        name=_text(raw, "name"),
        url=_text(raw, "url"),
        events=tuple(e for e in events if isinstance(e, str)) if isinstance(events, list) else (),
        is_active=raw.get("isActive") is not False,
        failure_count=failures if isinstance(failures, int) and failures >= 0 else 0,
        last_fired_at=_text(raw, "lastFiredAt"),
    )
