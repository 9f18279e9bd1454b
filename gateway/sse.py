"""Server-sent events: framing, the stream response, and watching for the client leaving.

Chat and legacy completions send ``data: {json}`` events ending in ``data: [DONE]``; the
Responses API sends named events (``event: response.output_text.delta``). The response
token travels in a comment (``: attestation-token ...``) that every SSE parser skips, or
in a payload an endpoint chooses (``gateway.signing``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.attestation.token import STREAM_TOKEN_COMMENT
from gateway.pii.detector import CancelToken

T = TypeVar("T")

SSE_DONE = b"data: [DONE]\n\n"


def json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sse_event(payload: dict[str, Any], name: str | None = None) -> bytes:
    """One event; ``name`` sets its ``event:`` line (the Responses API names every event)."""
    head = b"event: " + name.encode("ascii") + b"\n" if name else b""
    return head + b"data: " + json_bytes(payload) + b"\n\n"


def token_comment(token: str) -> bytes:
    return STREAM_TOKEN_COMMENT + token.encode("ascii") + b"\n\n"


class SSEResponse(StreamingResponse):
    """A stream whose upstream is released even if the body iterator never starts."""

    def __init__(self, content: AsyncIterator[bytes], resources: AsyncExitStack) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._resources.aclose()


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, cancel: CancelToken) -> None:
    await until_disconnected(request)
    cancel.cancel()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``work``; if the client leaves first, cancel it (closing its upstream request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return True, task.result()
        return False, None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
