"""Bodies of the Late accounts-health endpoints: the vendor's examples and their variants.

Sources: `health/vendor_example.json` is the example of operationId `getAllAccountsHealth`
(`GET /v1/accounts/health`) and `detail/vendor_example.json` that of `getAccountHealth`
(`GET /v1/accounts/{accountId}/health`), verbatim from the vendor's OpenAPI document
(`late-openapi.yaml`, MIT); `error/unauthorized.json` and `error/not_found.json` are
`components/responses` Unauthorized and NotFound. `schema.json` holds the two 200 response schemas
and `components/schemas/ErrorResponse`, descriptions and examples dropped. Every other body is a
variant of these; see README.md.

Each variant is tagged:
- `schema_valid`: whether it validates against the document's schema for its endpoint (`validate`
  checks it). The document declares no field required and none nullable, so a missing field is
  valid and a null is not; `platform` has no enum in the responses (only the query parameter has),
  so any platform string is valid; `tokenExpiresAt` must be an RFC 3339 date-time.
- `documented_shape`: false only for whole bodies without an `accounts` array (health) or that are
  not a JSON object (detail, error). Note that `{}` and `{"data": [...]}` are schema-valid yet have
  no accounts array: the schema alone does not make a body usable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from late_monitor.simulator import MISSING

HERE = Path(__file__).parent
KINDS = ("health", "detail", "error")

# The twelve fields of a health-list entry, in the schema's order.
ENTRY_FIELDS = (
    "accountId",
    "platform",
    "username",
    "displayName",
    "profileId",
    "status",
    "canPost",
    "canFetchAnalytics",
    "tokenValid",
    "tokenExpiresAt",
    "needsReconnect",
    "issues",
)

# The base that entry variants change: `vendor_example` with `displayName` and `profileId` added,
# so that every field can be nulled or removed. A variant changes the FIRST entry (abc123) only;
# the second (def456) stays as the vendor wrote it, so one bad entry sits beside a good one.
ENTRY_BASE = "all_fields"


@dataclass(frozen=True)
class Variant:
    kind: str  # health | detail | error
    name: str
    schema_valid: bool
    documented_shape: bool = True
    status: int = 200  # the HTTP status to serve it with
    content_type: str = "application/json"
    note: str = ""

    @property
    def path(self) -> Path:
        found = sorted((HERE / self.kind).glob(f"{self.name}.*"))
        if len(found) != 1:
            raise LookupError(f"corpus {self.kind}/{self.name}: {len(found)} files")
        return found[0]

    @property
    def is_json(self) -> bool:
        return self.path.suffix == ".json"


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def _table() -> list[Variant]:
    h, d, e = "health", "detail", "error"
    html, text = "text/html", "text/plain"
    rows = [
        Variant(h, "vendor_example", True, note="getAllAccountsHealth example, verbatim"),
        Variant(h, ENTRY_BASE, True, note="vendor_example plus displayName and profileId"),
    ]
    for field in ENTRY_FIELDS:
        rows.append(Variant(h, f"null_{_snake(field)}", False, note=f"{field}: null"))
        rows.append(Variant(h, f"missing_{_snake(field)}", True, note=f"no {field} key"))
    rows += [
        Variant(h, "status_suspended", False, note="status outside the enum"),
        Variant(h, "status_empty", False, note='status ""'),
        Variant(h, "status_uppercase_error", False, note='status "ERROR"'),
        # whatsapp is elsewhere in the document, not in this endpoint's filter enum; discord,
        # slack and mastodon are nowhere in it. The response's platform has no enum: all valid.
        *(
            Variant(h, f"platform_{p}", True, note=f"platform {p!r}")
            for p in (
                "whatsapp",
                "discord",
                "slack",
                "googlebusiness",
                "telegram",
                "snapchat",
                "mastodon",
            )
        ),
        Variant(h, "extra_messaging_restriction", True, note="messagingRestriction object"),
        Variant(h, "extra_nested_object", True, note="platformConnection, nested with a null"),
        Variant(h, "extra_fields_many", True, note="five unknown fields, one null"),
        Variant(h, "extra_top_level", True, note="unknown top-level keys beside accounts"),
        Variant(h, "token_expires_z", True, note="2025-06-15T00:00:00Z"),
        Variant(h, "token_expires_millis", True, note="2025-06-15T00:00:00.000Z"),
        Variant(h, "token_expires_offset", True, note="2025-06-15T02:00:00+02:00"),
        Variant(h, "token_expired_past", True, note="2020-01-01T00:00:00Z"),
        Variant(h, "token_expires_empty", False, note='tokenExpiresAt ""'),
        Variant(h, "token_expires_no_zone", False, note="2025-06-15T00:00:00, no offset"),
        Variant(h, "token_expires_date_only", False, note="2025-06-15"),
        Variant(h, "token_expires_epoch_millis", False, note="a number of milliseconds"),
        Variant(h, "issues_non_strings", False, note="an object, a number and a null"),
        Variant(h, "issues_string", False, note="a string, not a list"),
        Variant(h, "issues_many", True, note="warning with fifty issues"),
        Variant(h, "can_post_string", False, note='canPost "true"'),
        Variant(h, "needs_reconnect_int", False, note="needsReconnect 1"),
        Variant(h, "unicode_names", True, note="accents, Arabic, emoji, a right-to-left override"),
        Variant(h, "summary_missing", True, note="no summary key"),
        Variant(h, "summary_extra_keys", True, note="summary with unknown counters"),
        Variant(h, "summary_null", False, note="summary: null"),
        Variant(h, "summary_wrong_types", False, note='summary total "2", healthy null'),
        Variant(h, "empty_accounts", True, note="no accounts at all, zero counts"),
        Variant(h, "duplicate_account_id", True, note="both entries are abc123"),
        Variant(h, "entry_empty_object", True, note="an entry {} between the two"),
        Variant(h, "entry_not_object", False, note="a string, null, a number and a list"),
        # Whole bodies without an accounts array.
        Variant(h, "not_json", False, False, content_type=text, note="plain text"),
        Variant(h, "html_error_page", False, False, content_type=html, note="a proxy's page"),
        Variant(h, "empty_body", False, False, note="zero bytes"),
        Variant(h, "truncated_json", False, False, note="the first 300 bytes of all_fields"),
        Variant(h, "json_null", False, False, note="null"),
        Variant(h, "empty_object", True, False, note="{}"),
        Variant(h, "summary_only", True, False, note="summary, no accounts key"),
        Variant(h, "accounts_null", False, False, note='"accounts": null'),
        Variant(h, "accounts_object", False, False, note='"accounts": {}'),
        Variant(h, "accounts_keyed_by_id", False, False, note="accounts as an id -> entry map"),
        Variant(h, "data_wrapper", True, False, note='{"data": [entries]}'),
        Variant(h, "top_level_array", False, False, note="[entries]"),
        # Detail bodies: variants of getAccountHealth's example.
        Variant(d, "vendor_example", True, note="getAccountHealth example, verbatim"),
        Variant(d, "analytics_revoked", True, note="granted false, required false (as vendor)"),
        Variant(d, "analytics_revoked_required", True, note="granted false, required true"),
        Variant(d, "posting_revoked", True, note="a required posting scope not granted"),
        Variant(d, "recommendations_present", True, note="warning with two recommendations"),
        Variant(d, "token_status_null", False, note="tokenStatus: null"),
        Variant(d, "token_status_missing", True, note="no tokenStatus"),
        Variant(d, "token_needs_refresh", True, note="needsRefresh true, expiresIn 12 hours"),
        Variant(d, "token_expires_at_null", False, note="expiresAt and expiresIn null"),
        Variant(d, "token_expires_at_offset", True, note="expiresAt with +02:00"),
        Variant(d, "token_expires_at_missing", True, note="tokenStatus without expiresAt"),
        Variant(d, "permissions_missing", True, note="no permissions"),
        Variant(d, "permissions_null", False, note="permissions: null"),
        Variant(d, "permissions_empty", True, note="permissions: {}"),
        Variant(d, "scope_fields_missing", True, note="scopes without granted or required"),
        Variant(d, "scope_required_null", False, note="a scope with granted/required null"),
        Variant(d, "missing_required_null", False, note="missingRequired: null"),
        Variant(d, "issues_missing", True, note="no issues key"),
        Variant(d, "recommendations_missing", True, note="no recommendations key"),
        Variant(d, "status_suspended", False, note="status outside the enum"),
        Variant(d, "status_null", False, note="status: null"),
        Variant(d, "display_name_null", False, note="displayName: null"),
        Variant(d, "extra_platform_connection", True, note="platformConnection object"),
        Variant(d, "extra_integration_lane", True, note="integrationLane string"),
        Variant(d, "extra_fields_many", True, note="both, messagingRestriction, and more"),
        Variant(d, "platform_whatsapp", True, note="a whatsapp account"),
        Variant(d, "not_json", False, False, content_type=text, note="plain text"),
        Variant(d, "top_level_array", False, False, note="[the vendor example]"),
        # Error bodies (components/responses and ErrorResponse) with the status they come with.
        Variant(e, "unauthorized", True, status=401, note="components/responses/Unauthorized"),
        Variant(e, "not_found", True, status=404, note="components/responses/NotFound"),
        Variant(e, "account_not_found", True, status=404, note="wording used elsewhere"),
        Variant(e, "forbidden", True, status=403),
        Variant(e, "rate_limited", True, status=429, note="with details"),
        Variant(e, "internal_error", True, status=500),
        Variant(e, "error_with_code_and_message", True, status=401, note="code and message"),
        Variant(e, "error_not_string", False, status=401, note="error is an object"),
        Variant(e, "error_null", False, status=401, note="error: null"),
        Variant(e, "html_bad_gateway", False, False, status=502, content_type=html),
        Variant(e, "empty_body", False, False, status=500, note="zero bytes"),
    ]
    return rows


VARIANTS: dict[tuple[str, str], Variant] = {(v.kind, v.name): v for v in _table()}


def variant(kind: str, name: str) -> Variant:
    try:
        return VARIANTS[(kind, name)]
    except KeyError:
        raise LookupError(f"no corpus variant {kind}/{name}") from None


def names(
    kind: str, *, schema_valid: bool | None = None, documented_shape: bool | None = None
) -> list[str]:
    """The variant names of `kind`, optionally only those with the given tags."""
    if kind not in KINDS:
        raise LookupError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    return [
        v.name
        for v in VARIANTS.values()
        if v.kind == kind
        and schema_valid in (None, v.schema_valid)
        and documented_shape in (None, v.documented_shape)
    ]


def body(kind: str, name: str) -> bytes:
    return variant(kind, name).path.read_bytes()


def health_body(name: str) -> bytes:
    return body("health", name)


def detail_body(name: str) -> bytes:
    return body("detail", name)


def error_body(name: str) -> bytes:
    return body("error", name)


def load(kind: str, name: str) -> Any:
    """The variant parsed as JSON (ValueError for those that are not JSON)."""
    return json.loads(body(kind, name))


def entries(name: str) -> list[Any]:
    """The `accounts` list of a documented-shape health body (entries may be non-dicts)."""
    value = load("health", name)
    if not variant("health", name).documented_shape:
        raise LookupError(f"health/{name} has no accounts array")
    accounts: list[Any] = value["accounts"]
    return accounts


def detail(name: str) -> dict[str, Any]:
    value: dict[str, Any] = load("detail", name)
    return value


def overlay(kind: str, name: str) -> dict[str, Any]:
    """What the variant changes, as top-level keys for `Simulator.set_raw`.

    health: the first entry against `all_fields`'s first entry; detail: the body against the
    vendor example. A removed key maps to MISSING.
    """
    if kind == "health":
        base, changed = entries(ENTRY_BASE)[0], entries(name)[0]
    elif kind == "detail":
        base, changed = detail("vendor_example"), detail(name)
    else:
        raise LookupError("overlay: health or detail")
    if not isinstance(changed, dict):
        raise LookupError(f"{kind}/{name}: the first entry is not an object")
    out: dict[str, Any] = {k: MISSING for k in base if k not in changed}
    out.update({k: v for k, v in changed.items() if k not in base or base[k] != v})
    return out


# -- a checker for the JSON-schema features the document uses here --------------------------

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@cache
def schema(kind: str) -> dict[str, Any]:
    """The document's schema for a 200 body of `kind` (for `error`: ErrorResponse)."""
    schemas: dict[str, dict[str, Any]] = json.loads((HERE / "schema.json").read_text())
    return schemas[kind]


def check(value: Any, spec: dict[str, Any], where: str = "$") -> list[str]:
    """Problems of `value` against `spec`: type, properties, items, enum, date-time format,
    required and additionalProperties. An empty list means valid."""
    problems: list[str] = []
    kind = spec.get("type")
    if kind is not None:
        wanted = _TYPES[kind]
        is_bool = isinstance(value, bool)
        if not isinstance(value, wanted) or (is_bool and kind in ("integer", "number")):
            return [f"{where}: {type(value).__name__} is not {kind}"]
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{where}: {value!r} is not one of {spec['enum']}")
    is_text = isinstance(value, str)
    if spec.get("format") == "date-time" and is_text and not _DATE_TIME.match(value):
        problems.append(f"{where}: {value!r} is not an RFC 3339 date-time")
    if isinstance(value, dict):
        properties = spec.get("properties", {})
        problems += [f"{where}: no {key!r}" for key in spec.get("required", ()) if key not in value]
        extra = spec.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                problems += check(item, properties[key], f"{where}.{key}")
            elif extra is False:
                problems.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                problems += check(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in spec:
        for index, item in enumerate(value):
            problems += check(item, spec["items"], f"{where}[{index}]")
    return problems


def validate(kind: str, name: str) -> list[str]:
    """Problems of the variant against its endpoint's schema; not JSON is one problem."""
    try:
        value = load(kind, name)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    return check(value, schema(kind))
