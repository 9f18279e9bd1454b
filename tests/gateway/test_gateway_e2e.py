"""The gateway end to end: real TLS, a real engine child, real OpenAI and LangChain clients."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import (
    KEY,
    LIMITED_KEY,
    LIMITED_RPM,
    MODEL,
    NARROW_KEY,
    REVOKED_KEY,
    RunningGateway,
)

NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


def chat(content: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-request-id"]
    return error


def test_openai_sdk_over_tls_non_stream_and_stream(gateway: RunningGateway) -> None:
    import openai

    http_client = httpx.Client(verify=gateway.tls_context())
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, http_client=http_client)
    result = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12
    )
    assert result.choices[0].message.content
    assert result.usage is not None and result.usage.completion_tokens > 0
    pieces: list[str] = []
    usage = None
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces)
    assert usage is not None and usage.completion_tokens > 0
    models = client.models.list()
    assert MODEL in [m.id for m in models.data]
    http_client.close()


def test_langchain_chat_openai_invoke_and_stream(gateway: RunningGateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL,
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_tokens=12,
        http_client=httpx.Client(verify=gateway.tls_context()),
        http_async_client=httpx.AsyncClient(verify=gateway.tls_context()),
    )
    answer = llm.invoke("Name an animal.")
    assert isinstance(answer.content, str) and answer.content
    streamed = "".join(str(part.content) for part in llm.stream("Name an animal."))
    assert streamed


def test_stream_without_include_usage_has_no_usage_and_one_done(gateway: RunningGateway) -> None:
    with (
        gateway.client() as client,
        client.stream(
            "POST", "/v1/chat/completions", json=chat(max_tokens=8, stream=True)
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines.count("data: [DONE]") == 1 and lines[-1] == "data: [DONE]"
    *events, token_line, _ = lines
    chunks = [json.loads(line[6:]) for line in events]
    # No chunk without choices (clients read choices[0] of every chunk), no usage: the
    # token rides an SSE comment line, which every SSE parser skips.
    assert chunks and all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert token_line.startswith(": attestation_token ") and token_line.count(".") == 2


def test_missing_wrong_and_revoked_keys_get_401(gateway: RunningGateway) -> None:
    for key in (None, "sk-wrong", REVOKED_KEY):
        with gateway.client(key) as client:
            error = assert_openai_error(
                client.post("/v1/chat/completions", json=chat()), 401, "invalid_api_key"
            )
        assert "sk-" not in error["message"]
    with gateway.client(None) as client:
        response = client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Basic abc"}
        )
        assert_openai_error(response, 401, "invalid_api_key")
        assert_openai_error(client.get("/v1/models"), 401)


def test_model_not_allowed_and_unknown_model_look_the_same(gateway: RunningGateway) -> None:
    with gateway.client(NARROW_KEY) as client:
        not_allowed = assert_openai_error(
            client.post("/v1/chat/completions", json=chat()), 404, "model_not_found"
        )
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["dead"]
    with gateway.client() as client:
        unknown = assert_openai_error(
            client.post("/v1/chat/completions", json={**chat(), "model": "gpt-9"}),
            404,
            "model_not_found",
        )
    assert not_allowed["param"] == unknown["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (chat(top_logprobs=3), "top_logprobs", "invalid_value"),
        (chat(functions=[]), "functions", "unsupported_parameter"),
        (chat(web_search_options={}), "web_search_options", "unsupported_parameter"),
        (chat(temperature=9), "temperature", "invalid_value"),
        (chat(n=100), "n", "invalid_value"),
        ({"model": MODEL, "messages": []}, "messages", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
        (chat(stream_options={"include_usage": True}), None, "invalid_value"),
    ],
)
def test_invalid_parameters_get_400_naming_them(
    gateway: RunningGateway, body: dict[str, Any], param: str | None, code: str
) -> None:
    with gateway.client() as client:
        error = assert_openai_error(client.post("/v1/chat/completions", json=body), 400, code)
    assert error["param"] == param


def test_upstream_rejection_passes_through_with_its_status(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        error = assert_openai_error(
            client.post("/v1/chat/completions", json=chat("word " * 2000, max_tokens=4)),
            400,
            "context_length_exceeded",
        )
    assert error["param"] == "messages"


def test_malformed_json_oversized_body_and_unknown_route(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        assert_openai_error(
            client.post(
                "/v1/chat/completions",
                content=b'{"model": ',
                headers={"content-type": "application/json"},
            ),
            400,
            "invalid_json",
        )
        assert_openai_error(
            client.post("/v1/chat/completions", json=chat("x" * 70_000)), 413, "request_too_large"
        )
        assert_openai_error(client.get("/v2/whatever"), 404)
        assert_openai_error(client.get("/v1/chat/completions"), 405)


def test_rate_limit_answers_429_with_retry_after(gateway: RunningGateway) -> None:
    with gateway.client(LIMITED_KEY) as client:
        statuses = [
            client.post("/v1/chat/completions", json=chat(max_tokens=1)).status_code
            for _ in range(LIMITED_RPM)
        ]
        assert statuses == [200] * LIMITED_RPM
        response = client.post("/v1/chat/completions", json=chat(max_tokens=1))
        error = assert_openai_error(response, 429, "rate_limit_exceeded")
    assert int(response.headers["retry-after"]) >= 1
    assert error["type"] == "requests"


def test_request_id_is_always_the_gateways_and_a_client_id_is_only_echoed_back(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as client:
        ok = client.get("/health", headers={"x-request-id": "client-id.42"})
        assert ok.headers["x-request-id"].startswith("req_")
        assert ok.headers["x-client-request-id"] == "client-id.42"
        own = client.get("/health", headers={"x-client-request-id": "mine-7"})
        assert own.headers["x-client-request-id"] == "mine-7"
        bad = client.get("/health", headers={"x-request-id": "has spaces; and=stuff"})
        assert bad.headers["x-request-id"].startswith("req_")
        assert "x-client-request-id" not in bad.headers
        error = client.post("/v1/chat/completions", json={})
        assert error.headers["x-request-id"].startswith("req_")


def test_health_ready_and_openapi(gateway: RunningGateway) -> None:
    with gateway.client(None) as client:
        assert client.get("/health").json() == {"status": "ok"}
        # Anyone learns whether the gateway is ready; model names only a key's holder.
        assert set(client.get("/ready").json()) == {"ready"}
        spec = client.get("/openapi.json").json()
    with gateway.client(NARROW_KEY) as client:
        assert set(client.get("/ready").json()["models"]) == {"dead"}
    with gateway.client() as client:
        assert client.get("/ready").json()["models"][MODEL] is True
    assert spec["openapi"].startswith("3.")
    assert "/v1/chat/completions" in spec["paths"]
    assert "ChatCompletionRequest" in spec["components"]["schemas"]


def test_plain_http_is_not_served_on_the_tls_port(gateway: RunningGateway) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(gateway.url.replace("https://", "http://") + "/health", timeout=5)


def test_old_tls_versions_are_refused(gateway: RunningGateway) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(gateway.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises((httpx.ConnectError, ssl.SSLError)):
        httpx.get(gateway.url + "/health", verify=context, timeout=5)


def test_fallback_group_serves_when_the_primary_is_down(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions", json={**chat(max_tokens=4), "model": "flaky"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] is not None


def test_model_without_a_healthy_upstream_answers_503(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        response = client.post("/v1/chat/completions", json={**chat(), "model": "dead"})
        assert_openai_error(response, 503, "no_healthy_upstream")
        assert response.headers["retry-after"]
        stream = client.post("/v1/chat/completions", json={**chat(stream=True), "model": "dead"})
        assert_openai_error(stream, 503, "no_healthy_upstream")


def test_client_disconnect_frees_the_engine_slot(gateway: RunningGateway) -> None:
    gateway.wait_engine_idle()
    cancelled_before = gateway.engine_health()["requests"]["cancelled"]
    with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=chat("Count to a thousand.", stream=True, **NEVER_ENDING),
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert gateway.engine_health()["slots"]["busy"] == 1
    health = gateway.wait_engine_idle(timeout=10)
    assert health["requests"]["cancelled"] == cancelled_before + 1


def test_non_streaming_client_disconnect_frees_the_engine_slot(gateway: RunningGateway) -> None:
    gateway.wait_engine_idle()
    with gateway.client(timeout=1.0) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=chat("Count to a thousand.", **NEVER_ENDING))
    gateway.wait_engine_idle(timeout=10)


def test_killed_engine_is_restarted_and_the_next_request_succeeds(gateway: RunningGateway) -> None:
    [pid] = gateway.engine_pids()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    with gateway.client() as client:
        # The gateway notices, restarts the engine with backoff, and reports ready again.
        while True:
            pids = gateway.engine_pids()
            ready = client.get("/ready").json()["models"][MODEL]
            if pids and pids != [pid] and ready:
                break
            assert time.monotonic() < deadline, "engine was not restarted"
            time.sleep(0.1)
        response = client.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert response.status_code == 200, response.text
