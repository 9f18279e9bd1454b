"""Every response carries ``x-request-id``: always one the gateway made (``req_<hex>``).

The gateway's own id is what logs, spans, the response token's ``jti`` fallback and the
upstream's ``x-request-id`` header carry. A client's id is a client string (it may be an
SSN-shaped value), so it never goes there: a well-formed ``x-client-request-id`` (or, for
clients that send their own ``x-request-id``, that) is echoed back to the client only, as
``x-client-request-id``, for correlation on its side.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.telemetry import request_id_var

# Strict on purpose: the echo goes into a header, so no CR/LF or odd bytes.
WELL_FORMED = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
HEADER = "x-request-id"
CLIENT_HEADER = "x-client-request-id"


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


def client_request_id(scope: Scope) -> str | None:
    """The client's own well-formed id, preferring ``x-client-request-id``; else None."""
    sent: dict[bytes, str] = {}
    for name, value in scope.get("headers", []):
        if name in (CLIENT_HEADER.encode(), HEADER.encode()) and name not in sent:
            sent[name] = value.decode("latin-1")
    for name in (CLIENT_HEADER.encode(), HEADER.encode()):
        value = sent.get(name)
        if value is not None and WELL_FORMED.match(value):
            return value
    return None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        echo = client_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = request_id
                if echo is not None:
                    headers[CLIENT_HEADER] = echo
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
