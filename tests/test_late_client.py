"""The Late client against the simulator on loopback: answers, faults, retries, budget."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from late_monitor.errors import ApiUnavailable, AuthRejected, BadPayload, LateApiError
from late_monitor.health_list import parse_health
from late_monitor.late import SMALL_BODY, LateClient, RequestBudget
from late_monitor.models import parse_detail
from late_monitor.simulator import DEFAULT_KEY, Fault, Simulator, make_accounts

SEED_EXAMPLE = b"""{"summary":{"total":2,"healthy":1,"warning":0,"error":1,"needsReconnect":1},
"accounts":[{"accountId":"abc123","platform":"instagram","username":"myaccount","status":"healthy",
"canPost":true,"canFetchAnalytics":true,"tokenValid":true,"tokenExpiresAt":"2025-06-15T00:00:00Z",
"needsReconnect":false,"issues":[]},{"accountId":"def456","platform":"twitter",
"username":"mytwitter","status":"error","canPost":false,"canFetchAnalytics":false,
"tokenValid":false,"needsReconnect":true,"issues":["Token expired"]}]}"""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(path: str, handler: Handler) -> AsyncIterator[str]:
    """A server on 127.0.0.1 answering GET `path` (under /api/v1) with `handler`: its base URL."""
    app = web.Application()
    app.router.add_get(f"/api/v1{path}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"
    finally:
        await runner.cleanup()


def client(sim: Simulator, **kw: object) -> LateClient:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_requests_per_minute", 600)
    return LateClient(api_key=DEFAULT_KEY, base_url=sim.base_url, **kw)  # type: ignore[arg-type]


def test_the_seed_example_parses_with_missing_expiry_and_extra_fields() -> None:
    body = SEED_EXAMPLE.replace(b'"issues":[]}', b'"issues":[],"newField":{"x":1}}')
    snapshot = parse_health(body)
    assert snapshot.accounts["abc123"].token_expires_at is not None
    assert snapshot.accounts["def456"].token_expires_at is None
    assert snapshot.accounts["def456"].needs_reconnect is True
    assert snapshot.accounts["def456"].issues == ("Token expired",)


def test_unknown_status_and_platform_are_kept_verbatim() -> None:
    body = json.dumps(
        {"accounts": [{"accountId": "x", "platform": "mastodon", "status": "degraded_mode"}]}
    ).encode()
    account = parse_health(body).accounts["x"]
    assert (account.platform, account.status) == ("mastodon", "degraded_mode")


def test_detail_lists_required_scopes_not_granted() -> None:
    body = json.dumps(
        {
            "accountId": "a",
            "permissions": {
                "posting": [
                    {"scope": "p1", "granted": False, "required": True},
                    {"scope": "p2", "granted": True, "required": True},
                ],
                "analytics": [
                    {"scope": "s1", "granted": False, "required": True},
                    {"scope": "s2", "granted": False, "required": False},
                ],
                "missingRequired": ["p1"],
            },
            "recommendations": ["Reconnect"],
        }
    ).encode()
    detail = parse_detail(body)
    assert detail.missing_posting == ("p1",)
    assert detail.missing_analytics == ("s1", "s2")  # analytics counts even when "not required"
    assert detail.recommendations == ("Reconnect",)


async def test_health_and_detail_from_the_simulator(sim: Simulator) -> None:
    sim.set("acc_00001", revoked={"instagram_content_publish"})
    async with client(sim) as late:
        snapshot = await late.health()
        detail = await late.account_health("acc_00001")
    assert sorted(snapshot.accounts) == [f"acc_0000{i}" for i in range(5)]
    assert detail.missing_posting == ("instagram_content_publish",)


async def test_filters_by_profile_and_several_platforms(sim: Simulator) -> None:
    async with client(sim) as late:
        one = await late.health(platforms=("twitter",))
        two = await late.health(platforms=("twitter", "instagram"))
        profile = await late.health(profile_id="prof_2")
    assert [a.platform for a in one.accounts.values()] == ["twitter"]
    assert sorted(a.platform for a in two.accounts.values()) == ["instagram", "twitter"]
    assert {a.profile_id for a in profile.accounts.values()} == {"prof_2"}


async def test_500s_are_retried_three_times_then_unavailable(sim: Simulator) -> None:
    sim.inject(Fault(status=500, count=5))
    async with client(sim) as late:
        with pytest.raises(ApiUnavailable, match="HTTP 500 Internal server error"):
            await late.health()
    assert sim.count("/accounts/health") == 3


async def test_502_html_page_is_a_clear_error(sim: Simulator) -> None:
    sim.inject(
        Fault(
            status=502,
            body="<html><body>Bad gateway</body></html>",
            content_type="text/html",
            count=3,
        )
    )
    async with client(sim) as late:
        with pytest.raises(ApiUnavailable, match="HTTP 502"):
            await late.health()


async def test_hang_past_the_timeout_is_unavailable(sim: Simulator) -> None:
    sim.inject(Fault(kind="hang", delay=30, count=3))
    started = time.monotonic()
    async with client(sim, timeout=0.5) as late:
        with pytest.raises(ApiUnavailable, match=r"no answer within 0.5s"):
            await late.health()
    assert time.monotonic() - started < 5


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    late = LateClient(api_key="k", base_url=f"http://127.0.0.1:{port}/api/v1", backoff=0.01)
    async with late:
        with pytest.raises(ApiUnavailable, match="cannot connect"):
            await late.health()


async def test_truncated_json_is_bad_payload_with_an_excerpt(sim: Simulator) -> None:
    sim.inject(Fault(kind="truncate"))
    async with client(sim) as late:
        with pytest.raises(BadPayload, match=r"HTTP 200: .*body starts: '\{\"summary\""):
            await late.health()


async def test_json_of_the_wrong_shape_is_bad_payload(sim: Simulator) -> None:
    sim.inject(Fault(kind="shape"))
    async with client(sim) as late:
        with pytest.raises(BadPayload, match="accounts: Field required"):
            await late.health()


async def test_401_raises_auth_rejected_without_retrying(sim: Simulator) -> None:
    sim.api_key = "another"
    async with client(sim) as late:
        with pytest.raises(AuthRejected, match="HTTP 401 Unauthorized"):
            await late.health()
    assert sim.count() == 1


async def test_404_detail_is_an_api_error(sim: Simulator) -> None:
    async with client(sim) as late:
        with pytest.raises(LateApiError, match="HTTP 404 Not found"):
            await late.account_health("nope")


async def test_429_waits_for_retry_after_then_succeeds(sim: Simulator) -> None:
    sim.inject(
        Fault(status=429, body='{"error": "Rate limit exceeded"}', headers={"Retry-After": "1"})
    )
    started = time.monotonic()
    async with client(sim) as late:
        snapshot = await late.health()
    assert len(snapshot.accounts) == 5
    assert 0.9 <= time.monotonic() - started < 5
    assert sim.count("/accounts/health") == 2


async def test_remaining_zero_pauses_until_the_reset_time(sim: Simulator) -> None:
    reset = int(time.time()) + 2
    sim.inject(
        Fault(
            status=200,
            body='{"accounts": []}',
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        )
    )
    async with client(sim) as late:
        await late.health()
        await late.health()
    seen = [t for t, path, _ in sim.requests if path.endswith("/accounts/health")]
    assert seen[1] >= reset - 0.05


async def paced(per_minute: int, count: int) -> list[float]:
    """When each of `count` requests went out under a budget of `per_minute`, on a fake
    clock that each wait moves on (a wait of 0 s again and again fails: a spin)."""
    clock, waits = [0.0], [0]

    async def fake_sleep(seconds: float) -> None:
        waits[0] += 1
        assert waits[0] < 10 * count + 100, "the budget spins"
        clock[0] += seconds

    budget = RequestBudget(per_minute, clock=lambda: clock[0], wall=lambda: 1e9, sleep=fake_sleep)
    sent = []
    for _ in range(count):
        await budget.acquire()
        sent.append(clock[0])
    return sent


def busiest_minute(sent: list[float]) -> int:
    return max(sum(1 for t in sent if start <= t < start + 60) for start in sent)


async def test_budget_never_exceeds_its_rate_in_any_minute_and_keeps_pace() -> None:
    sent = await paced(60, 300)
    assert busiest_minute(sent) <= 60
    # 300 requests at 60/min: the first 60 s window holds 60, then one a second: 240 s + 60
    assert 240 <= sent[-1] <= 300 * 1.05


@pytest.mark.parametrize("per_minute", [1, 7, 59, 61, 479, 481])
async def test_a_budget_whose_rate_is_not_a_round_number_never_spins(per_minute: int) -> None:
    """The minute's log let a send go when `sent + 60 - now` said wait 0 s but `sent <=
    now - 60` said not yet (floats round differently): the budget waited 0 s, forever."""
    sent = await paced(per_minute, 3 * per_minute)
    assert busiest_minute(sent) <= per_minute
    assert sent[-1] <= 3 * 60 + 10


async def test_paced_requests_go_out_a_seconds_worth_at_a_time() -> None:
    """At 1,200/min: the bucket's 200 at once, then 20 at each wake-up, one a second (not 8
    every 0.4 s: each wake-up costs CPU), at the budget's rate."""
    sent = await paced(1200, 500)
    wakes = Counter(round(t, 6) for t in sent)
    assert wakes[0.0] == 200
    assert sorted(wakes.values())[:-1] == [20] * 15  # 300 more, in 15 wake-ups
    assert sent[-1] == pytest.approx(15.0)
    assert busiest_minute(sent) <= 1200


@pytest.mark.parametrize("encoding", ["content-length", "gzip", "chunked"])
async def test_a_large_body_reads_the_same_however_it_is_sent(encoding: str) -> None:
    body = json.dumps({"accounts": [a.summary() for a in make_accounts(2500)]}).encode()

    async def health(request: web.Request) -> web.StreamResponse:
        if encoding == "chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(body), 50_000):
                await response.write(body[start : start + 50_000])
            await response.write_eof()
            return response
        response = web.Response(body=body, content_type="application/json")
        if encoding == "gzip":
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async with (
        serving("/accounts/health", health) as base_url,
        LateClient(api_key=DEFAULT_KEY, base_url=base_url) as late,
    ):
        snapshots = [await late.health() for _ in range(3)]  # parsed, then remembered

    assert len(body) > 600_000
    expected = dict(parse_health(body, batch_bytes=len(body) + 1).accounts)
    assert all(dict(s.accounts) == expected for s in snapshots)


async def test_a_small_compressed_body_is_held_to_the_cap_as_it_decodes() -> None:
    """A detail's body is read in one go when Content-Length says it is small, unless it is
    compressed: 16 KB of gzip decode to 16 MB (Brotli: 1 KB to 500 MB), and what it decodes
    to is held to late.max_body_mb chunk by chunk, never decoded whole first."""
    inflated = b'{"accountId": "acc_1", "pad": "' + b"0" * (16 << 20) + b'"}'
    packed = gzip.compress(inflated, compresslevel=9)

    async def detail(request: web.Request) -> web.Response:
        return web.Response(
            body=packed, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    async with serving("/accounts/{id}/health", detail) as base_url:
        tracemalloc.start()
        try:
            async with LateClient(
                api_key=DEFAULT_KEY, base_url=base_url, max_body=1 << 20, attempts=1
            ) as late:
                with pytest.raises(BadPayload, match=r"over late.max_body_mb \(1 MB\)"):
                    await late.account_health("acc_1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(packed) < SMALL_BODY
    assert peak < 8 << 20  # decoded whole first, it held ~48 MB


async def test_a_huge_content_length_claim_is_refused_before_anything_is_allocated(
    sim: Simulator,
) -> None:
    sim.inject(Fault(kind="claim", size=800_000_000, path="/accounts/health"))
    tracemalloc.start()
    try:
        async with client(sim, attempts=1) as late:
            with pytest.raises(BadPayload, match=r"announced a body of 800 MB, over"):
                await late.health()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # 800 MB were claimed; nothing near that was reserved


async def test_a_claim_under_the_cap_allocates_only_what_arrives(sim: Simulator) -> None:
    sim.inject(Fault(kind="claim", size=100_000_000, path="/accounts/health"))
    tracemalloc.start()
    try:
        async with client(sim, attempts=1) as late:
            with pytest.raises(ApiUnavailable, match="cut short"):
                await late.health()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


async def test_a_body_over_the_cap_is_refused_as_it_streams(sim: Simulator) -> None:
    sim.inject(Fault(kind="huge", size=3 << 20, chunked=True, path="/accounts/health"))
    async with client(sim, attempts=1, max_body=1 << 20) as late:
        with pytest.raises(BadPayload, match=r"over late.max_body_mb \(1 MB\)"):
            await late.health()
    sim.inject(Fault(kind="huge", size=3 << 20, path="/accounts/health"))
    async with client(sim, attempts=1, max_body=4 << 20) as late:
        snapshot = await late.health()
    assert len(snapshot.accounts) > 1000  # under the cap: read as usual
