"""The simulator serves exactly what a test asks for, on the wire; the corpus is what it says."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from late_monitor.errors import ConfigError
from late_monitor.simulator import DEFAULT_KEY, MISSING, Fault, Simulator, make_accounts
from late_monitor.simulator.scenario import apply_change, load_scenario
from tests import corpus

AUTH = {"Authorization": f"Bearer {DEFAULT_KEY}"}


@pytest.fixture
async def fifty() -> AsyncIterator[Simulator]:
    simulator = Simulator(make_accounts(50))
    await simulator.start()
    yield simulator
    await simulator.stop()


async def fetch(
    url: str, *, headers: dict[str, str] | None = None, **options: Any
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=AUTH if headers is None else headers, **options) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def health(sim: Simulator) -> dict[str, Any]:
    status, _, body = await fetch(f"{sim.base_url}/accounts/health")
    assert status == 200
    value: dict[str, Any] = json.loads(body)
    return value


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["accountId"]: entry for entry in body["accounts"]}


# -- the corpus ----------------------------------------------------------------------------


def test_every_corpus_file_has_a_tagged_variant_and_every_variant_a_file() -> None:
    files = {
        (p.parent.name, p.stem) for kind in corpus.KINDS for p in (corpus.HERE / kind).iterdir()
    }
    assert files == set(corpus.VARIANTS)


@pytest.mark.parametrize(("kind", "name"), sorted(corpus.VARIANTS))
def test_corpus_schema_valid_tag_agrees_with_the_documents_schema(kind: str, name: str) -> None:
    problems = corpus.validate(kind, name)
    assert (not problems) == corpus.variant(kind, name).schema_valid, problems


def test_json_files_parse_and_the_others_do_not() -> None:
    for (kind, name), variant in corpus.VARIANTS.items():
        if variant.is_json:
            corpus.load(kind, name)
        else:
            with pytest.raises(ValueError):  # noqa: PT011 - JSONDecodeError and UnicodeDecodeError
                corpus.load(kind, name)


def test_documented_shape_means_an_accounts_array() -> None:
    for name in corpus.names("health"):
        documented = corpus.variant("health", name).documented_shape
        try:
            value = corpus.load("health", name)
        except ValueError:
            value = None
        has_array = isinstance(value, dict) and isinstance(value.get("accounts"), list)
        assert has_array == documented, name
    for kind in ("detail", "error"):
        for name in corpus.names(kind, documented_shape=True):
            assert isinstance(corpus.load(kind, name), dict), name


def test_each_entry_field_has_a_null_and_a_missing_variant() -> None:
    for field in corpus.ENTRY_FIELDS:
        snake = "".join("_" + c.lower() if c.isupper() else c for c in field)
        assert corpus.overlay("health", f"null_{snake}") == {field: None}
        assert corpus.overlay("health", f"missing_{snake}") == {field: MISSING}


def test_names_filter_by_tag() -> None:
    off_shape = corpus.names("health", documented_shape=False)
    assert {"accounts_null", "accounts_object", "data_wrapper", "top_level_array"} <= set(off_shape)
    assert "vendor_example" in corpus.names("health", schema_valid=True, documented_shape=True)
    assert "null_status" in corpus.names("health", schema_valid=False)
    assert corpus.entries("vendor_example")[1]["accountId"] == "def456"
    with pytest.raises(LookupError):
        corpus.entries("accounts_null")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ({"canPost": True}, True),
        ({"canPost": None}, False),
        ({"canPost": 1}, False),
        ({"status": "warning"}, True),
        ({"status": "Warning"}, False),
        ({"tokenExpiresAt": "2025-06-15T00:00:00.123+05:30"}, True),
        ({"tokenExpiresAt": "2025-06-15 00:00:00"}, False),
        ({"issues": ["a", 1]}, False),
        ({"anything": [None, {}]}, True),
    ],
)
def test_the_checker_reads_types_enums_formats_and_items(value: Any, valid: bool) -> None:
    entry = corpus.schema("health")["properties"]["accounts"]["items"]
    assert (not corpus.check(value, entry)) == valid
    assert not corpus.check(1, {"type": "number"})
    assert corpus.check(True, {"type": "integer"})


def _openapi_document() -> Path | None:
    candidates = [os.environ.get("LATE_OPENAPI_DOC", "")]
    candidates.append(str(Path(__file__).parents[2] / "shared/seeds/late-openapi.yaml"))
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_corpus_schema_and_examples_are_the_openapi_documents() -> None:
    yaml = pytest.importorskip("yaml")
    document = _openapi_document()
    if document is None:
        pytest.skip("set LATE_OPENAPI_DOC to the vendor's late-openapi.yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C one: 16,000 lines
    paths = yaml.load(document.read_text(encoding="utf-8"), Loader=loader)["paths"]

    def strip(spec: Any) -> Any:
        if isinstance(spec, dict):
            return {k: strip(v) for k, v in spec.items() if k not in ("description", "example")}
        return [strip(v) for v in spec] if isinstance(spec, list) else spec

    for kind, path in (
        ("health", "/v1/accounts/health"),
        ("detail", "/v1/accounts/{accountId}/health"),
    ):
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        assert strip(ok["schema"]) == corpus.schema(kind)
        assert ok["example"] == corpus.load(kind, "vendor_example")


# -- what the simulator serves normally ----------------------------------------------------


async def test_normal_bodies_are_schema_valid(fifty: Simulator) -> None:
    fifty.set("acc_00003", revoked={"tweet.analytics", "tweet.write"}, status="warning")
    body = await health(fifty)
    assert corpus.check(body, corpus.schema("health")) == []
    for account_id in ("acc_00001", "acc_00003"):
        _, _, raw = await fetch(f"{fifty.base_url}/accounts/{account_id}/health")
        assert corpus.check(json.loads(raw), corpus.schema("detail")) == []


async def test_analytics_scopes_are_not_required_as_in_the_vendors_example(sim: Simulator) -> None:
    sim.set("acc_00000", revoked={"tweet.analytics"})  # acc_00000 is twitter
    _, _, raw = await fetch(f"{sim.base_url}/accounts/acc_00000/health")
    permissions = json.loads(raw)["permissions"]
    assert permissions["analytics"] == [
        {"scope": "tweet.analytics", "granted": False, "required": False}
    ]
    assert permissions["canFetchAnalytics"] is False
    assert permissions["missingRequired"] == []
    assert permissions["canPost"] is True


async def test_analytics_required_flag_keeps_the_old_marking(sim: Simulator) -> None:
    sim.set("acc_00000", revoked={"tweet.analytics"}, analytics_required=True)
    _, _, raw = await fetch(f"{sim.base_url}/accounts/acc_00000/health")
    body = json.loads(raw)
    assert body["permissions"]["analytics"][0]["required"] is True
    assert body["permissions"]["missingRequired"] == ["tweet.analytics"]
    assert body["recommendations"] == ["Reconnect the account in Late"]


# -- raw overrides of one account ------------------------------------------------------------


async def test_one_account_null_status_another_without_can_post_the_rest_normal(
    fifty: Simulator,
) -> None:
    normal = by_id(await health(fifty))
    fifty.set_raw("acc_00001", {"status": None})
    fifty.set_raw("acc_00002", {"canPost": MISSING, "messagingRestriction": {"restricted": True}})
    served = by_id(await health(fifty))
    assert served["acc_00001"] == {**normal["acc_00001"], "status": None}
    assert "canPost" not in served["acc_00002"]
    assert served["acc_00002"]["messagingRestriction"] == {"restricted": True}
    assert {k: v for k, v in served.items() if k not in ("acc_00001", "acc_00002")} == {
        k: v for k, v in normal.items() if k not in ("acc_00001", "acc_00002")
    }
    raw = (await fetch(f"{fifty.base_url}/accounts/health"))[2]
    assert b'"status": null' in raw


async def test_raw_keys_accumulate_follow_field_changes_and_clear(fifty: Simulator) -> None:
    fifty.set_raw("acc_00004", {"status": "suspended"})
    fifty.set_raw("acc_00004", {"username": None})
    fifty.break_account("acc_00004")
    entry = by_id(await health(fifty))["acc_00004"]
    assert (entry["status"], entry["username"], entry["needsReconnect"]) == (
        "suspended",
        None,
        True,
    )
    fifty.clear_raw("acc_00004")
    entry = by_id(await health(fifty))["acc_00004"]
    assert (entry["status"], entry["username"]) == ("error", "@tiktok_00004")


async def test_replace_serves_exactly_the_given_entry(fifty: Simulator) -> None:
    fifty.set_raw("acc_00005", {"accountId": "acc_00005", "platform": "discord"}, replace=True)
    served = by_id(await health(fifty))
    assert served["acc_00005"] == {"accountId": "acc_00005", "platform": "discord"}
    assert len(served) == 50


async def test_summary_counts_and_filters_read_the_served_entries(fifty: Simulator) -> None:
    fifty.set_raw("acc_00000", {"status": None})
    fifty.set_raw("acc_00001", {"status": "error", "needsReconnect": True})
    summary = (await health(fifty))["summary"]
    assert summary == {"total": 50, "healthy": 48, "warning": 0, "error": 1, "needsReconnect": 1}
    _, _, raw = await fetch(f"{fifty.base_url}/accounts/health?status=error")
    assert [e["accountId"] for e in json.loads(raw)["accounts"]] == ["acc_00001"]


async def test_every_corpus_entry_variant_served_for_one_account_of_fifty(
    fifty: Simulator,
) -> None:
    normal = by_id(await health(fifty))
    for name in corpus.names("health", documented_shape=True):
        accounts = corpus.entries(name)
        if not accounts or not isinstance(accounts[0], dict) or name == corpus.ENTRY_BASE:
            continue
        change = corpus.overlay("health", name)
        fifty.set_raw("acc_00007", change)
        body = json.loads((await fetch(f"{fifty.base_url}/accounts/health"))[2])
        served = body["accounts"]
        expected = {k: v for k, v in {**normal["acc_00007"], **change}.items() if v is not MISSING}
        assert served[7] == expected, name
        assert served[:7] + served[8:] == [v for k, v in normal.items() if k != "acc_00007"], name
        fifty.clear_raw()


async def test_detail_raw_keys_and_a_corpus_detail_variant(fifty: Simulator) -> None:
    fifty.set_raw(
        "acc_00001",
        detail={"tokenStatus": None, "permissions": MISSING, "integrationLane": "direct"},
    )
    _, _, raw = await fetch(f"{fifty.base_url}/accounts/acc_00001/health")
    body = json.loads(raw)
    assert body["tokenStatus"] is None
    assert "permissions" not in body
    assert body["integrationLane"] == "direct"
    assert by_id(await health(fifty))["acc_00001"]["status"] == "healthy"  # the entry is untouched
    fifty.set_raw("acc_00002", detail=corpus.detail("analytics_revoked"), replace=True)
    _, _, raw = await fetch(f"{fifty.base_url}/accounts/acc_00002/health")
    assert json.loads(raw) == corpus.detail("analytics_revoked")


# -- whole bodies --------------------------------------------------------------------------


async def test_every_corpus_body_is_served_byte_for_byte(fifty: Simulator) -> None:
    for kind, name in sorted(corpus.VARIANTS):
        variant = corpus.variant(kind, name)
        path = "/accounts/health" if kind != "detail" else "/accounts/acc_00003/health"
        fifty.serve_body(
            corpus.body(kind, name),
            content_type=variant.content_type,
            status=variant.status,
            path=path,
        )
        status, headers, raw = await fetch(f"{fifty.base_url}{path}", headers={})
        assert (status, headers["Content-Type"]) == (variant.status, variant.content_type), name
        assert raw == corpus.body(kind, name), name
        assert headers["X-RateLimit-Limit"] == "600"
    fifty.clear_body()
    assert len((await health(fifty))["accounts"]) == 50


async def test_served_body_stays_until_cleared_and_faults_come_first(fifty: Simulator) -> None:
    fifty.serve_body(b'{"accounts": null}')
    fifty.inject(Fault(kind="body", data=b"[]", count=1))
    bodies = [(await fetch(f"{fifty.base_url}/accounts/health"))[2] for _ in range(3)]
    assert bodies == [b"[]", b'{"accounts": null}', b'{"accounts": null}']
    _, _, detail = await fetch(f"{fifty.base_url}/accounts/acc_00001/health")
    assert json.loads(detail)["accountId"] == "acc_00001"  # the list path only
    fifty.clear_body("/accounts/health")
    assert len((await health(fifty))["accounts"]) == 50


def test_fault_kinds_have_their_usual_status_and_unknown_kinds_fail() -> None:
    assert [Fault(kind=k).status for k in ("status", "body", "redirect", "echo_key")] == [
        500,
        200,
        302,
        401,
    ]
    assert Fault(kind="body").body == ""
    with pytest.raises(ValueError, match="fault kind 'teapot'"):
        Fault(kind="teapot")


# -- faults on the wire --------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_redirect_to_another_port_is_followed_there(fifty: Simulator, code: int) -> None:
    other = Simulator(make_accounts(2))
    await other.start()
    try:
        target = f"{other.base_url}/accounts/health"
        fifty.inject(Fault(kind="redirect", status=code, location=target, count=2))
        url = f"{fifty.base_url}/accounts/health"
        status, headers, _ = await fetch(url, allow_redirects=False)
        assert (status, headers["Location"]) == (code, target)
        status, _, raw = await fetch(url)
        assert other.count("/accounts/health") == 1
        # aiohttp drops the Authorization header when a redirect leaves the origin, so the
        # other server never sees the key and answers 401.
        assert (status, json.loads(raw)) == (401, {"error": "Unauthorized"})
        assert other.authorizations == [""]
    finally:
        await other.stop()


async def test_same_host_redirect_points_at_the_request_itself(fifty: Simulator) -> None:
    fifty.inject(Fault(kind="redirect", status=307))
    url = f"{fifty.base_url}/accounts/health?platform=twitter"
    status, headers, _ = await fetch(url, allow_redirects=False)
    assert (status, headers["Location"]) == (307, "/api/v1/accounts/health?platform=twitter")
    fifty.inject(Fault(kind="redirect", location="/api/v1/accounts/acc_00001/health"))
    status, _, raw = await fetch(url)
    assert (status, json.loads(raw)["accountId"]) == (200, "acc_00001")


async def test_claim_announces_800_mb_sends_20_bytes_and_closes(fifty: Simulator) -> None:
    fifty.inject(Fault(kind="claim"))
    reader, writer = await asyncio.open_connection("127.0.0.1", fifty.port)
    writer.write(
        f"GET /api/v1/accounts/health HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {DEFAULT_KEY}\r\n\r\n".encode()
    )
    raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closed
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nContent-Length: 800000000" in head
    assert body == (await fetch(f"{fifty.base_url}/accounts/health"))[2][:20]

    fifty.inject(Fault(kind="claim", size=1000, data=b'{"accounts": ['))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fifty.base_url}/accounts/health", headers=AUTH) as response,
    ):
        assert response.headers["Content-Length"] == "1000"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


@pytest.mark.parametrize("chunked", [True, False])
async def test_huge_streams_a_valid_body_of_exactly_the_size(
    fifty: Simulator, chunked: bool
) -> None:
    size = 3 * 1024 * 1024 + 17
    fifty.inject(Fault(kind="huge", size=size, chunked=chunked))
    status, headers, raw = await fetch(f"{fifty.base_url}/accounts/health")
    assert (status, len(raw)) == (200, size)
    if chunked:
        assert headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in headers
    else:
        assert headers["Content-Length"] == str(size)
    body = json.loads(raw)
    assert body["summary"]["total"] == len(body["accounts"]) > 10_000
    assert corpus.check(body, corpus.schema("health")) == []


async def test_huge_default_is_50_mib(fifty: Simulator) -> None:
    fifty.inject(Fault(kind="huge"))
    total = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fifty.base_url}/accounts/health", headers=AUTH) as response,
    ):
        async for chunk in response.content.iter_chunked(1 << 20):
            total += len(chunk)
    assert total == 50 * 1024 * 1024


async def test_echo_key_401_repeats_the_key_it_was_sent(fifty: Simulator) -> None:
    fifty.inject(Fault(kind="echo_key", count=2))
    status, _, raw = await fetch(f"{fifty.base_url}/accounts/health")
    body = json.loads(raw)
    assert status == 401
    assert body["message"] == f"Invalid API key: {DEFAULT_KEY}"
    assert body["details"]["authorization"] == f"Bearer {DEFAULT_KEY}"
    odd = 'sk_"quoted"\\key'
    _, _, raw = await fetch(f"{fifty.base_url}/accounts/health", headers={"Authorization": odd})
    assert json.loads(raw)["details"]["authorization"] == odd
    assert fifty.authorizations[-2:] == [f"Bearer {DEFAULT_KEY}", odd]


# -- scenarios -------------------------------------------------------------------------------


def _scenario(tmp_path: Path) -> Path:
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "null.json").write_bytes(corpus.health_body("accounts_null"))
    (tmp_path / "bodies" / "page.html").write_bytes(corpus.health_body("html_error_page"))
    path = tmp_path / "scenario.toml"
    path.write_text(
        """accounts = 5
[[change]]
at = "1s"
account = "acc_00001"
label = "raw"
raw = { status = "suspended", messagingRestriction = { restricted = true } }
null = ["username"]
unset = ["canPost"]
raw_detail = { integrationLane = "direct" }
null_detail = ["tokenStatus"]
[[change]]
at = "2s"
label = "whole body"
body_file = "bodies/null.json"
[[change]]
at = "3s"
label = "clear"
clear_body = true
clear_raw = true
[[change]]
at = "4.5s"
label = "one-off page"
fault = "body"
body_file = "bodies/page.html"
content_type = "text/html"
status_code = 502
[[change]]
at = "5s"
label = "redirect"
fault = "redirect"
status_code = 308
location = "/api/v1/accounts/acc_00002/health"
""",
        encoding="utf-8",
    )
    return path


async def test_scenario_changes_apply_raw_null_unset_and_bodies(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    sim = scenario.simulator()
    await sim.start()
    try:
        changes = sorted(scenario.changes, key=lambda c: c.at)
        normal = by_id(await health(sim))["acc_00001"]

        apply_change(sim, changes[0])
        entry = by_id(await health(sim))["acc_00001"]
        expected = {**normal, "status": "suspended", "username": None}
        expected["messagingRestriction"] = {"restricted": True}
        del expected["canPost"]
        assert entry == expected
        _, _, raw = await fetch(f"{sim.base_url}/accounts/acc_00001/health")
        detail = json.loads(raw)
        assert (detail["integrationLane"], detail["tokenStatus"]) == ("direct", None)

        apply_change(sim, changes[1])
        for _ in range(2):
            assert (await fetch(f"{sim.base_url}/accounts/health"))[2] == corpus.health_body(
                "accounts_null"
            )

        apply_change(sim, changes[2])
        assert by_id(await health(sim))["acc_00001"] == normal

        apply_change(sim, changes[3])
        status, headers, raw = await fetch(f"{sim.base_url}/accounts/health")
        assert (status, headers["Content-Type"]) == (502, "text/html")
        assert raw == corpus.health_body("html_error_page")
        assert len((await health(sim))["accounts"]) == 5

        apply_change(sim, changes[4])
        status, headers, _ = await fetch(f"{sim.base_url}/accounts/health", allow_redirects=False)
        assert (status, headers["Location"]) == (308, "/api/v1/accounts/acc_00002/health")
    finally:
        await sim.stop()


async def test_scenario_plays_each_change_at_its_time_on_an_injected_clock(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    sim = scenario.simulator()
    now = [100.0]
    applied: list[tuple[float, str]] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    await scenario.play(
        sim,
        on_change=lambda change: applied.append((now[0] - 100, change.label)),
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert applied == [
        (1.0, "raw"),
        (2.0, "whole body"),
        (3.0, "clear"),
        (4.5, "one-off page"),
        (5.0, "redirect"),
    ]
    assert [f.kind for f in sim.faults] == ["body", "redirect"]
    assert sim.served == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('raw = { status = "x" }', "raw keys need an 'account'"),
        ('account = "acc_00000"\nunset = "canPost"', "unset: a list of key names"),
        ('account = "acc_00000"\nunsett = ["canPost"]', "unknown key 'unsett'"),
        ('body_file = "nowhere.json"', "body_file: cannot read"),
        ('fault = "teapot"', "fault kind 'teapot'"),
    ],
)
def test_scenario_mistakes_are_config_errors(tmp_path: Path, change: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'accounts = 1\n[[change]]\nat = "1s"\n{change}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)


async def test_scheduled_posts_are_listed_by_date_and_page_as_the_openapi_document_says(
    fifty: Simulator,
) -> None:
    from datetime import UTC, datetime, timedelta

    day = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for hours in range(0, 120, 4):  # 30 posts over five days
        fifty.add_post("acc_00001", day + timedelta(hours=hours))
    base = f"{fifty.base_url}/posts?status=scheduled&dateFrom=2026-03-02&dateTo=2026-03-03"
    status, _, body = await fetch(base + "&limit=5&page=2&sortBy=scheduled-asc")
    assert status == 200
    page = json.loads(body)
    assert page["pagination"] == {"page": 2, "limit": 5, "total": 12, "pages": 3}
    assert page["posts"][0]["scheduledFor"] == "2026-03-02T20:00:00Z"
    target = page["posts"][0]["platforms"][0]
    assert target["accountId"]["_id"] == "acc_00001"
    assert (await fetch(base + "&limit=101"))[0] == 400
    assert (await fetch(base, headers={}))[0] == 401


async def test_connect_gives_an_auth_url_whose_page_reconnects_the_account(
    fifty: Simulator,
) -> None:
    fifty.break_account("acc_00001")
    account = fifty.accounts["acc_00001"]
    status, _, body = await fetch(
        f"{fifty.base_url}/connect/{account.platform}?profileId={account.profile_id}"
    )
    assert status == 200
    auth_url = json.loads(body)["authUrl"]
    assert (await fetch(f"{fifty.base_url}/connect/{account.platform}"))[0] == 400
    assert (await fetch(f"{fifty.base_url}/connect/whatsapp?profileId=p"))[0] == 400
    assert (await fetch(auth_url, headers={}))[0] == 200
    assert not account.needs_reconnect
