"""``POST /v1/completions`` through the shared lifecycle.

Streams are ``data:`` chunks of ``object: text_completion`` ending in ``[DONE]``; the token
rides the usage chunk when asked for, else an SSE comment (as chat). PII in ``prompt`` and
``suffix`` is tokenized like any message text and restored in every choice's ``text``;
prompts as token ids cannot be scanned, so a route that tokenizes refuses them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from gateway.endpoints.chat import ChunkStream
from gateway.endpoints.completions.protocol import DEFAULT_MAX_TOKENS, CompletionRequest
from gateway.endpoints.parsing import parse_body
from gateway.exchange import Exchange, RequestRecord
from gateway.lifecycle import ParsedRequest
from gateway.pipeline import Chunk
from gateway.upstreams.base import Operation


class CompletionsEndpoint:
    name = "completions"
    wire_model: type[BaseModel] = CompletionRequest
    operation_id = "createCompletion"
    answer = "A text completion, or an SSE stream of chunks."
    operation: Operation = "completions"

    def parse(self, body: bytes) -> ParsedRequest[CompletionRequest]:
        request = parse_body(CompletionRequest, body)
        options = request.stream_options
        return ParsedRequest(
            request,
            request.model,
            request.upstream_body(),
            streaming=bool(request.stream),
            client_wants_usage=options is not None and bool(options.include_usage),
            completion_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
            choices=request.prompt_count * (request.n or 1),
            text_param="prompt",
            opaque_input="prompt" if request.token_ids else None,
        )

    def new_id(self) -> str:
        return f"cmpl-{uuid.uuid4().hex}"

    def render(
        self,
        parsed: ParsedRequest[CompletionRequest],
        exchange: Exchange,
        answer: Chunk,
        response_id: str,
    ) -> dict[str, Any]:
        answer["id"] = response_id
        answer["object"] = "text_completion"
        answer["model"] = parsed.model
        return answer

    def stream(
        self,
        parsed: ParsedRequest[CompletionRequest],
        exchange: Exchange,
        chunks: AsyncIterator[Chunk],
        response_id: str,
        record: RequestRecord,
    ) -> ChunkStream:
        return ChunkStream(chunks, TextChunkShape(response_id, parsed.model), record)


class TextChunkShape:
    """Every legacy completion chunk complete: id, object, created, model, choice fields."""

    def __init__(self, response_id: str, model: str) -> None:
        self._id = response_id
        self._model = model
        self._created: int | None = None

    def fill(self, chunk: Chunk) -> Chunk:
        self._created = self._created or chunk.get("created") or int(time.time())
        chunk["id"] = self._id
        chunk["object"] = "text_completion"
        chunk["created"] = chunk.get("created") or self._created
        chunk["model"] = self._model
        for choice in chunk.get("choices") or ():
            choice.setdefault("index", 0)
            choice.setdefault("text", "")
            choice.setdefault("logprobs", None)
            choice.setdefault("finish_reason", None)
        return chunk

    def has_output(self, chunk: Chunk) -> bool:
        return any(c.get("text") for c in chunk.get("choices") or ())
