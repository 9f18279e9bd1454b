"""Usage accounting stage: knows the tokens of every response, streamed or not.

Streams always ask the upstream for the usage chunk, so per-key token limits hold for
streaming clients too; the chunk (and the ``usage: null`` fields) reach the client only if
it asked for them with ``stream_options.include_usage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.pipeline import ChatExchange, Chunk


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

    async def on_request(self, exchange: ChatExchange) -> None:
        if exchange.request.streaming:
            options = dict(exchange.upstream_body.get("stream_options") or {})
            options["include_usage"] = True
            exchange.upstream_body["stream_options"] = options

    async def on_completion(self, exchange: ChatExchange, completion: Chunk) -> Chunk:
        exchange.notes["engine"] = completion.pop("x_engine", None)
        exchange.notes["finish_reasons"] = [
            c.get("finish_reason") for c in completion.get("choices") or ()
        ]
        usage = completion.get("usage")
        exchange.notes["usage"] = usage
        return completion

    async def on_stream(
        self, exchange: ChatExchange, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        options = exchange.request.stream_options
        client_wants_usage = options is not None and options.include_usage
        reasons: list[str] = exchange.notes.setdefault("finish_reasons", [])
        async for chunk in chunks:
            engine = chunk.pop("x_engine", None)
            if engine is not None:
                exchange.notes["engine"] = engine
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
            usage = chunk.get("usage")
            if usage:
                exchange.notes["usage"] = usage  # the last one counts (running totals)
            if client_wants_usage:
                yield chunk
                continue
            if not chunk.get("choices") and usage:
                continue  # the usage-only chunk the client did not ask for
            chunk.pop("usage", None)
            yield chunk
