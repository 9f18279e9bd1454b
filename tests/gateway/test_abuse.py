"""Abuse: malformed and hostile input gets a clear OpenAI-shaped answer and nothing breaks."""

from __future__ import annotations

import json
import socket
import ssl
import time

import httpx
import pytest

from tests.gateway.conftest import MODEL, RunningGateway


def post_raw(gateway: RunningGateway, body: bytes, **headers: str) -> httpx.Response:
    with gateway.client() as client:
        return client.post(
            "/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", **headers},
        )


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_deeply_nested_json_is_a_400_not_a_crash(gateway: RunningGateway) -> None:
    depth = 100_000
    body = b'{"model": "smollm2", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    body = body[:60000]  # stays under the body limit, still far deeper than any parser allows
    error_of(post_raw(gateway, body), 400)
    for depth in (150, 3000):  # parseable by the edge's parser, and far beyond its limit
        schema = '{"p":' * depth + "{}" + "}" * depth
        body = (
            '{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "tools": '
            '[{"type": "function", "function": {"name": "f", "parameters": ' + schema + "}}]}"
        ).encode()
        response = post_raw(gateway, body)
        assert response.status_code in {200, 400}, response.text[:300]
        if response.status_code == 400:
            error_of(response, 400)
    with gateway.client() as client:
        assert client.get("/health").status_code == 200


def test_invalid_utf8_is_a_400(gateway: RunningGateway) -> None:
    body = b'{"model": "smollm2", "messages": [{"role": "user", "content": "\xff\xfe bad"}]}'
    assert error_of(post_raw(gateway, body), 400)["code"] == "invalid_json"


def test_chunked_oversized_body_is_a_413(gateway: RunningGateway) -> None:
    def chunks():  # no content-length: the limit must hold while reading
        for _ in range(100):
            yield b"x" * 1024

    with gateway.client() as client:
        response = client.post("/v1/chat/completions", content=chunks())
    assert error_of(response, 413)["code"] == "request_too_large"


def test_huge_n_and_max_tokens_are_refused(gateway: RunningGateway) -> None:
    base = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    error_of(post_raw(gateway, json.dumps({**base, "n": 10_000}).encode()), 400)
    error = error_of(post_raw(gateway, json.dumps({**base, "max_tokens": 10**9}).encode()), 400)
    assert error["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    "value", ["a" * 500, "id%0d%0aSet-Cookie:%20x=1", "ünïcode".encode(), "a b", "x;y=z"]
)
def test_hostile_request_ids_are_replaced(gateway: RunningGateway, value: str | bytes) -> None:
    with gateway.client() as client:
        response = client.get("/health", headers={"x-request-id": value})
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
    assert "set-cookie" not in response.headers


def test_header_injection_on_the_wire_is_refused(gateway: RunningGateway) -> None:
    host, port = gateway.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(gateway.cert))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: ok\r\n Injected: folded\r\n\r\n"
        )
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400") or b"Injected" not in answer


def test_a_slow_client_gets_408(gateway: RunningGateway) -> None:
    host, port = gateway.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(gateway.cert))
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer sk-test-full-0123456789\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"mo'
        )
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = tls.recv(4096)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 15
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"


def test_weak_tls_ciphers_are_refused(gateway: RunningGateway) -> None:
    context = ssl.create_default_context(cafile=str(gateway.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA:AES256-SHA:DES-CBC3-SHA")
    with pytest.raises((httpx.ConnectError, ssl.SSLError)):
        httpx.get(gateway.url + "/health", verify=context, timeout=5)
