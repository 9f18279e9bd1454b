"""The gateway's HTTP surface: OpenAI routes wired to auth, validation and the pipeline.

listener -> request id -> auth -> body limit -> parse/validate -> authorize -> rate limit
         -> pipeline (stages, router, upstream) -> JSON or SSE
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.auth import APIKeyStore
from gateway.errors import GatewayError, from_validation_error, no_upstream, upstream_failed
from gateway.openapi import openapi_document
from gateway.pipeline import ChatExchange, ChatPipeline
from gateway.protocol import ChatCompletionRequest
from gateway.ratelimit import RateLimiter
from gateway.request_id import RequestIdMiddleware, request_id_of
from gateway.router import NoUpstream, Router
from gateway.upstream import UpstreamError

log = logging.getLogger("gateway.app")
T = TypeVar("T")

SSE_DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode("utf-8") + b"\n\n"


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def upstream_error(exc: UpstreamError | NoUpstream) -> GatewayError:
    """What the client sees when the routing layer gives up."""
    if isinstance(exc, NoUpstream):
        last = exc.last_error
        # Nobody reachable, or everybody overloaded: the client should simply retry later.
        if last is None or last.status in {429, 503} or (last.status is None and last.retryable):
            return no_upstream(exc.model)
        if last.status is None and "timed out" in str(last):
            return GatewayError(
                504, "The upstream timed out.", type="upstream_error", code="upstream_timeout"
            )
        return upstream_failed("The upstream failed to answer; nothing was generated.")
    if exc.client_error and exc.status is not None and exc.body is not None:
        error = exc.body["error"]
        return GatewayError(
            exc.status,
            str(error.get("message") or "The upstream rejected the request."),
            type=str(error.get("type") or "invalid_request_error"),
            param=error.get("param"),
            code=error.get("code"),
        )
    return upstream_failed("The upstream failed while answering.")


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


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``work``; if the client leaves first, cancel it (closing its upstream request)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_until_disconnected(request))
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


class GatewayApp:
    def __init__(
        self,
        *,
        keys: APIKeyStore,
        limiter: RateLimiter,
        router: Router,
        pipeline: ChatPipeline,
        max_body_bytes: int,
        version: str,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._router = router
        self._pipeline = pipeline
        self._max_body = max_body_bytes
        self._openapi = openapi_document(version)

    def build(self, lifespan: Any = None) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/ready", self.ready, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
            ],
            middleware=[Middleware(RequestIdMiddleware)],
            exception_handlers={
                GatewayError: _gateway_error,
                HTTPException: _http_exception,
                Exception: _unexpected,
            },
            lifespan=lifespan,
        )

    async def _read_body(self, request: Request) -> bytes:
        too_large = GatewayError(
            413,
            f"Request body is larger than the limit of {self._max_body} bytes.",
            code="request_too_large",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def chat_completions(self, request: Request) -> Response:
        key = self._keys.authenticate(request.headers.get("authorization"))
        body = await self._read_body(request)
        try:
            chat = ChatCompletionRequest.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        self._keys.authorize(key, chat.model, self._router.knows(chat.model))
        self._limiter.admit(key)
        exchange = ChatExchange(
            request_id=request_id_of(request.scope),
            key=key,
            body_bytes=body,
            request=chat,
            upstream_body=chat.upstream_body(chat.model),
        )
        if chat.streaming:
            return await self._stream(exchange)
        try:
            finished, completion = await unless_disconnected(
                request, self._pipeline.complete(exchange)
            )
        except (UpstreamError, NoUpstream) as exc:
            raise upstream_error(exc) from None
        if not finished or completion is None:
            return Response(status_code=499)
        return JSONResponse(completion)

    async def _stream(self, exchange: ChatExchange) -> Response:
        resources = AsyncExitStack()
        try:
            chunks = await resources.enter_async_context(self._pipeline.stream(exchange))
        except (UpstreamError, NoUpstream) as exc:
            await resources.aclose()
            raise upstream_error(exc) from None
        except BaseException:
            await resources.aclose()
            raise
        return SSEResponse(self._sse(chunks), resources)

    async def _sse(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield sse_event(chunk)
        except UpstreamError as exc:
            log.warning("stream failed after it started: %s", exc)
            # In-band error and no [DONE]: the client must not mistake this for a full answer.
            yield sse_event(upstream_error(exc).body())
            return
        yield SSE_DONE

    async def models(self, request: Request) -> Response:
        key = self._keys.authenticate(request.headers.get("authorization"))
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "confidential-gateway"}
            for name in self._router.groups
            if key.allows(name)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, _: Request) -> Response:
        models = self._router.ready()
        ready = all(models.values())
        return JSONResponse({"ready": ready, "models": models}, status_code=200 if ready else 503)

    async def openapi(self, _: Request) -> Response:
        return JSONResponse(self._openapi)


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = "Unknown route. The API lives under /v1 (for example /v1/chat/completions)."
    elif exc.status_code == 405:
        message = "Method not allowed for this route."
    else:
        message = str(exc.detail)
    return error_response(GatewayError(exc.status_code, message, code=None))


async def _unexpected(_: Request, exc: Exception) -> Response:
    # The type only: an exception's text may quote request content.
    log.error("unhandled %s", type(exc).__name__)
    return error_response(
        GatewayError(500, "The gateway hit an internal error.", type="server_error")
    )
