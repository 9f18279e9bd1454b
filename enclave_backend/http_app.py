"""The engine's HTTP face: OpenAI-compatible routes on Starlette.

Streams are Server-Sent Events. A client that disconnects cancels its generation: for
streams, Starlette cancels the body iterator; for plain requests a watcher on the
connection does it. Either way the scheduler drops the sequence before its next step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from confidential_common.errors import APIError as GatewayError
from confidential_common.errors import bad_request, from_validation_error
from enclave_backend.choices import GenerationFailed
from enclave_backend.completion_protocol import CompletionRequest
from enclave_backend.completions import ChatCompletions
from enclave_backend.legacy_completions import LegacyCompletions
from enclave_backend.protocol import ChatCompletionRequest
from enclave_backend.scheduler import SlotScheduler

log = logging.getLogger("enclave_backend.http")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
NONCE_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){8,64}$")
# Set by the gateway on every request: an opaque id of the API key and its scheduling weight.
# Without them a request belongs to the anonymous tenant "" with weight 1.
TENANT_HEADER = "x-gateway-tenant"
TENANT_WEIGHT_HEADER = "x-gateway-tenant-weight"
TENANT_ID = re.compile(r"^[0-9a-f]{32}$")
TENANT_WEIGHT = re.compile(r"^[0-9]{1,3}$")
MAX_TENANT_WEIGHT = 100


def sse_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


SSE_DONE = b"data: [DONE]\n\n"


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"Request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    return parse_body(ChatCompletionRequest, body)


def parse_body(model: type[M], body: bytes) -> M:
    """The request body validated as ``model``; OpenAI's 400 naming what is wrong."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid" and "recursion limit" in first["msg"]:
            raise bad_request(
                "The JSON body of your request is nested too deeply.", code="invalid_json"
            ) from None
        raise from_validation_error(exc) from None


def tenant_of(request: Request) -> tuple[str, int]:
    """The request's tenant id and weight from the gateway's headers; 400 when malformed."""
    tenant = request.headers.get(TENANT_HEADER, "")
    if tenant and not TENANT_ID.match(tenant):
        raise bad_request(
            f"The {TENANT_HEADER} header must be 32 lowercase hexadecimal characters.",
            param=TENANT_HEADER,
            code="invalid_header",
        )
    raw = request.headers.get(TENANT_WEIGHT_HEADER)
    if raw is None:
        return tenant, 1
    if not TENANT_WEIGHT.match(raw) or not 1 <= int(raw) <= MAX_TENANT_WEIGHT:
        raise bad_request(
            f"The {TENANT_WEIGHT_HEADER} header must be an integer from 1 to {MAX_TENANT_WEIGHT}.",
            param=TENANT_WEIGHT_HEADER,
            code="invalid_header",
        )
    return tenant, int(raw)


async def until_disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work``; cancel it and return None if the client goes away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        return None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


def generation_failed(exc: GenerationFailed) -> GatewayError:
    return GatewayError(
        500, f"The engine could not complete the request: {exc}", type="server_error"
    )


def sse_response(
    chunks: AsyncIterator[dict[str, Any]], cancel: Callable[[], None]
) -> StreamingResponse:
    """Stream ``chunks`` as Server-Sent Events; ``cancel`` frees the choices at the end,
    whether the stream finished or the client went away."""

    async def events() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield sse_event(chunk)
            yield SSE_DONE
        except GenerationFailed as exc:
            # Headers are gone: report in-band, and never end with [DONE] as if complete.
            yield sse_event(generation_failed(exc).body())
        finally:
            cancel()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def answer(
    request: Request, result: Awaitable[dict[str, Any]], cancel: Callable[[], None]
) -> Response:
    """The whole answer as JSON; 499 when the client went away first (choices cancelled)."""
    try:
        body = await unless_disconnected(request, result)
    except GenerationFailed as exc:
        raise generation_failed(exc) from None
    finally:
        cancel()  # no-op for finished sequences; frees the slot otherwise
    if body is None:
        return Response(status_code=499)
    return JSONResponse(body)


class EngineApp:
    """Routes bound to the chat and legacy completion services and their scheduler."""

    def __init__(
        self,
        completions: ChatCompletions,
        scheduler: SlotScheduler,
        *,
        legacy_completions: LegacyCompletions,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        on_ready: Callable[[], None] | None = None,
        attestation: Callable[[str | None], dict[str, Any]] | None = None,
        sealed: dict[str, str] | None = None,
    ) -> None:
        self._attestation = attestation
        self._sealed = sealed  # /health: a sealed model's file hash, key id and broker
        self._completions = completions
        self._legacy = legacy_completions
        self._scheduler = scheduler
        self._max_body = max_body_bytes
        self._on_ready = on_ready

    def build(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self._scheduler.start(asyncio.get_running_loop())
            if self._on_ready is not None:
                self._on_ready()
            try:
                yield
            finally:
                await asyncio.to_thread(self._scheduler.stop)

        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                *(
                    [Route("/v1/attestation", self.attestation, methods=["GET"])]
                    if self._attestation
                    else []
                ),
            ],
            exception_handlers={
                GatewayError: _api_error,
                HTTPException: _http_exception,
                Exception: _unexpected,
            },
            lifespan=lifespan,
        )

    async def chat_completions(self, request: Request) -> Response:
        tenant, weight = tenant_of(request)
        chat = parse_chat_request(await read_body(request, self._max_body))
        submission = self._completions.submit(chat, tenant=tenant, weight=weight)
        if chat.stream:
            chunks = self._completions.stream(submission, include_usage=chat.include_usage())
            return sse_response(chunks, submission.cancel)
        return await answer(request, self._completions.complete(submission), submission.cancel)

    async def completions(self, request: Request) -> Response:
        tenant, weight = tenant_of(request)
        body = parse_body(CompletionRequest, await read_body(request, self._max_body))
        submission = self._legacy.submit(body, tenant=tenant, weight=weight)
        if body.stream:
            chunks = self._legacy.stream(submission, include_usage=body.include_usage())
            return sse_response(chunks, submission.cancel)
        return await answer(request, self._legacy.complete(submission), submission.cancel)

    async def attestation(self, request: Request) -> Response:
        assert self._attestation is not None
        nonce = request.query_params.get("nonce")
        if nonce is not None and not NONCE_HEX.match(nonce):
            raise bad_request("nonce must be 16 to 128 hexadecimal characters.", param="nonce")
        try:
            document = await asyncio.to_thread(self._attestation, nonce)
        except Exception as exc:  # the TEE interface failed; say so, do not guess
            log.error("attestation evidence unavailable: %s", type(exc).__name__)
            raise GatewayError(
                503,
                "Attestation evidence is unavailable.",
                type="server_error",
                code="attestation_unavailable",
            ) from None
        return JSONResponse(document)

    def _model_object(self) -> dict[str, Any]:
        return {
            "id": self._completions.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "enclave_backend",
        }

    async def models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model_object()]})

    async def model(self, request: Request) -> Response:
        if request.path_params["model_id"] != self._completions.model_name:
            raise GatewayError(
                404,
                f"The model does not exist; this engine serves '{self._completions.model_name}'.",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(self._model_object())

    async def health(self, _: Request) -> Response:
        stats = self._scheduler.stats()
        alive = self._scheduler.alive
        return JSONResponse(
            status_code=200 if alive else 503,
            content={
                "status": "ok" if alive else "decode loop stopped",
                "model": self._completions.model_name,
                "weights_sha256": self._completions.weights_sha256,
                "sealed": self._sealed,
                "slots": {
                    "total": stats.slots_total,
                    "busy": stats.slots_busy,
                    "free": stats.slots_total - stats.slots_busy,
                },
                "queue": {
                    "depth": stats.queue_depth,
                    "limit": stats.queue_limit,
                    "hard_limit": stats.queue_hard_limit,
                    # How many tenants wait, never which: ids stay out of /health.
                    "tenants_waiting": stats.tenants_waiting,
                },
                "prompt_cache": {
                    "hits": stats.prompt_cache_hits,
                    "tokens_reused": stats.prompt_tokens_reused,
                    "prefix_copies": stats.prefix_copies,
                },
                "requests": {
                    "completed": stats.requests_completed,
                    "cancelled": stats.requests_cancelled,
                },
                "decode_steps": stats.decode_steps,
            },
        )


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            GatewayError(
                404,
                "Unknown route. This engine serves /v1/chat/completions, /v1/completions, "
                "/v1/models, /v1/models/{model} and /health.",
                type="invalid_request_error",
            )
        )
    return error_response(GatewayError(exc.status_code, str(exc.detail)))


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("unhandled error: %s", type(exc).__name__)
    return error_response(
        GatewayError(500, "The engine hit an internal error.", type="server_error")
    )
