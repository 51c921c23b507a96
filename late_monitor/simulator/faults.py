"""Faults the simulator injects: what a request gets instead of its normal answer, on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

# Each kind's status when a Fault does not set one.
KIND_STATUS = {
    "status": 500,
    "hang": 500,
    "drop": 500,
    "truncate": 200,
    "empty": 200,
    "shape": 200,
    "body": 200,
    "redirect": 302,
    "claim": 200,
    "huge": 200,
    "echo_key": 401,
}
_DEFAULT_BODY = '{"error": "Internal server error"}'
ECHO_KEY_BODY = (
    '{"error": "Unauthorized", "message": "Invalid API key: {key}",'
    ' "details": {"authorization": "{authorization}"}}'
)
HUGE_SIZE = 50 * 1024 * 1024
CLAIM_SIZE = 800_000_000
_CHUNK = 256 * 1024


@dataclass
class Fault:
    """What the next `count` requests whose path contains `path` get instead of a normal answer.

    kind:
      "status"   `status` (500) with `body`, `content_type` and `headers`
      "hang"     no answer for `delay` s (default an hour), then as "status"
      "drop"     the connection is closed without an answer
      "truncate" the first half of the normal health body, 200
      "empty"    a valid body with no accounts
      "shape"    valid JSON of the wrong shape: {"data": {"items": [ids]}}
      "body"     `data` (else `body`) verbatim with `status` (200) and exactly `content_type`
      "redirect" `status` (302; 301, 307, 308 likewise) with `Location: location`; an empty
                 `location` is the request's own path and query on the same host (the next
                 request, once `count` is used up, is answered normally), "/..." another path
                 on the same host, "http://host:port/..." another host or port
      "claim"    headers with `Content-Length: size` (800,000,000), then only `data` (else the
                 first 20 bytes of the normal body), then the connection is closed
      "huge"     a valid health body of exactly `size` bytes (50 MiB), streamed in chunks;
                 `chunked=False` sends a true Content-Length instead of chunked encoding
      "echo_key" `status` (401) with `body` (ECHO_KEY_BODY) in which "{key}" and
                 "{authorization}" become the request's key and Authorization header
    """

    kind: str = "status"
    status: int = 0  # 0: the kind's usual status (KIND_STATUS)
    body: str = ""  # "": '{"error": "Internal server error"}' (echo_key: ECHO_KEY_BODY; body: "")
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    count: int = 1
    path: str = ""  # only requests whose path contains this
    data: bytes = b""  # body, claim: bytes to send as they are
    location: str = ""  # redirect
    size: int = 0  # huge: body size; claim: the Content-Length claimed
    chunked: bool = True  # huge

    def __post_init__(self) -> None:
        if self.kind not in KIND_STATUS:
            raise ValueError(f"fault kind {self.kind!r}: one of {', '.join(KIND_STATUS)}")
        self.status = self.status or KIND_STATUS[self.kind]
        if not self.body and self.kind != "body":
            self.body = ECHO_KEY_BODY if self.kind == "echo_key" else _DEFAULT_BODY


async def answer(
    fault: Fault,
    request: web.Request,
    headers: dict[str, str],
    normal: Callable[[], bytes],
) -> web.StreamResponse:
    """The response `fault` stands for; `normal()` is the health body the request would get."""
    if fault.kind == "hang":
        await asyncio.sleep(fault.delay or 3600)
    if fault.kind in ("drop", "claim"):
        assert request.transport is not None  # aiohttp gives every live request a transport
        if fault.kind == "claim":
            request.transport.write(_claim(fault, headers, fault.data or normal()[:20]))
        request.transport.close()
        return web.Response(status=500)
    if fault.kind == "truncate":
        whole = normal()
        return web.Response(
            body=whole[: len(whole) // 2], content_type="application/json", headers=headers
        )
    if fault.kind == "empty":
        summary = dict.fromkeys(("total", "healthy", "warning", "error", "needsReconnect"), 0)
        return web.json_response({"summary": summary, "accounts": []}, headers=headers)
    if fault.kind == "shape":
        ids = [entry.get("accountId") for entry in json.loads(normal())["accounts"][:3]]
        return web.json_response({"data": {"items": ids}}, headers=headers)
    if fault.kind == "body":
        return verbatim(fault, headers)
    if fault.kind == "redirect":
        location = fault.location or str(request.rel_url)
        return web.Response(
            status=fault.status,
            text=f"Redirecting to {location}",
            headers={**headers, **fault.headers, "Location": location},
        )
    if fault.kind == "huge":
        return await _huge(fault, request, headers)
    body = fault.body
    if fault.kind == "echo_key":
        authorization = request.headers.get("Authorization", "")
        key = authorization.removeprefix("Bearer ").strip()
        body = body.replace("{key}", _in_json(key))
        body = body.replace("{authorization}", _in_json(authorization))
    return web.Response(
        status=fault.status,
        text=body,
        content_type=fault.content_type,
        headers={**headers, **fault.headers},
    )


def verbatim(fault: Fault, headers: dict[str, str]) -> web.Response:
    """`fault.data` (else `fault.body`) byte for byte, with exactly `fault.content_type`."""
    extra = {"Content-Type": fault.content_type} if fault.content_type else {}
    return web.Response(
        status=fault.status,
        body=fault.data or fault.body.encode(),
        headers={**headers, **fault.headers, **extra},
    )


def _in_json(text: str) -> str:
    """`text` escaped to sit inside a JSON string."""
    return json.dumps(text)[1:-1]


def _claim(fault: Fault, headers: dict[str, str], data: bytes) -> bytes:
    lines = [
        f"HTTP/1.1 {fault.status} {HTTPStatus(fault.status).phrase}",
        f"Content-Type: {fault.content_type}",
        f"Content-Length: {fault.size or CLAIM_SIZE}",
        *(f"{name}: {value}" for name, value in {**headers, **fault.headers}.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def huge_parts(size: int) -> tuple[bytes, bytes, bytes, int]:
    """(head, entry template with one %d, tail, count) for a health body of exactly `size`."""
    entry = (
        b'{"accountId": "huge_%08d", "platform": "twitter", "username": "@huge",'
        b' "status": "healthy", "canPost": true, "canFetchAnalytics": true,'
        b' "tokenValid": true, "needsReconnect": false, "issues": []}'
    )
    one = len(entry % 0)
    tail = b"]}"

    def head(count: int) -> bytes:
        return (
            b'{"summary": {"total": %d, "healthy": %d, "warning": 0, "error": 0,'
            b' "needsReconnect": 0}, "accounts": [' % (count, count)
        )

    count = max((size - len(head(0)) - len(tail) - 16 + 1) // (one + 1), 0)
    return head(count), entry, tail, count


async def _huge(fault: Fault, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    size = fault.size or HUGE_SIZE
    head, entry, tail, count = huge_parts(size)
    pad = max(size - len(head) - len(tail) - count * (len(entry % 0) + 1) + (1 if count else 0), 0)
    response = web.StreamResponse(status=fault.status, headers={**headers, **fault.headers})
    response.content_type = "application/json"
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(head) + count * (len(entry % 0) + 1) - (1 if count else 0)
        response.content_length += len(tail) + pad
    await response.prepare(request)
    chunk = bytearray(head)
    for index in range(count):
        if index:
            chunk += b","
        chunk += entry % index
        if len(chunk) >= _CHUNK:
            await response.write(bytes(chunk))
            chunk.clear()
    chunk += tail + b" " * pad
    await response.write(bytes(chunk))
    await response.write_eof()
    return response
