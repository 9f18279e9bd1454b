"""Usage accounting stage: knows the tokens of every response, streamed or not.

Streams always ask the upstream for the usage chunk, so per-key token limits hold for
streaming clients too; the chunk (and the ``usage: null`` fields) reach the client only if
it asked for them with ``stream_options.include_usage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.exchange import EngineFacts, Exchange
from gateway.pipeline import Chunk


def total_tokens(usage: Any) -> int:
    if isinstance(usage, dict):
        value = usage.get("total_tokens")
        if isinstance(value, int):
            return value
    return 0


class UsageAccounting:
    """Records each response's usage on the exchange; the app settles the key's token
    reservation with it when the request finishes."""

    name = "usage"

    async def on_request(self, exchange: Exchange) -> None:
        if exchange.streaming:
            options = dict(exchange.upstream_body.get("stream_options") or {})
            options["include_usage"] = True
            exchange.upstream_body["stream_options"] = options

    async def on_completion(self, exchange: Exchange, completion: Chunk) -> Chunk:
        exchange.engine = EngineFacts.of(completion.pop("x_engine", None))
        exchange.finish_reasons = [
            str(c["finish_reason"])
            for c in completion.get("choices") or ()
            if isinstance(c, dict) and c.get("finish_reason")
        ]
        usage = completion.get("usage")
        exchange.usage = usage if isinstance(usage, dict) else None
        return completion

    async def on_stream(
        self, exchange: Exchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        client_wants_usage = exchange.client_wants_usage
        async for chunk in chunks:
            engine = chunk.pop("x_engine", None)
            if engine is not None:
                exchange.engine = EngineFacts.of(engine)
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    exchange.finish_reasons.append(str(choice["finish_reason"]))
            usage = chunk.get("usage")
            if usage and isinstance(usage, dict):
                exchange.usage = usage  # the last one counts (running totals)
            if client_wants_usage:
                yield chunk
                continue
            if not chunk.get("choices") and usage:
                continue  # the usage-only chunk the client did not ask for
            chunk.pop("usage", None)
            yield chunk
