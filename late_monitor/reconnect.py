"""Reconnect links: signed tokens in messages, and what opening one does.

A token is `payload.signature`: the payload names the account, when the link was issued and
when it expires; the signature is an HMAC-SHA256 with a key kept in the state file's meta
table (created on first use, never printed or logged). Opening a link asks Late for a fresh
OAuth `authUrl` (it expires within minutes, so it cannot be put in the message itself) and
redirects there. Platforms that reconnect with credentials or a code get Late's dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

import structlog

from late_monitor.errors import LateApiError
from late_monitor.state import AccountState

log = structlog.get_logger("late_monitor.reconnect")

KEY_META = "reconnect_key"
# Per the vendor's OpenAPI document: Bluesky connects with an app password, WhatsApp with
# Meta credentials, Telegram with a code sent to Late's bot; none has an OAuth authUrl.
CREDENTIAL_PLATFORMS = frozenset({"bluesky", "whatsapp", "telegram"})
_CONTEXT = b"late-monitor reconnect v1\0"


class KeyStore(Protocol):
    """What tokens need of the state file (store.Store has it)."""

    def meta_setdefault(self, key: str, value: object) -> object: ...


def signing_key(store: KeyStore) -> bytes:
    """The state file's HMAC key, created on first use."""
    value = store.meta_setdefault(KEY_META, secrets.token_hex(32))
    return bytes.fromhex(str(value))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(key: bytes, account_id: str, *, issued: datetime, expires: datetime) -> str:
    payload = f"{int(expires.timestamp())}.{int(issued.timestamp())}.{account_id}".encode()
    signature = hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(signature)}"


@dataclass(frozen=True, slots=True)
class Claim:
    account_id: str
    issued: datetime
    expires: datetime


def verify(key: bytes, token: str) -> Claim | None:
    """The claim of a token this key signed, else None (expiry is the caller's to check)."""
    try:
        payload_text, signature_text = token.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
        expected = hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(signature, expected):
            return None
        expires, issued, account_id = payload.decode().split(".", 2)
        return Claim(
            account_id=account_id,
            issued=datetime.fromtimestamp(int(issued), UTC),
            expires=datetime.fromtimestamp(int(expires), UTC),
        )
    except (ValueError, UnicodeDecodeError):
        return None


def dashboard_url(base_url: str, profile_id: str | None = None) -> str:
    """Late's dashboard, on the API's own host (https://zernio.com/api/v1 -> /dashboard)."""
    parts = urlsplit(base_url)
    root = f"{parts.scheme}://{parts.netloc}/dashboard"
    if profile_id:
        return f"{root}/profiles/{quote(profile_id, safe='')}/accounts"
    return root


def command(account_id: str) -> str:
    return f"late-monitor reconnect {shlex.quote(account_id)}"


@dataclass(frozen=True, slots=True)
class Links:
    """How a message tells people to fix an account: one of the three is set."""

    reconnect: str = ""  # {public_url}/reconnect/{token}
    dashboard: str = ""  # a credential platform: Late's dashboard
    command: str = ""  # no public URL: the command that prints a fresh authUrl


class LinkMaker:
    """Links for the accounts of one message (the key is read once per maker)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        public_url: str,
        base_url: str,
        expiry: float,
        now: datetime,
    ) -> None:
        self._store = store
        self._public_url = public_url
        self._base_url = base_url
        self._expiry = expiry
        self._now = now
        self._key: bytes | None = None

    def __call__(self, state: AccountState) -> Links:
        if state.platform in CREDENTIAL_PLATFORMS:
            return Links(dashboard=dashboard_url(self._base_url, state.profile_id))
        if not self._public_url:
            return Links(command=command(state.account_id))
        if self._key is None:
            self._key = signing_key(self._store)
        expires = datetime.fromtimestamp(self._now.timestamp() + self._expiry, UTC)
        token = mint(self._key, state.account_id, issued=self._now, expires=expires)
        return Links(reconnect=f"{self._public_url}/reconnect/{token}")


@dataclass(frozen=True, slots=True)
class Answer:
    """What opening a link answers: a redirect, or a plain page (never both)."""

    status: int
    text: str = ""
    location: str = ""
    account_id: str = ""


class Client(Protocol):
    async def connect_url(self, platform: str, profile_id: str) -> str: ...


class States(Protocol):
    def load_states(self) -> Mapping[str, AccountState]: ...

    def meta_setdefault(self, key: str, value: object) -> object: ...


async def open_link(
    token: str,
    *,
    store: States,
    client: Client,
    base_url: str,
    now: datetime,
) -> Answer:
    """Check a token and, for an account that still needs it, a fresh authUrl to go to."""
    claim = verify(signing_key(store), token)
    if claim is None:
        return Answer(400, "This reconnect link is not valid (it was changed or cut short).")
    if claim.expires <= now:
        return Answer(
            410,
            f"This reconnect link expired on {claim.expires:%Y-%m-%d %H:%M} UTC. "
            "Run `late-monitor reconnect ACCOUNT_ID` or use a newer message.",
        )
    state = store.load_states().get(claim.account_id)
    if state is None:
        return Answer(404, "This account is no longer connected to Late.")
    fine = state.healthy and not state.missing_scopes
    if fine or (state.recovered_at is not None and state.recovered_at >= claim.issued):
        return Answer(
            410,
            "This account has recovered since this link was sent; the link is spent. "
            "A new message brings a new link if it breaks again.",
            account_id=state.account_id,
        )
    if state.platform in CREDENTIAL_PLATFORMS:
        return Answer(
            200,
            f"{state.platform} accounts reconnect with credentials or a code, not a link: "
            f"open Late's dashboard at {dashboard_url(base_url, state.profile_id)}",
            account_id=state.account_id,
        )
    if not state.profile_id:
        return Answer(502, "Late did not say which profile this account belongs to.")
    try:
        url = await client.connect_url(state.platform, state.profile_id)
    except LateApiError as exc:
        log.warning("reconnect_failed", account_id=state.account_id, error=str(exc))
        return Answer(502, f"Late did not give a reconnect link: {exc}")
    log.info("reconnect_opened", account_id=state.account_id, platform=state.platform)
    return Answer(302, location=url, account_id=state.account_id)
