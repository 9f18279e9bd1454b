"""An OpenAI-compatible upstream that records every byte it receives and echoes.

    python -m tests.support.capture_upstream --port N --record FILE

Each request is appended to FILE as one JSON line: ``{"path", "headers", "body"}`` with
the raw body base64-encoded, exactly as received. The answer echoes the last user message:
non-streamed as one message, streamed one character per SSE event. Chunks deliberately omit
``id`` and ``role`` (some providers do), and the stream sends no ``finish_reason``.
A request whose last user message starts with ``CALL_TOOL`` is answered with a tool call
whose arguments are ``{"text": <the message>}``; one starting with ``INTRODUCE`` is echoed
after an e-mail address of the upstream's own, ``intruder@example.net``; one starting with
``please-reject`` gets a 400 in OpenAI's error shape.

For the response-side tests: ``ECHO_ARGS`` answers with a tool call whose arguments are
those of the last tool call in the request, exactly as received; ``ECHO_NAME`` appends
`` name=<the message's name>`` to the echo; ``REASONING`` also sends the echo in fields
outside ``content`` (``delta.reasoning_content`` / ``message.reasoning_content`` and a
top-level ``provider_note``), after an e-mail address of the upstream's own.
``IDENTIFIERS`` answers with the echo plus identifier fields of the upstream's own: the
message ``name`` and a tool call ``id`` hold ``intruder@example.net``, the tool call's
``function.name`` the phone number ``(212) 555-0187``. ``CHOICES`` answers with two
choices: index 0 the echo, index 1 the echo after ``intruder@example.net``; streamed, one
character of each per event, the two interleaved (some events carry both choices).
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import uvicorn


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content)
            return str(content or "")
    return ""


def last_user_message(body: dict[str, Any]) -> dict[str, Any]:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return dict(message)
    return {}


def last_tool_call_arguments(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        for call in message.get("tool_calls") or ():
            return str(call.get("function", {}).get("arguments", ""))
    return ""


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
        with record.open("a") as handle:
            handle.write(
                json.dumps(
                    {
                        "path": scope["path"],
                        "headers": {
                            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                        },
                        "body": base64.b64encode(raw).decode(),
                    }
                )
                + "\n"
            )
        if scope["path"].endswith("/models"):
            await _respond(send, 200, b"application/json", b'{"object":"list","data":[]}')
            return
        body = json.loads(raw or b"{}")
        text = last_user_text(body)
        if text.startswith("please-reject"):
            await _respond(
                send,
                400,
                b"application/json",
                json.dumps(
                    {
                        "error": {
                            "message": "This request is not acceptable to the provider.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "bad_request",
                        }
                    }
                ).encode(),
            )
            return
        if text.startswith("INTRODUCE"):
            text = "Ask intruder@example.net. " + text
        if text.startswith("ECHO_NAME"):
            text += " name=" + str(last_user_message(body).get("name"))
        if text.startswith("REASONING"):
            await _reasoning(send, body, text)
            return
        if text.startswith("IDENTIFIERS"):
            await _identifiers(send, body, text)
            return
        if text.startswith("CHOICES"):
            await _choices(send, body, text)
            return
        if text.startswith("CALL_TOOL") or text.startswith("ECHO_ARGS"):
            arguments = (
                json.dumps({"text": text})
                if text.startswith("CALL_TOOL")
                else last_tool_call_arguments(body)
            )
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "echo", "arguments": arguments},
                    }
                ],
            }
            if body.get("stream"):
                events = [
                    {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": "call_1",
                                            "type": "function",
                                            "function": {"name": "echo", "arguments": ""},
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ]
                events += [
                    {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [{"index": 0, "function": {"arguments": ch}}]
                                },
                            }
                        ]
                    }
                    for ch in arguments
                ]
                await _stream(send, events)
            else:
                await _respond(
                    send,
                    200,
                    b"application/json",
                    json.dumps(
                        {
                            "id": "chatcmpl-capture",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body.get("model"),
                            "choices": [
                                {"index": 0, "message": message, "finish_reason": "tool_calls"}
                            ],
                            "usage": {
                                "prompt_tokens": 1,
                                "completion_tokens": 1,
                                "total_tokens": 2,
                            },
                        }
                    ).encode(),
                )
            return
        if body.get("stream"):
            events = [{"choices": [{"index": 0, "delta": {"content": ch}}]} for ch in text]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(
                    {
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 1,
                            "completion_tokens": len(text),
                            "total_tokens": 1 + len(text),
                        },
                    }
                )
            await _stream(send, events)
            return
        await _respond(
            send,
            200,
            b"application/json",
            json.dumps(
                {
                    "id": "chatcmpl-capture",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": len(text),
                        "total_tokens": 1 + len(text),
                    },
                }
            ).encode(),
        )

    return app


async def _reasoning(send: Any, body: dict[str, Any], text: str) -> None:
    thought = "Think of intruder@example.net. " + text
    if body.get("stream"):
        events = [
            {"provider_note": text, "choices": [{"index": 0, "delta": {"reasoning_content": ch}}]}
            for ch in thought
        ]
        events += [{"choices": [{"index": 0, "delta": {"content": ch}}]} for ch in text]
        await _stream(send, events)
        return
    message = {"role": "assistant", "content": text, "reasoning_content": thought}
    await _respond(
        send,
        200,
        b"application/json",
        json.dumps(
            {
                "id": "chatcmpl-capture",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "provider_note": text,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        ).encode(),
    )


INTRUDER = "intruder@example.net"
INTRUDER_PHONE = "(212) 555-0187"


async def _identifiers(send: Any, body: dict[str, Any], text: str) -> None:
    call = {
        "id": INTRUDER,
        "type": "function",
        "function": {"name": INTRUDER_PHONE, "arguments": json.dumps({"text": text})},
    }
    if body.get("stream"):
        first = {"index": 0, **call, "function": {**call["function"], "arguments": ""}}
        events: list[dict[str, Any]] = [
            {"choices": [{"index": 0, "delta": {"name": INTRUDER, "tool_calls": [first]}}]}
        ]
        events += [
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ch}}]},
                    }
                ]
            }
            for ch in call["function"]["arguments"]
        ]
        events += [{"choices": [{"index": 0, "delta": {"content": ch}}]} for ch in text]
        await _stream(send, events)
        return
    message = {"role": "assistant", "name": INTRUDER, "content": text, "tool_calls": [call]}
    await _respond(
        send,
        200,
        b"application/json",
        json.dumps(
            {
                "id": "chatcmpl-capture",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            }
        ).encode(),
    )


async def _choices(send: Any, body: dict[str, Any], text: str) -> None:
    texts = [text, f"Also {INTRUDER}: " + text]
    if body.get("stream"):
        events: list[dict[str, Any]] = []
        for position in range(max(len(t) for t in texts)):
            parts = [
                {"index": index, "delta": {"content": t[position]}}
                for index, t in enumerate(texts)
                if position < len(t)
            ]
            if position % 3 == 0:
                events.append({"choices": parts[::-1]})  # both choices in one event
            else:
                events += [{"choices": [part]} for part in parts]
        await _stream(send, events)
        return
    choices = [
        {"index": index, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
        for index, t in enumerate(texts)
    ]
    await _respond(
        send,
        200,
        b"application/json",
        json.dumps(
            {
                "id": "chatcmpl-capture",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": choices,
            }
        ).encode(),
    )


async def _respond(send: Any, status: int, content_type: bytes, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _stream(send: Any, events: list[dict[str, Any]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    for event in events:
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + json.dumps(event).encode() + b"\n\n",
                "more_body": True,
            }
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.record), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
