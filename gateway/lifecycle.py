"""The one request lifecycle every endpoint reuses.

    nonce -> body (limits) -> request hash -> auth -> endpoint.parse -> authorize
          -> limits (counted, tokens reserved, in-flight place: one step)
          -> pipeline (PII, route, restore)
          -> endpoint.render / endpoint.stream -> sign the exact bytes -> finish (telemetry)

An endpoint says what is its own (``Endpoint``): how its body validates into a
``ParsedRequest``, how the pipeline's answer becomes its response object, and how its stream
is framed. Everything else, and every error on the way (each a signed OpenAI-shaped body),
happens here once.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.attestation.service import CLIENT_NONCE, AttestationService, sha256_hex
from gateway.auth import APIKeyStore
from gateway.config import APIKeyConfig
from gateway.errors import GatewayError, bad_request, stream_failure, upstream_error
from gateway.exchange import Exchange, RequestRecord, SigningFacts
from gateway.pipeline import Chunk, Pipeline
from gateway.ratelimit import estimate_prompt_tokens
from gateway.request_id import request_id_of
from gateway.shared_state.base import FailureGuard, Limiter
from gateway.signing import ResponseSigner, StreamBody
from gateway.sse import SSEResponse, cancel_on_disconnect, unless_disconnected
from gateway.telemetry import GatewayMetrics, record_finish, tracer
from gateway.upstreams.base import Operation, Tenant, UpstreamError
from gateway.upstreams.router import NoUpstream, Router
from gateway.usage import total_tokens

R = TypeVar("R")
NONCE_HEADER = "x-attestation-nonce"


@dataclass
class ParsedRequest(Generic[R]):
    """An endpoint's validated request, and what the lifecycle needs to know about it.

    ``completion_tokens``: the most output tokens the request asked for (per choice) and
    ``choices`` how many; a token-limited key's reservation caps them through
    ``max_tokens_field`` of ``upstream_body``.
    """

    request: R
    model: str
    upstream_body: dict[str, Any]
    streaming: bool = False
    client_wants_usage: bool = False
    completion_tokens: int | None = None
    choices: int = 1
    max_tokens_field: str | None = "max_tokens"
    text_param: str = "messages"
    opaque_input: str | None = None
    # Upstream parameter names as this endpoint's client knows them (an endpoint served by
    # translation: the Responses API's "input" is chat's "messages").
    client_params: Mapping[str, str] = field(default_factory=dict)

    def client_error(self, error: GatewayError) -> GatewayError:
        """``error`` naming this endpoint's parameter, not the upstream request's."""
        return client_named(error, self.client_params)


def client_named(error: GatewayError, names: Mapping[str, str]) -> GatewayError:
    """``error`` with its ``param`` renamed by ``names`` (upstream name -> client name; the
    first whose name is the param or a prefix of its path wins)."""
    param = error.param
    for upstream, client in names.items():
        if param and (param == upstream or param.startswith((upstream + ".", upstream + "["))):
            error.param = client
            break
    return error


class Endpoint(Protocol[R]):
    """What one OpenAI endpoint adds to the lifecycle."""

    name: str  # spans, logs and metrics: "chat", "responses", "completions", "embeddings"
    operation: Operation  # what the upstreams are asked
    wire_model: type[BaseModel]  # the request's wire model (validation, OpenAPI)
    operation_id: str  # OpenAPI's name for it
    answer: str  # what a 200 is, in one line (OpenAPI)

    def parse(self, body: bytes) -> ParsedRequest[R]:
        """Validate once; every refusal a ``GatewayError`` naming the parameter."""
        ...

    def new_id(self) -> str:
        """The gateway's id for this answer (``chatcmpl-...``, ``resp_...``)."""
        ...

    def render(
        self, parsed: ParsedRequest[R], exchange: Exchange, answer: Chunk, response_id: str
    ) -> dict[str, Any]:
        """The client's JSON object from the pipeline's (restored) answer."""
        ...

    def stream(
        self,
        parsed: ParsedRequest[R],
        exchange: Exchange,
        chunks: AsyncIterator[Chunk],
        response_id: str,
        record: RequestRecord,
    ) -> StreamBody:
        """The client's event stream from the pipeline's (restored) chunks."""
        ...


def client_nonce(request: Request) -> str | None:
    nonce = request.headers.get(NONCE_HEADER)
    if nonce is not None and not CLIENT_NONCE.match(nonce):
        raise bad_request(
            "X-Attestation-Nonce must be 8 to 128 characters of [A-Za-z0-9_-=.:+/].",
            param=NONCE_HEADER,
            code="invalid_value",
        )
    return nonce


class RequestLifecycle:
    def __init__(
        self,
        *,
        keys: APIKeyStore,
        limiter: Limiter,
        router: Router,
        pipeline: Pipeline,
        signer: ResponseSigner,
        metrics: GatewayMetrics,
        auth_guard: FailureGuard,
        attestation: AttestationService,
        max_body_bytes: int,
        body_timeout_s: float,
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._router = router
        self._pipeline = pipeline
        self._signer = signer
        self._metrics = metrics
        self._auth_guard = auth_guard
        self._attestation = attestation
        self._max_body = max_body_bytes
        self._body_timeout = body_timeout_s
        # Engines know a key by this id only; new at every start, it says nothing about it.
        self._tenant_salt = secrets.token_bytes(32)

    # -- what several routes share ------------------------------------------------------------
    async def authenticate(self, request: Request) -> APIKeyConfig:
        """The caller's key; repeated failures from one address are refused outright."""
        client = request.client.host if request.client else "unknown"
        await self._auth_guard.check(client)
        try:
            return self._keys.authenticate(request.headers.get("authorization"))
        except GatewayError:
            await self._auth_guard.failed(client)
            raise

    def tenant_id(self, key: APIKeyConfig) -> str:
        return hmac.new(self._tenant_salt, key.sha256.encode("ascii"), "sha256").hexdigest()[:32]

    # -- one request --------------------------------------------------------------------------
    async def handle(self, request: Request, endpoint: Endpoint[Any]) -> Response:
        """Every answer here, error or not, carries a signed token over the exact bytes."""
        record = RequestRecord(
            endpoint.name, SigningFacts(request_id_of(request.scope)), time.monotonic()
        )
        record.span = tracer.start_span(endpoint.name, kind=SpanKind.SERVER)
        with trace.use_span(record.span, end_on_exit=False):
            try:
                return await self._handle(request, endpoint, record)
            except ClientDisconnect:
                await self.finish(record, 499)  # gone while its body was arriving
                return Response(status_code=499)
            except BaseException:
                await self.finish(record, 500, "internal_error")  # frees its in-flight place
                raise

    async def _handle(
        self, request: Request, endpoint: Endpoint[Any], record: RequestRecord
    ) -> Response:
        facts = record.facts
        try:
            facts.nonce = client_nonce(request)
            body = await self._read_body(request)
            facts.request_sha256 = sha256_hex(body)
            with tracer.start_as_current_span("auth"):
                key = await self.authenticate(request)
            record.key = key
            facts.owner = key.sha256
            try:
                parsed = endpoint.parse(body)
                exchange = self._prepare(record, endpoint, parsed, key, body)
            except GatewayError:
                # Counted too: a stream of invalid requests is still requests (and a used-up
                # limit's 429 comes before the refusal, as if counted first).
                await self._limiter.admit(key)
                raise
            await self._begin(record, parsed, exchange, body)
            facts.response_id = endpoint.new_id()
            if parsed.streaming:
                return await self._stream(request, endpoint, parsed, exchange, record)
            try:
                done, answer = await unless_disconnected(request, self._pipeline.complete(exchange))
            except (UpstreamError, NoUpstream) as exc:
                raise parsed.client_error(upstream_error(exc)) from None
            if not done or answer is None:
                exchange.cancel.cancel()
                await self.finish(record, 499)
                return Response(status_code=499)
            payload = endpoint.render(parsed, exchange, answer, facts.response_id)
            response = self._signer.json(record, payload)
            await self.finish(record, 200)
            return response
        except GatewayError as error:
            response = self._signer.error(record, error)
            await self.finish(record, error.status, error.code)
            return response

    def _prepare(
        self,
        record: RequestRecord,
        endpoint: Endpoint[Any],
        parsed: ParsedRequest[Any],
        key: APIKeyConfig,
        body: bytes,
    ) -> Exchange:
        """Authorize the model for the key and this endpoint; the exchange it will run."""
        known = self._router.knows(parsed.model)
        if known:
            record.facts.model = parsed.model
        else:
            record.facts.requested_model_sha256 = sha256_hex(parsed.model.encode("utf-8"))
        self._keys.authorize(key, parsed.model, known)
        if not self._router.serves(parsed.model, endpoint.operation):
            raise GatewayError(
                400,
                f"The model '{parsed.model}' does not serve /v1/{endpoint.operation}.",
                param="model",
                code="unsupported_model_operation",
            )
        exchange = Exchange(
            request_id=record.facts.request_id,
            operation=endpoint.operation,
            key=key,
            model=parsed.model,
            body_bytes=body,
            upstream_body=parsed.upstream_body,
            streaming=parsed.streaming,
            client_wants_usage=parsed.client_wants_usage,
            text_param=parsed.text_param,
            opaque_input=parsed.opaque_input,
            tenant=Tenant(self.tenant_id(key), key.weight),
        )
        record.exchange = exchange
        return exchange

    async def _begin(
        self, record: RequestRecord, parsed: ParsedRequest[Any], exchange: Exchange, body: bytes
    ) -> None:
        """Count the request, reserve its tokens and take its in-flight place (at once)."""
        asked = parsed.completion_tokens
        admission = await self._limiter.begin(
            exchange.key,
            estimate_prompt_tokens(body),
            None if asked is None else asked * parsed.choices,
        )
        exchange.tokens_reserved = admission
        record.in_flight = True
        budget = admission.completion_budget
        if budget is not None and parsed.max_tokens_field is not None:
            # A token-limited key's request may not use more than it reserved.
            exchange.upstream_body[parsed.max_tokens_field] = max(1, budget // parsed.choices)

    async def _stream(
        self,
        request: Request,
        endpoint: Endpoint[Any],
        parsed: ParsedRequest[Any],
        exchange: Exchange,
        record: RequestRecord,
    ) -> Response:
        resources = AsyncExitStack()
        # Opening runs the request stages (PII detection): a client that leaves stops them.
        watcher = asyncio.create_task(cancel_on_disconnect(request, exchange.cancel))
        try:
            chunks = await resources.enter_async_context(self._pipeline.stream(exchange))
        except (UpstreamError, NoUpstream) as exc:
            await resources.aclose()
            raise parsed.client_error(upstream_error(exc)) from None
        except GatewayError:
            await resources.aclose()
            if watcher.done() and not watcher.cancelled():
                await self.finish(record, 499)
                return Response(status_code=499)
            raise
        except BaseException:
            await resources.aclose()
            raise
        finally:
            watcher.cancel()
        # Also when the body never starts (the client left first): in-flight place, metrics.
        resources.push_async_callback(self.finish, record, 499)
        assert record.facts.response_id is not None
        body = endpoint.stream(parsed, exchange, chunks, record.facts.response_id, record)
        return SSEResponse(self._events(record, body, parsed), resources)

    async def _events(
        self, record: RequestRecord, body: StreamBody, parsed: ParsedRequest[Any]
    ) -> AsyncIterator[bytes]:
        # The signer says the stream's status once its token is made (before the carrier is
        # sent); the finish itself awaits the token store, so it runs as the stream ends.
        outcome: tuple[int, str | None] = (499, None)  # the client left before the end

        def finished(status: int, code: str | None) -> None:
            nonlocal outcome
            outcome = (status, code)

        try:
            async for event in self._signer.stream(
                record,
                body,
                to_error=lambda exc: parsed.client_error(stream_failure(exc)),
                finished=finished,
            ):
                yield event
        finally:
            await self.finish(record, *outcome)

    async def finish(
        self, record: RequestRecord, status: int, error_code: str | None = None
    ) -> None:
        """Free the in-flight place, settle the reservation, record telemetry, and wait
        for the response's token to be stored (once)."""
        if record.finished:
            return
        record.finished = True
        exchange = record.exchange
        if record.in_flight and exchange is not None and exchange.tokens_reserved is not None:
            record.in_flight = False
            # Not awaited: the place and the tokens go back in the background.
            self._limiter.finish(exchange.tokens_reserved, _used(exchange.usage, status))
        record_finish(self._metrics, record, status, error_code)
        await self._attestation.flush(record.facts.response_id or record.facts.request_id)

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
