"""``POST /v1/embeddings`` through the shared lifecycle.

Never streamed. On a route whose policy tokenizes, PII in ``input`` becomes placeholders
before it is embedded (the vector is of the tokenized text; nothing comes back to restore),
and token-id input, which no detector can read, is refused. The token covers the request
bytes and the exact response bytes, vectors included.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from gateway.endpoints.embeddings.protocol import EmbeddingRequest
from gateway.endpoints.parsing import parse_body
from gateway.errors import GatewayError
from gateway.exchange import Exchange, RequestRecord
from gateway.lifecycle import ParsedRequest
from gateway.pipeline import Chunk
from gateway.signing import StreamBody
from gateway.upstreams.base import Operation


class EmbeddingsEndpoint:
    name = "embeddings"
    wire_model: type[BaseModel] = EmbeddingRequest
    operation_id = "createEmbedding"
    answer = "A list of embeddings, one per input, in input order."
    operation: Operation = "embeddings"

    def parse(self, body: bytes) -> ParsedRequest[EmbeddingRequest]:
        request = parse_body(EmbeddingRequest, body)
        return ParsedRequest(
            request,
            request.model,
            request.upstream_body(),
            max_tokens_field=None,
            text_param="input",
            opaque_input="input" if request.token_ids else None,
        )

    def new_id(self) -> str:
        return f"embd-{uuid.uuid4().hex}"

    def render(
        self,
        parsed: ParsedRequest[EmbeddingRequest],
        exchange: Exchange,
        answer: Chunk,
        response_id: str,
    ) -> dict[str, Any]:
        answer["model"] = parsed.model
        answer.setdefault("object", "list")
        return answer

    def stream(
        self,
        parsed: ParsedRequest[EmbeddingRequest],
        exchange: Exchange,
        chunks: AsyncIterator[Chunk],
        response_id: str,
        record: RequestRecord,
    ) -> StreamBody:
        raise GatewayError(400, "Embeddings are not streamed.", param="stream")
