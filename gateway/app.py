"""The gateway's HTTP surface: OpenAI routes wired to auth, validation and the pipeline.

listener -> request id -> auth -> body limit -> parse/validate -> authorize -> rate limit
         -> pipeline (stages, router, upstream) -> JSON or SSE
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.attestation.providers import AttestationUnavailable
from gateway.attestation.service import (
    CLIENT_NONCE,
    NONCE_HEX,
    AttestationService,
    sha256_hex,
)
from gateway.attestation.token import STREAM_TOKEN_COMMENT, ResponseFacts
from gateway.auth import APIKeyStore, AuthFailureGuard
from gateway.config import APIKeyConfig
from gateway.errors import (
    GatewayError,
    bad_request,
    from_validation_error,
    no_upstream,
    parameter_shaped,
    upstream_failed,
)
from gateway.openapi import openapi_document
from gateway.pii.detector import CancelToken
from gateway.pii.recognizers.gazetteer import is_known_name
from gateway.pii.recognizers.names import handle_is_name
from gateway.pii.stage import CANCEL_NOTE
from gateway.pipeline import ChatExchange, ChatPipeline
from gateway.protocol import ChatCompletionRequest
from gateway.ratelimit import RateLimiter, estimate_prompt_tokens
from gateway.request_id import RequestIdMiddleware, request_id_of
from gateway.router import NoUpstream, Router
from gateway.telemetry import GatewayMetrics, genai_attributes, tracer
from gateway.upstream import Tenant, UpstreamError
from gateway.usage import total_tokens

log = logging.getLogger("gateway.app")
T = TypeVar("T")

SSE_DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode("utf-8") + b"\n\n"


def token_comment(token: str) -> bytes:
    return STREAM_TOKEN_COMMENT + token.encode("ascii") + b"\n\n"


def echoable_parameter(part: str) -> bool:
    """A parameter name the gateway may repeat: parameter-shaped and no person's name in it
    ("margaret_thornton" is a client's key, never an OpenAI parameter)."""
    return (
        parameter_shaped(part)
        and not handle_is_name(part)
        and not any(is_known_name(word) for word in part.split("_"))
    )


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def upstream_error(exc: UpstreamError | NoUpstream) -> GatewayError:
    """What the client sees when the routing layer gives up."""
    if isinstance(exc, NoUpstream):
        last = exc.last_error
        # Nobody reachable, or everybody overloaded: the client should simply retry later.
        if last is None or last.status in {429, 503} or (last.status is None and last.retryable):
            return no_upstream(exc.model)
        if last.timed_out:
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


TOKEN_HEADER = "x-attestation-token"
NONCE_HEADER = "x-attestation-nonce"


@dataclass
class _Signing:
    """What the response token will say, filled in as the request is understood."""

    request_id: str
    nonce: str | None = None
    request_sha256: str | None = None
    # A configured model name only; an unknown one is known here by its digest alone.
    model: str | None = None
    requested_model_sha256: str | None = None
    jti: str | None = None
    key: APIKeyConfig | None = None
    in_flight: bool = False
    finished: bool = False
    exchange: ChatExchange | None = None
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    span: Span | None = None


def _client_nonce(request: Request) -> str | None:
    nonce = request.headers.get(NONCE_HEADER)
    if nonce is not None and not CLIENT_NONCE.match(nonce):
        raise bad_request(
            "X-Attestation-Nonce must be 8 to 128 characters of [A-Za-z0-9_-=.:+/].",
            param=NONCE_HEADER,
            code="invalid_value",
        )
    return nonce


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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


async def _cancel_on_disconnect(request: Request, cancel: CancelToken) -> None:
    await _until_disconnected(request)
    cancel.cancel()


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
        attestation: AttestationService,
        metrics: GatewayMetrics,
        metrics_key_sha256: str | None = None,
        body_timeout_s: float = 30.0,
        auth_guard: AuthFailureGuard | None = None,
    ) -> None:
        self._body_timeout = body_timeout_s
        self._auth_guard = auth_guard or AuthFailureGuard()
        self._attestation = attestation
        self._metrics = metrics
        self._metrics_key = bytes.fromhex(metrics_key_sha256) if metrics_key_sha256 else None
        self._keys = keys
        self._limiter = limiter
        self._router = router
        self._pipeline = pipeline
        self._max_body = max_body_bytes
        self._openapi = openapi_document(version)
        # Engines know a key by this id only; new at every start, it says nothing about it.
        self._tenant_salt = secrets.token_bytes(32)

    def build(self, lifespan: Any = None) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/ready", self.ready, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
                Route("/v1/attestation", self.attestation_evidence, methods=["GET"]),
                Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
                Route("/v1/attestations/{completion_id}", self.stored_token, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
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
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > self._max_body:
                    raise too_large
                chunks.append(chunk)

        try:
            # A client trickling its body must not hold a connection and a task forever.
            await asyncio.wait_for(read(), timeout=self._body_timeout)
        except TimeoutError:
            raise GatewayError(
                408,
                f"The request body did not arrive within {self._body_timeout:.0f} s.",
                code="request_timeout",
            ) from None
        return b"".join(chunks)

    async def chat_completions(self, request: Request) -> Response:
        """Every answer here, error or not, carries a signed token over the exact bytes."""
        signing = _Signing(request_id=request_id_of(request.scope))
        signing.span = tracer.start_span("chat", kind=SpanKind.SERVER)
        with trace.use_span(signing.span, end_on_exit=False):
            try:
                return await self._chat(request, signing)
            except ClientDisconnect:
                self._finish(signing, 499)  # gone while its body was arriving
                return Response(status_code=499)
            except BaseException:
                self._finish(signing, 500, "internal_error")  # frees its in-flight place
                raise

    async def _chat(self, request: Request, signing: _Signing) -> Response:
        try:
            signing.nonce = _client_nonce(request)
            body = await self._read_body(request)
            signing.request_sha256 = sha256_hex(body)
            with tracer.start_as_current_span("auth"):
                key = self._authenticate(request)
            signing.key = key
            # Counted before validation: a stream of invalid requests is still requests.
            self._limiter.admit(key)
            try:
                chat = ChatCompletionRequest.model_validate_json(body)
            except ValidationError as exc:
                raise from_validation_error(exc, echoable=echoable_parameter) from None
            known = self._router.knows(chat.model)
            if known:
                signing.model = chat.model
            else:
                signing.requested_model_sha256 = sha256_hex(chat.model.encode("utf-8"))
            self._keys.authorize(key, chat.model, known)
            exchange = ChatExchange(
                request_id=signing.request_id,
                key=key,
                body_bytes=body,
                request=chat,
                upstream_body=chat.upstream_body(chat.model),
                tenant=Tenant(self._tenant_id(key), key.weight),
            )
            signing.exchange = exchange
            asked = chat.requested_tokens()
            choices = chat.n or 1
            exchange.tokens_reserved = self._limiter.reserve(
                key, estimate_prompt_tokens(body), None if asked is None else asked * choices
            )
            budget = exchange.tokens_reserved.completion_budget
            if budget is not None:
                # A token-limited key's request may not use more than it reserved.
                exchange.upstream_body["max_tokens"] = max(1, budget // choices)
            self._limiter.enter(key)
            signing.in_flight = True
            cancel = CancelToken()
            exchange.notes[CANCEL_NOTE] = cancel
            # The gateway names every completion: an upstream's ids may repeat.
            signing.jti = f"chatcmpl-{uuid.uuid4().hex}"
            if chat.streaming:
                return await self._stream(request, exchange, signing)
            try:
                finished, completion = await unless_disconnected(
                    request, self._pipeline.complete(exchange)
                )
            except (UpstreamError, NoUpstream) as exc:
                raise upstream_error(exc) from None
            if not finished or completion is None:
                cancel.cancel()
                self._finish(signing, 499)
                return Response(status_code=499)
            completion["id"] = signing.jti
            payload = _json_bytes(completion)
            token = self._sign(signing, 200, sha256_hex(payload))
            self._finish(signing, 200)
            return Response(payload, media_type="application/json", headers={TOKEN_HEADER: token})
        except GatewayError as error:
            payload = _json_bytes(error.body())
            token = self._sign(signing, error.status, sha256_hex(payload), error.code)
            headers = {**error.headers, TOKEN_HEADER: token}
            self._finish(signing, error.status, error.code)
            return Response(
                payload, status_code=error.status, media_type="application/json", headers=headers
            )

    def _finish(self, signing: _Signing, status: int, error_code: str | None = None) -> None:
        """Close the request's span and count it: names, numbers and types only (once)."""
        if signing.finished:
            return
        signing.finished = True
        exchange = signing.exchange
        notes = exchange.notes if exchange else {}
        model = signing.model or "unknown"
        usage = notes.get("usage")
        if signing.in_flight and signing.key is not None:
            signing.in_flight = False
            self._limiter.leave(signing.key)
        if exchange is not None and exchange.tokens_reserved is not None:
            self._limiter.settle(exchange.key, exchange.tokens_reserved, _used(usage, status))
        pii = notes.get("pii") or {}
        span = signing.span
        if span is not None:
            span.set_attributes(genai_attributes(model, usage, notes.get("finish_reasons") or ()))
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("gateway.request_id", signing.request_id)
            if error_code:
                span.set_attribute("gateway.error_code", error_code)
            if signing.first_token_at is not None:
                span.set_attribute(
                    "gateway.ttft_ms", round((signing.first_token_at - signing.started) * 1000, 3)
                )
            engine = notes.get("engine") or {}
            if engine:
                span.set_attribute("gateway.engine.queue_ms", float(engine.get("queue_ms", 0)))
                span.set_attribute("gateway.engine.slots", list(engine.get("slots", [])))
            if exchange is not None and exchange.routed is not None:
                span.set_attribute("gateway.upstream", exchange.routed.upstream)
                span.set_attribute("gateway.upstream.in_guest", exchange.routed.in_guest)
            for entity, count in (pii.get("counts") or {}).items():
                span.set_attribute(f"gateway.pii.{entity}", count)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            signing.span = None
        log.info(
            "chat request finished",
            extra={
                "fields": {
                    "model": model,
                    "status": status,
                    "error_code": error_code,
                    "duration_ms": round((time.monotonic() - signing.started) * 1000, 3),
                    "prompt_tokens": (usage or {}).get("prompt_tokens"),
                    "completion_tokens": (usage or {}).get("completion_tokens"),
                    "upstream": exchange.routed.upstream if exchange and exchange.routed else None,
                    "pii_counts": pii.get("counts"),
                }
            },
        )
        self._metrics.observe_request(
            model=model,
            status=status,
            started=signing.started,
            usage=usage,
            first_token_at=signing.first_token_at,
            pii_counts=pii.get("counts"),
        )

    def _sign(
        self, signing: _Signing, status: int, response_sha256: str, error_code: str | None = None
    ) -> str:
        with tracer.start_as_current_span("sign"):
            return self._sign_now(signing, status, response_sha256, error_code)

    def _sign_now(
        self, signing: _Signing, status: int, response_sha256: str, error_code: str | None
    ) -> str:
        exchange = signing.exchange
        routed = exchange.routed if exchange else None
        model: dict[str, Any] | None = None
        if signing.model is not None:
            model = {
                "name": signing.model,
                "group": routed.model_group if routed else None,
                "weights_sha256": routed.weights_sha256 if routed else None,
            }
        elif signing.requested_model_sha256 is not None:
            model = {"name": None, "requested_sha256": signing.requested_model_sha256}
        facts = ResponseFacts(
            jti=signing.jti or signing.request_id,
            request_sha256=signing.request_sha256,
            response_sha256=response_sha256,
            status=status,
            nonce=signing.nonce,
            model=model,
            pii=exchange.notes.get("pii") if exchange else None,
            upstream=(
                {
                    "name": routed.upstream,
                    "kind": routed.kind,
                    "in_guest": routed.in_guest,
                    "attested": routed.attested,
                    "provider": routed.provider,
                }
                if routed
                else None
            ),
            extra={"error": {"code": error_code}} if error_code else {},
        )
        owner = signing.key.sha256 if signing.key is not None else None
        return self._attestation.sign(facts, owner=owner)

    async def _stream(
        self, request: Request, exchange: ChatExchange, signing: _Signing
    ) -> Response:
        resources = AsyncExitStack()
        cancel = exchange.notes[CANCEL_NOTE]
        # Opening runs the request stages (PII detection): a client that leaves stops them.
        watcher = asyncio.create_task(_cancel_on_disconnect(request, cancel))
        try:
            chunks = await resources.enter_async_context(self._pipeline.stream(exchange))
        except (UpstreamError, NoUpstream) as exc:
            await resources.aclose()
            raise upstream_error(exc) from None
        except GatewayError:
            await resources.aclose()
            if watcher.done() and not watcher.cancelled():
                self._finish(signing, 499)
                return Response(status_code=499)
            raise
        except BaseException:
            await resources.aclose()
            raise
        finally:
            watcher.cancel()
        # Also when the body never starts (the client left first): in-flight place, metrics.
        resources.callback(self._finish, signing, 499)
        return SSEResponse(self._sse(chunks, signing), resources)

    async def _sse(
        self, chunks: AsyncIterator[dict[str, Any]], signing: _Signing
    ) -> AsyncIterator[bytes]:
        """Chunks as SSE; then the token chunk (the usage chunk, if the client asked for one)
        whose token covers every byte sent before it; then [DONE] unless the stream failed."""
        try:
            async for event in self._sse_events(chunks, signing):
                yield event
        finally:
            self._finish(signing, 499)  # the client left before the end (else a no-op)

    async def _sse_events(
        self, chunks: AsyncIterator[dict[str, Any]], signing: _Signing
    ) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        carrier: dict[str, Any] | None = None
        failure: GatewayError | None = None
        try:
            async for chunk in chunks:
                if carrier is not None:  # something came after the usage chunk: send it
                    event = sse_event(carrier)
                    digest.update(event)
                    yield event
                    carrier = None
                if not chunk.get("choices") and chunk.get("usage"):
                    carrier = chunk
                    continue
                if signing.first_token_at is None and any(
                    (c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()
                ):
                    signing.first_token_at = time.monotonic()
                if "id" in chunk:
                    chunk["id"] = signing.jti
                event = sse_event(chunk)
                digest.update(event)
                yield event
        except Exception as exc:  # every failure ends the stream in-band
            # In-band error and no [DONE]: the client must not mistake this for a full answer.
            if isinstance(exc, UpstreamError):
                log.warning("stream failed after it started: %s", exc)
                failure = upstream_error(exc)
            elif isinstance(exc, GatewayError):
                failure = exc
            else:
                log.error("stream failed after it started: unhandled %s", type(exc).__name__)
                failure = GatewayError(
                    500, "The gateway hit an internal error.", type="server_error"
                )
            event = sse_event(failure.body())
            digest.update(event)
            yield event
        # A failed stream's token says so: its status and code, never a 200.
        status = failure.status if failure else 200
        code = failure.code if failure else None
        if carrier is None:
            # No usage chunk asked for: no chunk without choices either (clients read
            # choices[0] of every chunk). An SSE comment carries the token; every SSE parser
            # skips comments, the verifying transport reads it.
            token = self._sign(signing, status, digest.hexdigest(), code)
            self._finish(signing, status, code)
            yield token_comment(token)
        else:
            if "id" in carrier:
                carrier["id"] = signing.jti
            carrier["attestation_token"] = self._sign(signing, status, digest.hexdigest(), code)
            self._finish(signing, status, code)
            yield sse_event(carrier)
        if failure is None:
            yield SSE_DONE

    def _tenant_id(self, key: APIKeyConfig) -> str:
        return hmac.new(self._tenant_salt, key.sha256.encode("ascii"), "sha256").hexdigest()[:32]

    def _authenticate(self, request: Request) -> APIKeyConfig:
        """The caller's key; repeated failures from one address are refused outright."""
        client = request.client.host if request.client else "unknown"
        self._auth_guard.check(client)
        try:
            return self._keys.authenticate(request.headers.get("authorization"))
        except GatewayError:
            self._auth_guard.failed(client)
            raise

    async def models(self, request: Request) -> Response:
        key = self._authenticate(request)
        data = [_model_object(name) for name in self._router.groups if key.allows(name)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{id}`` (openai ``models.retrieve``)."""
        key = self._authenticate(request)
        name = request.path_params["model_id"]
        if name not in self._router.groups or not key.allows(name):
            raise GatewayError(
                404,
                "The model you requested does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(_model_object(name))

    async def health(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Overall readiness for anyone (load balancers); the per-model view only for a key,
        and only of the models that key may use: model names are not for everyone."""
        models = self._router.ready()
        ready = all(models.values())
        document: dict[str, Any] = {"ready": ready}
        if request.headers.get("authorization"):
            key = self._authenticate(request)
            document["models"] = {name: up for name, up in models.items() if key.allows(name)}
        return JSONResponse(document, status_code=200 if ready else 503)

    async def openapi(self, _: Request) -> Response:
        return JSONResponse(self._openapi)

    async def attestation_evidence(self, request: Request) -> Response:
        nonce = request.query_params.get("nonce")
        if nonce is not None and not NONCE_HEX.match(nonce):
            return error_response(
                bad_request(
                    "nonce must be 8 to 64 bytes written as 16 to 128 hexadecimal characters.",
                    param="nonce",
                    code="invalid_value",
                )
            )
        try:
            document = await asyncio.to_thread(self._attestation.evidence_document, nonce)
        except AttestationUnavailable as exc:
            log.error("attestation evidence unavailable: %s", exc)
            return error_response(
                GatewayError(
                    503,
                    "Attestation evidence is unavailable right now; the TEE interface failed.",
                    type="server_error",
                    code="attestation_unavailable",
                    headers={"Retry-After": "5"},
                )
            )
        return JSONResponse(document)

    async def prometheus(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        self._auth_guard.check(client)  # guessing the metrics key is guessing a key
        presented = request.headers.get("authorization", "").partition(" ")[2].strip()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        if self._metrics_key is None or not hmac.compare_digest(digest, self._metrics_key):
            if self._metrics_key is not None:
                self._auth_guard.failed(client)
            return error_response(
                GatewayError(
                    401 if self._metrics_key else 404,
                    "Metrics need the metrics key." if self._metrics_key else "Unknown route.",
                    code="invalid_api_key" if self._metrics_key else None,
                )
            )
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(self._attestation.jwks())

    async def stored_token(self, request: Request) -> Response:
        """Only the key whose request caused a token reads it back (others: a plain 404)."""
        key = self._authenticate(request)
        completion_id = request.path_params["completion_id"]
        token = self._attestation.tokens.get(completion_id, key.sha256)
        if token is None:
            return error_response(
                GatewayError(
                    404,
                    "No token is kept for that completion id (unknown, or older than the "
                    "retention window).",
                    code="token_not_found",
                )
            )
        return JSONResponse({"id": completion_id, "attestation_token": token})


def _used(usage: Any, status: int) -> int | None:
    """The tokens a finished request used, for settling its reservation: its final usage;
    else 0 when nothing was generated (refused, no upstream), None (keep the reservation)
    when something may have been (the client left, the upstream failed or timed out
    mid-way, an answer without usage)."""
    if usage:
        return total_tokens(usage)
    if status in {200, 499, 500, 502, 504}:
        return None
    return 0


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "confidential-gateway"}


# Paths named back in a 404: plain route shapes only (a path could hold a client's value).
_ROUTE_SHAPE = re.compile(r"^(?:/(?:[A-Za-z_.-]{1,40}|v[0-9]{1,2})){1,8}/?$")


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        path = request.url.path
        named = f" '{path}'" if _ROUTE_SHAPE.match(path) else ""
        message = (
            f"Unknown route{named}. This gateway serves /v1/chat/completions, /v1/models, "
            "/v1/models/{model} and /v1/attestation."
        )
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
