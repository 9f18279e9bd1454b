"""Many streams at once through one gateway worker (TLS, PII patterns) against a real upstream
that streams at a steady rate: every stream complete, signed and in order, and the memory an
open stream holds bounded. The long version (1,000 streams, gaps and memory reported) is
``make bench-stream``; this is its smoke test, with no timing asserted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from bench.stack import start_steady_upstream
from bench.steady_upstream import WORD
from bench.stream_bench import KEY, Target, gateway_config, run_target
from tests.gateway.conftest import RunningGateway, start_gateway, stop_gateway

STREAMS = 100
CHUNKS = 40
INTERVAL_S = 0.05


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("many-streams")
    upstream, url = start_steady_upstream(subprocess.DEVNULL, CHUNKS, INTERVAL_S)
    try:
        config = gateway_config(tmp, "streams", url, False, STREAMS)
        config["api_keys"][0]["name"] = "streams"
        running = start_gateway(tmp, config, key=KEY)
        try:
            yield running
        finally:
            stop_gateway(running)
    finally:
        upstream.terminate()
        upstream.wait()


def target(gateway: RunningGateway) -> Target:
    port = int(gateway.url.rsplit(":", 1)[1])
    return Target(
        "gateway",
        "127.0.0.1",
        port,
        "/v1/chat/completions",
        KEY,
        ssl.create_default_context(cafile=str(gateway.cert)),
        True,
    )


def test_a_hundred_streams_at_once_all_complete_and_memory_stays_bounded(
    streaming: RunningGateway,
) -> None:
    asyncio.run(run_target(target(streaming), 4, CHUNKS, 0.1, 120, streaming.process.pid))
    result = asyncio.run(
        run_target(target(streaming), STREAMS, CHUNKS, 1.0, 300, streaming.process.pid)
    )
    assert result["errors"] == {}
    assert result["complete"] == STREAMS
    assert result["chunks_received"] == STREAMS * CHUNKS
    # What an open stream holds (its connections, buffers and state): bounded, and reported
    # by the bench. Measured at about 0.3 MiB; 4 MiB would mean something is kept per chunk.
    assert result["kib_per_open_stream"] is not None
    assert result["kib_per_open_stream"] < 4096


def test_a_stream_through_the_gateway_is_the_upstream_text_exactly_and_signed(
    streaming: RunningGateway,
) -> None:
    body = {
        "model": "mock",
        "stream": True,
        "messages": [{"role": "user", "content": "Mail ada.lovelace@example.org today."}],
    }
    text, comments, done = "", [], False
    with (
        streaming.client(key=KEY) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(": attestation_token "):
                comments.append(line)
            elif line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    text += choice["delta"].get("content") or ""
    assert text == WORD * CHUNKS
    assert done and len(comments) == 1
