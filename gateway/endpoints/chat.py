"""``POST /v1/chat/completions``: OpenAI's chat completions, streamed or not.

The wire models are ``gateway.protocol``. Streams are ``data:`` chunks; the token rides the
usage chunk when the client asked for one (``choices: []``, as OpenAI's), else an SSE comment
(no chunk without ``choices`` is ever sent: clients read ``choices[0]`` of every chunk), then
``[DONE]`` unless the stream failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel

from gateway.endpoints.parsing import parse_body
from gateway.errors import GatewayError
from gateway.exchange import Exchange, RequestRecord
from gateway.lifecycle import ParsedRequest
from gateway.pipeline import Chunk
from gateway.protocol import ChatCompletionRequest
from gateway.sse import SSE_DONE, sse_event, token_comment
from gateway.upstreams.base import Operation


class ChatEndpoint:
    name = "chat"
    wire_model: type[BaseModel] = ChatCompletionRequest
    operation_id = "createChatCompletion"
    answer = "A chat completion, or an SSE stream of chunks."
    operation: Operation = "chat/completions"

    def parse(self, body: bytes) -> ParsedRequest[ChatCompletionRequest]:
        chat = parse_body(ChatCompletionRequest, body)
        options = chat.stream_options
        return ParsedRequest(
            chat,
            chat.model,
            chat.upstream_body(chat.model),
            streaming=chat.streaming,
            client_wants_usage=options is not None and bool(options.include_usage),
            completion_tokens=chat.requested_tokens(),
            choices=chat.n or 1,
        )

    def new_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex}"

    def render(
        self,
        parsed: ParsedRequest[ChatCompletionRequest],
        exchange: Exchange,
        answer: Chunk,
        response_id: str,
    ) -> dict[str, Any]:
        answer["id"] = response_id
        return answer

    def stream(
        self,
        parsed: ParsedRequest[ChatCompletionRequest],
        exchange: Exchange,
        chunks: AsyncIterator[Chunk],
        response_id: str,
        record: RequestRecord,
    ) -> ChunkStream:
        return ChunkStream(chunks, ChatChunkShape(response_id, parsed.model), record)


class ChatChunkShape:
    """Fills what some upstreams leave out, so every chunk is a valid OpenAI chunk."""

    def __init__(self, response_id: str, model: str) -> None:
        self._id = response_id
        self._created: int | None = None
        self._model = model
        self._roles_sent: set[int] = set()

    def fill(self, chunk: Chunk) -> Chunk:
        self._created = self._created or chunk.get("created") or int(time.time())
        chunk["id"] = self._id
        chunk["object"] = "chat.completion.chunk"
        chunk["created"] = chunk.get("created") or self._created
        chunk["model"] = chunk.get("model") or self._model
        for choice in chunk.get("choices") or ():
            index = choice.setdefault("index", 0)
            delta = choice.setdefault("delta", {})
            choice.setdefault("finish_reason", None)
            if index not in self._roles_sent:
                delta.setdefault("role", "assistant")
                self._roles_sent.add(index)
        return chunk

    def has_output(self, chunk: Chunk) -> bool:
        return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ())


class ChunkShape(Protocol):
    """How one endpoint's chunks are completed and recognised (chat, legacy completions)."""

    def fill(self, chunk: Chunk) -> Chunk: ...

    def has_output(self, chunk: Chunk) -> bool: ...


class ChunkStream:
    """``data:`` chunks ending in ``[DONE]``; the usage chunk (when asked for) carries the
    token, else an SSE comment does. Shared by chat and legacy completions."""

    def __init__(
        self,
        chunks: AsyncIterator[Chunk],
        shape: ChunkShape,
        record: RequestRecord,
    ) -> None:
        self._chunks = chunks
        self._shape = shape
        self._record = record
        self._carrier: Chunk | None = None

    async def events(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if self._carrier is not None:  # something came after the usage chunk: send it
                yield sse_event(self._carrier)
                self._carrier = None
            chunk = self._shape.fill(chunk)
            if not chunk.get("choices") and chunk.get("usage"):
                self._carrier = chunk
                continue
            if self._shape.has_output(chunk):
                self._record.first_token()
            yield sse_event(chunk)

    def failure(self, error: GatewayError) -> bytes:
        # In-band error and no [DONE]: the client must not mistake this for a full answer.
        return sse_event(error.body())

    def trailer(self, token: str, failed: bool) -> bytes:
        end = b"" if failed else SSE_DONE
        if self._carrier is None:
            return token_comment(token) + end
        self._carrier["attestation_token"] = token
        return sse_event(self._carrier) + end
