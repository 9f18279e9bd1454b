"""``POST /v1/responses`` (stateless) through the shared lifecycle.

The request becomes a chat-completions request (``translate.to_chat``), validated again as
one so every chat limit and refusal applies, and runs the chat pipeline: PII is tokenized in
``input``, ``instructions`` and tool schemas and restored in the output, streamed deltas
included, exactly as for chat. The answer becomes a Response object (``from_chat``) or the
Responses event sequence (``ResponsesStream``), framed as named SSE events. The token travels
in an SSE comment after the terminal event (the Responses API sends no ``[DONE]``); every SSE
parser skips comments.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from gateway.endpoints.parsing import parse_body, parse_translated
from gateway.endpoints.responses.protocol import ResponsesRequest
from gateway.endpoints.responses.translate import ResponsesStream, from_chat, to_chat
from gateway.errors import GatewayError
from gateway.exchange import Exchange, RequestRecord
from gateway.lifecycle import ParsedRequest, client_named
from gateway.pipeline import Chunk
from gateway.protocol import ChatCompletionRequest
from gateway.sse import sse_event, token_comment
from gateway.upstreams.base import Operation

# Chat parameters (of the translated request, and so of upstream errors) by their Responses
# names; the most specific first.
CLIENT_PARAMS = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format.json_schema.schema": "text.format.schema",
    "response_format.json_schema.name": "text.format.name",
    "response_format": "text.format",
    "stream_options": "stream",
}


class ResponsesEndpoint:
    name = "responses"
    operation: Operation = "chat/completions"
    wire_model: type[BaseModel] = ResponsesRequest
    operation_id = "createResponse"
    answer = "A Response object, or the Responses API's stream of events."

    def parse(self, body: bytes) -> ParsedRequest[ResponsesRequest]:
        request = parse_body(ResponsesRequest, body)
        try:
            chat = parse_translated(ChatCompletionRequest, to_chat(request))
        except GatewayError as error:
            raise client_named(error, CLIENT_PARAMS) from None
        return ParsedRequest(
            request,
            request.model,
            chat.upstream_body(request.model),
            streaming=bool(request.stream),
            # The terminal event reports usage: the usage chunk always comes through.
            client_wants_usage=True,
            completion_tokens=chat.requested_tokens(),
            text_param="input",
            client_params=CLIENT_PARAMS,
        )

    def new_id(self) -> str:
        return f"resp_{uuid.uuid4().hex}"

    def render(
        self,
        parsed: ParsedRequest[ResponsesRequest],
        exchange: Exchange,
        answer: Chunk,
        response_id: str,
    ) -> dict[str, Any]:
        now = int(time.time())
        return from_chat(answer, parsed.request, response_id, now, completed_at=now)

    def stream(
        self,
        parsed: ParsedRequest[ResponsesRequest],
        exchange: Exchange,
        chunks: AsyncIterator[Chunk],
        response_id: str,
        record: RequestRecord,
    ) -> ResponseEvents:
        translator = ResponsesStream(parsed.request, response_id, int(time.time()))
        return ResponseEvents(chunks, translator, record)


def _framed(events: list[dict[str, Any]]) -> bytes:
    return b"".join(sse_event(event, name=str(event["type"])) for event in events)


class ResponseEvents:
    """The Responses API's named events; the token in a comment after the terminal one."""

    def __init__(
        self, chunks: AsyncIterator[Chunk], translator: ResponsesStream, record: RequestRecord
    ) -> None:
        self._chunks = chunks
        self._translator = translator
        self._record = record

    async def events(self) -> AsyncIterator[bytes]:
        yield _framed(self._translator.start())
        async for chunk in self._chunks:
            events = self._translator.feed(chunk)
            if any(e["type"] == "response.output_text.delta" for e in events):
                self._record.first_token()
            if events:
                yield _framed(events)
        yield _framed(self._translator.finish(completed_at=int(time.time())))

    def failure(self, error: GatewayError) -> bytes:
        return _framed(self._translator.fail(error.body()))

    def trailer(self, token: str, failed: bool) -> bytes:
        return token_comment(token)
