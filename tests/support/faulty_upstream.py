"""An OpenAI-compatible upstream that misbehaves on purpose, chosen by the URL prefix:

/hang/...      accepts the request and never answers
/garbage/...   200 with a body that is not JSON
/badsse/...    200 event stream whose first event is not JSON
/midhang/...   a stream that sends one chunk and then stalls forever

python -m tests.support.faulty_upstream --port N
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn

CHUNK = {
    "id": "c",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "x",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "partial"}, "finish_reason": None}
    ],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path.endswith("/models"):
        await _send(send, 200, b"application/json", b'{"data":[]}')
    elif path.startswith("/hang/"):
        await asyncio.sleep(3600)
    elif path.startswith("/garbage/"):
        await _send(send, 200, b"application/json", b"<html>definitely not json")
    elif path.startswith("/badsse/"):
        await _send(send, 200, b"text/event-stream", b"data: {not json\n\ndata: [DONE]\n\n")
    elif path.startswith("/midhang/"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "more_body": True,
                "body": b"data: " + json.dumps(CHUNK).encode() + b"\n\n",
            }
        )
        await asyncio.sleep(3600)
    else:
        await _send(send, 404, b"application/json", b'{"error":{"message":"no"}}')


async def _send(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
