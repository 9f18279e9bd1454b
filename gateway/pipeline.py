"""The chat completion pipeline between validation and the response.

    validated request -> stages' on_request (in order) -> router -> upstream
    response <- stages' on_completion / on_stream (in reverse order) <- upstream

A stage sees what the previous one produced and nothing after it. The PII and signing
stages (later issues) plug in here; today the list holds usage accounting only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace

from gateway.config import APIKeyConfig
from gateway.protocol import ChatCompletionRequest
from gateway.ratelimit import TokenCharge
from gateway.router import Routed, Router
from gateway.telemetry import tracer
from gateway.upstream import Tenant

Chunk = dict[str, Any]


@dataclass
class ChatExchange:
    """One request on its way through the pipeline.

    ``body_bytes`` are the exact bytes received; ``request`` is their validated form and is
    never re-parsed; ``upstream_body`` is what the router will send, and is the only thing
    request stages change.
    """

    request_id: str
    key: APIKeyConfig
    body_bytes: bytes
    request: ChatCompletionRequest
    upstream_body: dict[str, Any]
    routed: Routed | None = None
    tenant: Tenant | None = None
    # Tokens held against the key's per-minute limit until the usage is known.
    tokens_reserved: TokenCharge | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class ChatStage(Protocol):
    name: str  # names the stage's spans

    async def on_request(self, exchange: ChatExchange) -> None: ...

    async def on_completion(self, exchange: ChatExchange, completion: Chunk) -> Chunk: ...

    def on_stream(
        self, exchange: ChatExchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]: ...


class ChatPipeline:
    def __init__(self, router: Router, stages: list[ChatStage]) -> None:
        self._router = router
        self._stages = stages

    async def _requests(self, exchange: ChatExchange) -> None:
        for stage in self._stages:
            with tracer.start_as_current_span(f"{stage.name}.request"):
                await stage.on_request(exchange)

    async def complete(self, exchange: ChatExchange) -> Chunk:
        await self._requests(exchange)
        with tracer.start_as_current_span("upstream") as span:
            completion, exchange.routed = await self._router.complete(
                exchange.request.model,
                exchange.upstream_body,
                request_id=exchange.request_id,
                tenant=exchange.tenant,
            )
            span.set_attribute("gateway.upstream", exchange.routed.upstream)
        for stage in reversed(self._stages):
            with tracer.start_as_current_span(f"{stage.name}.response"):
                completion = await stage.on_completion(exchange, completion)
        return completion

    @asynccontextmanager
    async def stream(self, exchange: ChatExchange) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Chunks for the client; leaving the context closes the upstream stream."""
        await self._requests(exchange)
        span = tracer.start_span("upstream")
        try:
            with trace.use_span(span, end_on_exit=False):
                stream = self._router.stream(
                    exchange.request.model,
                    exchange.upstream_body,
                    request_id=exchange.request_id,
                    tenant=exchange.tenant,
                )
                opened = await stream.__aenter__()
        finally:
            span.end()
        async with _Entered(stream, opened) as (chunks, routed):
            exchange.routed = routed
            for stage in reversed(self._stages):
                chunks = stage.on_stream(exchange, chunks)
            yield chunks


T = TypeVar("T")


class _Entered(Generic[T]):
    """An already-entered async context manager, so its exit stays with an ``async with``."""

    def __init__(self, manager: AbstractAsyncContextManager[T], value: T) -> None:
        self._manager = manager
        self._value = value

    async def __aenter__(self) -> T:
        return self._value

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._manager.__aexit__(kind, error, tb)
