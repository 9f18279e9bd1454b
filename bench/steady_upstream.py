"""An OpenAI-compatible upstream that streams chat chunks at a steady rate, for stream benches.

    python -m bench.steady_upstream --port 9000 --chunks 200 --interval 0.1

Raw asyncio over HTTP/1.1 keep-alive (no framework, uvloop when installed), so a thousand
open streams cost it little and the gateway in front of it is what gets measured.
``POST .../chat/completions`` answers a stream of ``--chunks`` content chunks, chunk i sent at
``start + i * interval`` (an absolute schedule: a late wake-up does not delay the rest), then
a usage chunk and ``[DONE]``; ``"stream": false`` gets one whole completion. ``GET .../models``
answers a one-model list. Anything else is a 404.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

WORD = "lorem "
MODEL_LIST = json.dumps({"object": "list", "data": [{"id": "mock", "object": "model"}]}).encode()


def chunk_event(body: dict[str, object]) -> bytes:
    event = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


CONTENT = chunk_event(
    {
        "id": "chatcmpl-steady",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "mock",
        "choices": [{"index": 0, "delta": {"content": WORD}, "finish_reason": None}],
    }
)


def tail(chunks: int) -> bytes:
    usage = {"prompt_tokens": 16, "completion_tokens": chunks, "total_tokens": 16 + chunks}
    stop = chunk_event(
        {
            "id": "chatcmpl-steady",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "mock",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    usage_event = chunk_event(
        {
            "id": "chatcmpl-steady",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "mock",
            "choices": [],
            "usage": usage,
        }
    )
    done = b"data: [DONE]\n\n"
    return stop + usage_event + b"%x\r\n%s\r\n" % (len(done), done) + b"0\r\n\r\n"


def whole(chunks: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-steady",
            "object": "chat.completion",
            "created": 0,
            "model": "mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": WORD * chunks},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 16,
                "completion_tokens": chunks,
                "total_tokens": 16 + chunks,
            },
        }
    ).encode()


def response_head(status: str, content_type: str, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type.encode()
        + b"\r\n"
        + framing
        + b"\r\n\r\n"
    )


class SteadyUpstream:
    def __init__(self, chunks: int, interval: float) -> None:
        self.chunks = chunks
        self.interval = interval
        self._tail = tail(chunks)

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                length = 0
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                await self._answer(method, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if method == "GET" and path.endswith("/models"):
            writer.write(response_head("200 OK", "application/json", len(MODEL_LIST)) + MODEL_LIST)
            await writer.drain()
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            writer.write(response_head("404 Not Found", "text/plain", 0))
            await writer.drain()
            return
        if b'"stream":true' not in body.replace(b" ", b""):
            answer = whole(self.chunks)
            writer.write(response_head("200 OK", "application/json", len(answer)) + answer)
            await writer.drain()
            return
        writer.write(response_head("200 OK", "text/event-stream", None) + CONTENT)
        start = time.monotonic()
        for i in range(1, self.chunks):
            delay = start + i * self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(CONTENT)
            await writer.drain()
        writer.write(self._tail)
        await writer.drain()


async def serve(port: int, chunks: int, interval: float) -> None:
    upstream = SteadyUpstream(chunks, interval)
    server = await asyncio.start_server(
        upstream.serve_connection, "127.0.0.1", port, backlog=4096, limit=1 << 20
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between chunks")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.chunks, args.interval))


if __name__ == "__main__":
    main()
