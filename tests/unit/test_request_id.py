"""The gateway's own request id goes everywhere; a client's id is only echoed back."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.request_id import RequestIdMiddleware, request_id_of


def call(headers: list[tuple[bytes, bytes]]) -> tuple[str, dict[bytes, bytes]]:
    seen: dict[str, str] = {}
    sent: dict[bytes, bytes] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["id"] = request_id_of(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            sent.update(dict(message["headers"]))

    scope = {"type": "http", "headers": headers}
    asyncio.run(RequestIdMiddleware(app)(scope, None, send))  # type: ignore[arg-type]
    return seen["id"], sent


def test_ssn_shaped_request_id_is_never_used_and_only_echoed_to_the_client() -> None:
    own, headers = call([(b"x-request-id", b"123-45-6789")])
    assert own.startswith("req_") and "123-45-6789" not in own
    assert headers[b"x-request-id"].decode() == own
    assert headers[b"x-client-request-id"] == b"123-45-6789"


def test_client_request_id_header_is_preferred_and_malformed_ids_are_dropped() -> None:
    _, headers = call([(b"x-request-id", b"a"), (b"x-client-request-id", b"b")])
    assert headers[b"x-client-request-id"] == b"b"
    _, headers = call([(b"x-request-id", b"bad id\r\n")])
    assert b"x-client-request-id" not in headers
