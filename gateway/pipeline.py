"""The pipeline between an endpoint's validated request and its response.

    exchange -> stages' on_request (in order) -> router -> upstream (exchange.operation)
    response <- stages' on_completion / on_stream (in reverse order) <- upstream

A stage sees what the previous one produced and nothing after it: PII tokenize/restore and
usage accounting. Every endpoint runs the same stages; the endpoint shapes what the client
gets, and the lifecycle signs it (``gateway.lifecycle``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace

from gateway.exchange import Exchange
from gateway.telemetry import tracer
from gateway.upstreams.router import Router

Chunk = dict[str, Any]


class Stage(Protocol):
    name: str  # names the stage's spans

    async def on_request(self, exchange: Exchange) -> None: ...

    async def on_completion(self, exchange: Exchange, completion: Chunk) -> Chunk: ...

    def on_stream(
        self, exchange: Exchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]: ...


class Pipeline:
    def __init__(self, router: Router, stages: list[Stage]) -> None:
        self._router = router
        self._stages = stages

    async def _requests(self, exchange: Exchange) -> None:
        for stage in self._stages:
            with tracer.start_as_current_span(f"{stage.name}.request"):
                await stage.on_request(exchange)

    async def complete(self, exchange: Exchange) -> Chunk:
        await self._requests(exchange)
        with tracer.start_as_current_span("upstream") as span:
            completion, exchange.routed = await self._router.complete(
                exchange.model,
                exchange.operation,
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
    async def stream(self, exchange: Exchange) -> AsyncIterator[AsyncIterator[Chunk]]:
        """Chunks for the client; leaving the context closes the upstream stream."""
        await self._requests(exchange)
        span = tracer.start_span("upstream")
        try:
            with trace.use_span(span, end_on_exit=False):
                stream = self._router.stream(
                    exchange.model,
                    exchange.operation,
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
