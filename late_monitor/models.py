"""What the Late API says, parsed from raw bytes into small frozen values for the rules.

pydantic validates the health list straight from the body bytes into slotted Observation
instances (no intermediate dicts, no Python loop): at 50,000 accounts that halves the parse's
CPU against a TypedDict pass plus a conversion loop. `health` decides which bytes to give it.
Unknown fields are ignored, unknown statuses and platforms kept verbatim.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Required, TypeVar

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import core_schema
from typing_extensions import TypedDict

from late_monitor.errors import BadPayload

Body = bytes | bytearray  # a response body as read
UNKNOWN_PLATFORM = "unknown"
# Every platform the vendor's OpenAPI document names (new ones are added over time).
KNOWN_PLATFORMS = frozenset(
    [
        "tiktok",
        "instagram",
        "facebook",
        "youtube",
        "linkedin",
        "twitter",
        "threads",
        "pinterest",
        "reddit",
        "bluesky",
        "googlebusiness",
        "telegram",
        "snapchat",
        "whatsapp",
    ]
)
SHAPE_ERROR = "Late answered in a shape late-monitor cannot read"


class OrDefault:
    """Annotation: a value that does not validate (null, a wrong type, a bad date) becomes
    `default`, inside pydantic-core, at no cost per account. Every field of the health list
    is optional in the vendor's schema and none is declared non-null: one odd account must
    not fail the poll of all the others."""

    __slots__ = ("default",)

    def __init__(self, default: object) -> None:
        self.default = default

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_default_schema(
            handler(source), default=self.default, on_error="default"
        )


class _Scope(TypedDict, total=False):
    scope: Annotated[str, OrDefault("")]
    granted: Annotated[bool, OrDefault(True)]
    required: Annotated[bool, OrDefault(False)]


_Scopes = Annotated[list[Annotated[_Scope, OrDefault(None)]], OrDefault([])]


class _Permissions(TypedDict, total=False):
    posting: _Scopes
    analytics: _Scopes
    optional: _Scopes
    canPost: Annotated[bool | None, OrDefault(None)]
    canFetchAnalytics: Annotated[bool | None, OrDefault(None)]
    missingRequired: Annotated[list[Annotated[str, OrDefault("")]], OrDefault([])]


class _TokenStatus(TypedDict, total=False):
    valid: Annotated[bool | None, OrDefault(None)]
    expiresAt: Annotated[str | None, OrDefault(None)]
    expiresIn: Annotated[str, OrDefault("")]
    needsRefresh: Annotated[bool, OrDefault(False)]


_Texts = Annotated[list[Annotated[str, OrDefault("")]], OrDefault([])]


class _DetailPayload(TypedDict, total=False):
    accountId: Required[str]
    status: Annotated[str | None, OrDefault(None)]
    tokenStatus: Annotated[_TokenStatus, OrDefault({})]
    permissions: Annotated[_Permissions, OrDefault({})]
    issues: _Texts
    recommendations: _Texts


@functools.cache
def _detail_adapter() -> TypeAdapter[_DetailPayload]:
    """Built on the first detail call (~8 ms): a `run --once` with nothing new makes none."""
    return TypeAdapter(_DetailPayload)


def _instant(text: str) -> datetime:
    """An ISO 8601 time in UTC; `Z` and `+00:00` give the `timezone.utc` singleton, whose
    datetimes compare without calling utcoffset() (the rules compare 50,000 per poll; with
    pydantic's own tzinfo each comparison costs 25x more)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _when(value: object) -> object:
    if isinstance(value, str):
        return _instant(value) if value else None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# " ERROR " is "error": Late's enum is lowercase, but a status is compared, not displayed.
# An empty status says nothing, and reads as unreadable.
_Status = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]


@pydantic_dataclass(
    frozen=True,
    slots=True,
    kw_only=True,
    config=ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True),
)
class Observation:
    """One account as one poll of `GET /accounts/health` saw it.

    A field Late left out takes its default. A null or unreadable descriptive field reads
    as empty; a null or unreadable field that decides alerts (status and the flags) reads as
    None, "not said": the rules keep the account's last known value for it, and `flaws`
    names it so the operator hears of it once. An entry without a usable accountId reads
    with `account_id == ""` and is set aside whole.
    """

    account_id: Annotated[str, Field(alias="accountId"), OrDefault("")] = ""
    status: Annotated[_Status | None, OrDefault(None)] = None
    platform: Annotated[str, OrDefault(UNKNOWN_PLATFORM)] = UNKNOWN_PLATFORM
    username: Annotated[str, OrDefault("")] = ""
    needs_reconnect: Annotated[bool | None, Field(alias="needsReconnect"), OrDefault(None)] = False
    can_post: Annotated[bool | None, Field(alias="canPost"), OrDefault(None)] = True
    can_fetch_analytics: Annotated[
        bool | None, Field(alias="canFetchAnalytics"), OrDefault(None)
    ] = True
    token_valid: Annotated[bool | None, Field(alias="tokenValid"), OrDefault(None)] = True
    token_expires_at: Annotated[
        datetime | None, Field(alias="tokenExpiresAt"), BeforeValidator(_when), OrDefault(None)
    ] = None
    issues: Annotated[tuple[Annotated[str, OrDefault("?")], ...], OrDefault(())] = ()
    display_name: Annotated[str, Field(alias="displayName"), OrDefault("")] = ""
    profile_id: Annotated[str | None, Field(alias="profileId"), OrDefault(None)] = None

    @property
    def flaws(self) -> tuple[str, ...]:
        """The fields that decide alerts but could not be read (Late's names)."""
        return tuple(
            name
            for name, value in (
                ("status", self.status),
                ("needsReconnect", self.needs_reconnect),
                ("canPost", self.can_post),
                ("tokenValid", self.token_valid),
                ("canFetchAnalytics", self.can_fetch_analytics),
            )
            if value is None
        )


def flawed(observation: Observation) -> bool:
    """Cheaper than `bool(observation.flaws)`: the parser asks it of every new account."""
    return (
        observation.status is None
        or observation.needs_reconnect is None
        or observation.can_post is None
        or observation.token_valid is None
        or observation.can_fetch_analytics is None
        or not observation.account_id
    )


class _HealthPayload(TypedDict):
    accounts: list[Annotated[Observation, OrDefault(None)]]


HEALTH = TypeAdapter(_HealthPayload)
OBSERVATIONS = TypeAdapter(list[Observation])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every account of one successful poll, keyed by account id.

    `unreadable` names, per account, the alert-deciding fields Late sent null or unreadable;
    `unidentified` counts the entries set aside for want of an accountId. `quiet` are the
    accounts listed exactly as a stored quiet state says, left unparsed; `prints` the
    fingerprint of each parsed account's entry."""

    accounts: Mapping[str, Observation]
    unreadable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unidentified: int = 0
    quiet: AbstractSet[str] = frozenset()
    prints: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Detail:
    """What `GET /accounts/{id}/health` adds: scopes, token status, advice."""

    account_id: str
    missing_posting: tuple[str, ...] = ()
    missing_analytics: tuple[str, ...] = ()
    needs_refresh: bool = False
    expires_in: str = ""
    issues: tuple[str, ...] = ()
    recommendations: tuple[str, ...] = ()
    status: str | None = None  # None: Late did not say (or said something unreadable)
    can_post: bool | None = None
    token_valid: bool | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        return self.missing_posting + self.missing_analytics


T = TypeVar("T")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # an escape of half a pair


def validated(adapter: TypeAdapter[T], body: Body) -> T:
    """`adapter.validate_json(body)`; a body whose text holds a lone surrogate is read too.

    JSON's grammar allows an escape of half a UTF-16 pair (`"\\ud83d"`), and a name cut in
    the middle of an emoji by JavaScript's `slice` gives one; pydantic's reader refuses the
    whole body for it, which stopped every account's poll for one display name. Python's
    reader takes it: each lone half becomes U+FFFD and the text is validated again, the
    same way (only such a body pays for it)."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        if not _SURROGATE.search(body):
            raise
        try:
            data = json.loads(body)
        except ValueError:
            raise exc from None
        mended = json.dumps(_mended(data), ensure_ascii=False).encode()
        return adapter.validate_json(mended)


def _mended(value: Any) -> Any:
    """`value` (what json.loads gave) with each lone surrogate in its text made U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_mended(item) for item in value]
    if isinstance(value, dict):
        return {_mended(key): _mended(item) for key, item in value.items()}
    return value


def describe(exc: ValidationError) -> str:
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def parse_detail(body: Body, *, status: int = 200) -> Detail:
    """Parse a `GET /accounts/{id}/health` body; raise BadPayload when it is not that.

    Posting scopes count as missing when Late marks them required and not granted; an
    analytics scope counts when it is not granted at all, since the vendor marks analytics
    `required: false` although losing it stops every report."""
    try:
        payload = validated(_detail_adapter(), body)
    except ValidationError as exc:
        raise bad_payload(body, status, describe(exc)) from None
    permissions = payload.get("permissions", {})
    posting = [s["scope"] for s in _scopes(permissions, "posting") if _lost(s)]
    analytics = [
        s["scope"] for s in _scopes(permissions, "analytics") if not s.get("granted", True)
    ]
    analytics += [s["scope"] for s in _scopes(permissions, "optional") if _lost(s)]
    for scope in permissions.get("missingRequired", ()):
        if scope and scope not in posting and scope not in analytics:
            posting.append(scope)
    if permissions.get("canFetchAnalytics") is False and not analytics:
        analytics.append("analytics")
    token = payload.get("tokenStatus", {})
    return Detail(
        account_id=payload["accountId"],
        missing_posting=tuple(s for s in posting if s),
        missing_analytics=tuple(s for s in analytics if s),
        needs_refresh=token.get("needsRefresh", False),
        expires_in=token.get("expiresIn", ""),
        issues=tuple(text for text in payload.get("issues", ()) if text),
        recommendations=tuple(text for text in payload.get("recommendations", ()) if text),
        status=(payload.get("status") or "").strip().lower() or None,
        can_post=permissions.get("canPost"),
        token_valid=token.get("valid"),
    )


def _scopes(permissions: _Permissions, kind: str) -> list[_Scope]:
    found: list[_Scope | None] = permissions.get(kind, [])  # type: ignore[assignment]
    return [scope for scope in found if scope]


def _lost(scope: _Scope) -> bool:
    return scope.get("required", False) and not scope.get("granted", True)


def bad_payload(body: Body, status: int, reason: str) -> BadPayload:
    """A BadPayload naming the HTTP status and the first 200 characters of the body."""
    excerpt = body[:200].decode("utf-8", "replace").replace("\n", " ").strip()
    return BadPayload(f"HTTP {status}: {reason}; body starts: {excerpt!r}", status=status)
