"""An OpenAI-compatible upstream that records every request and echoes the whole conversation.

    python -m bench.echo_upstream --port N --record FILE

Each request is appended to FILE as one JSON line, ``{"path", "headers", "body"}``, the raw
body base64-encoded exactly as received. The answer to a chat completion is the echo of the
request: its content is ``echo_text(messages)`` (every message's text, in order, one per
line), and if any assistant message carried ``tool_calls``, the answer carries copies of
all of them (new ids, the same name and arguments string) with ``finish_reason``
``tool_calls``. Streamed, content goes out in pieces of 1..7 characters and each tool call's
arguments in pieces of 1..5, sized by a generator seeded from the request's bytes, so a
given request always splits the same way. ``bench.pii_eval`` uses it to see what a
gateway forwards and whether the gateway restores the client's values in the answer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn


def message_text(message: dict[str, Any]) -> str:
    """A message's text: string content, or its text parts joined; null content is ''."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if part.get("type", "text") == "text"
        )
    return ""


def echo_text(messages: list[dict[str, Any]]) -> str:
    """What this upstream answers: every message's text in order, one per line."""
    return "\n".join(message_text(m) for m in messages)


def echoed_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of every assistant tool call in the request, under new ids."""
    calls = [
        call
        for m in messages
        if m.get("role") == "assistant"
        for call in (m.get("tool_calls") or [])
    ]
    return [
        {
            "id": f"call_echo_{index}",
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            },
        }
        for index, call in enumerate(calls)
    ]


def pieces(text: str, rng: random.Random, longest: int) -> Iterator[str]:
    at = 0
    while at < len(text):
        size = rng.randint(1, longest)
        yield text[at : at + size]
        at += size


def completion(body: dict[str, Any], content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-echo",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model"),
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": usage(content),
    }


def usage(content: str) -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": len(content), "total_tokens": 1 + len(content)}


def stream_events(
    body: dict[str, Any], content: str, calls: list[dict[str, Any]], seed: bytes
) -> Iterator[dict[str, Any]]:
    rng = random.Random(int.from_bytes(hashlib.sha256(seed).digest()[:8], "big"))
    base = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0}
    base["model"] = body.get("model")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces(content, rng, 7):
        yield chunk({"content": piece})
    for index, call in enumerate(calls):
        function = call["function"]
        head = {"index": index, "id": call["id"], "type": "function"}
        yield chunk(
            {"tool_calls": [{**head, "function": {"name": function["name"], "arguments": ""}}]}
        )
        for piece in pieces(function["arguments"], rng, 5):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": usage(content)}


def make_app(record: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        entry = {
            "path": scope["path"],
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": base64.b64encode(raw).decode(),
        }
        with record.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        if scope["path"].endswith("/models"):
            await respond(
                send, 200, {"object": "list", "data": [{"id": "echo", "object": "model"}]}
            )
            return
        if not scope["path"].endswith("/chat/completions"):
            await respond(send, 404, {"error": {"message": "not found", "type": "not_found"}})
            return
        body = json.loads(raw or b"{}")
        messages = body.get("messages") or []
        content, calls = echo_text(messages), echoed_tool_calls(messages)
        if body.get("stream"):
            await stream(send, stream_events(body, content, calls, raw))
        else:
            await respond(send, 200, completion(body, content, calls))

    return app


async def respond(send: Any, status: int, payload: dict[str, Any]) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def stream(send: Any, events: Iterator[dict[str, Any]]) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in events:
        data = b"data: " + json.dumps(event).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.record), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
