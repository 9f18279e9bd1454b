"""An OpenAI-compatible upstream that answers instantly with a fixed completion.

    python -m bench.mock_upstream --port 9000

A bare ASGI app (no framework) so it stays far faster than anything measured through it.
``POST /v1/chat/completions`` and ``/v1/completions`` answer JSON, or SSE when
``"stream": true`` (the body is only scanned for that flag); ``POST /v1/embeddings`` answers
one fixed vector; ``GET /v1/models`` answers a one-model list.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
USAGE = {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)}

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": "mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()


def _chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = (
    _chunk({"role": "assistant", "content": ""}, None)
    + b"".join(_chunk({"content": w}, None) for w in WORDS)
    + _chunk({}, "stop")
)
STREAM_USAGE = _chunk({}, None, USAGE)
TEXT_COMPLETION = json.dumps(
    {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": 0,
        "model": "mock",
        "choices": [
            {"index": 0, "text": "".join(WORDS), "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }
).encode()
TEXT_STREAM = b"".join(
    b"data: "
    + json.dumps(
        {
            "id": "cmpl-mock",
            "object": "text_completion",
            "created": 0,
            "model": "mock",
            "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}],
        }
    ).encode()
    + b"\n\n"
    for w in WORDS
)
EMBEDDING = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
        "model": "mock",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "mock", "object": "model"}]}).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    streaming = b'"stream":true' in body.replace(b" ", b"")
    if scope["path"].endswith("/models"):
        payload, content_type = MODELS, b"application/json"
    elif scope["path"].endswith("/embeddings"):
        payload, content_type = EMBEDDING, b"application/json"
    elif scope["path"].endswith("/v1/completions") and streaming:
        payload = (
            TEXT_STREAM + (STREAM_USAGE if b"include_usage" in body else b"") + b"data: [DONE]\n\n"
        )
        content_type = b"text/event-stream"
    elif scope["path"].endswith("/v1/completions"):
        payload, content_type = TEXT_COMPLETION, b"application/json"
    elif streaming:
        payload = STREAM + (STREAM_USAGE if b"include_usage" in body else b"") + b"data: [DONE]\n\n"
        content_type = b"text/event-stream"
    else:
        payload, content_type = COMPLETION, b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
