"""The legacy ``POST /v1/completions`` of a real engine: prompts, n, echo, stop, logprobs,
streaming, and OpenAI-shaped refusals that leave the engine healthy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.engine.conftest import MODEL, QUEUE, SLOTS, RunningEngine

NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


def body(prompt: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, **extra}


def complete(engine: RunningEngine, payload: dict[str, Any]) -> dict[str, Any]:
    with engine.client() as client:
        response = client.post("/v1/completions", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def stream(engine: RunningEngine, payload: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        engine.client() as client,
        client.stream("POST", "/v1/completions", json={**payload, "stream": True}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    return [json.loads(line[len("data: ") :]) for line in lines[:-1]]


def test_string_prompt_continues_the_text_with_openais_defaults(engine: RunningEngine) -> None:
    result = complete(engine, body("The capital of France is", temperature=0))
    assert result["object"] == "text_completion"
    assert result["id"].startswith("cmpl-")
    assert result["model"] == MODEL
    (choice,) = result["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert "Paris" in choice["text"]
    usage = result["usage"]
    # max_tokens defaults to 16, as OpenAI's.
    assert usage["completion_tokens"] == 16 or choice["finish_reason"] == "stop"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_list_of_prompts_times_n_is_numbered_prompt_major(engine: RunningEngine) -> None:
    prompts = ["1, 2, 3,", "Roses are red,"]
    result = complete(engine, body(prompts, n=2, temperature=0, max_tokens=6))
    choices = result["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    alone = [complete(engine, body(p, temperature=0, max_tokens=6)) for p in prompts]
    for index, choice in enumerate(choices):
        assert choice["text"] == alone[index // 2]["choices"][0]["text"]
    assert result["usage"]["prompt_tokens"] == sum(a["usage"]["prompt_tokens"] for a in alone)
    assert result["usage"]["completion_tokens"] == sum(
        2 * a["usage"]["completion_tokens"] for a in alone
    )


def test_token_id_prompts_are_used_as_given(engine: RunningEngine) -> None:
    result = complete(engine, body([[504, 3575], [19556]], max_tokens=3, echo=True))
    assert result["usage"]["prompt_tokens"] == 3
    assert len(result["choices"]) == 2
    single = complete(engine, body([19556], max_tokens=3, echo=True, temperature=0))
    assert single["choices"][0]["text"].startswith("Hello")


def test_echo_puts_the_prompt_before_the_completion(engine: RunningEngine) -> None:
    prompt = "Once upon a time"
    plain = complete(engine, body(prompt, temperature=0, max_tokens=8))["choices"][0]["text"]
    echoed = complete(engine, body(prompt, temperature=0, max_tokens=8, echo=True))
    assert echoed["choices"][0]["text"] == prompt + plain


def test_stop_string_ends_the_text_before_it(engine: RunningEngine) -> None:
    payload = body("Monday, Tuesday, Wednesday,", temperature=0, max_tokens=20)
    text = complete(engine, payload)["choices"][0]["text"]
    stop = text.strip()[4:7]
    result = complete(engine, {**payload, "stop": [stop]})["choices"][0]
    assert result["finish_reason"] == "stop"
    assert result["text"] == text[: text.index(stop)]


def test_logprobs_come_in_the_legacy_shape(engine: RunningEngine) -> None:
    result = complete(engine, body("The sky is", temperature=0, max_tokens=8, logprobs=3))
    choice = result["choices"][0]
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    tokens = logprobs["tokens"]
    assert "".join(tokens) == choice["text"]
    assert len(tokens) == result["usage"]["completion_tokens"]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    assert logprobs["text_offset"] == offsets
    for token, value, top in zip(
        tokens, logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True
    ):
        assert value <= 0
        assert 3 <= len(top) <= 4  # the sampled token is always there
        assert top[token] == value
        # Greedy: the sampled token is the most likely one.
        assert value == pytest.approx(max(top.values()))


def test_stream_with_usage_matches_the_whole_answer(engine: RunningEngine) -> None:
    payload = body("The best thing about summer is", temperature=0, max_tokens=10, logprobs=1)
    whole = complete(engine, payload)
    chunks = stream(engine, {**payload, "stream_options": {"include_usage": True}})
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    *content, last = chunks
    assert last["choices"] == []
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert last["usage"][key] == whole["usage"][key]
    assert all(c["usage"] is None for c in content)
    text = "".join(c["choices"][0]["text"] for c in content)
    assert text == whole["choices"][0]["text"]
    tokens = [
        t
        for c in content
        if c["choices"][0]["logprobs"]
        for t in c["choices"][0]["logprobs"]["tokens"]
    ]
    assert tokens == whole["choices"][0]["logprobs"]["tokens"]
    assert content[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_streamed_echo_comes_first_and_no_usage_chunk_without_asking(
    engine: RunningEngine,
) -> None:
    chunks = stream(engine, body("Hello there", max_tokens=3, echo=True))
    assert chunks[0]["choices"][0]["text"] == "Hello there"
    assert all(c["choices"] for c in chunks)
    assert "usage" not in chunks[0]


def test_cancelled_stream_frees_its_slot(engine: RunningEngine) -> None:
    engine.wait_idle()
    cancelled = engine.health()["requests"]["cancelled"]
    with (
        engine.client() as client,
        client.stream(
            "POST", "/v1/completions", json=body("Count: 1, 2,", stream=True, **NEVER_ENDING)
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    health = engine.wait_idle()
    assert health["requests"]["cancelled"] == cancelled + 1


def test_suffix_is_refused_by_a_model_without_fill_in_the_middle(engine: RunningEngine) -> None:
    with engine.client() as client:
        response = client.post("/v1/completions", json=body("def f(", suffix="    return x"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "suffix"
    assert "fill-in-the-middle" in error["message"]


@pytest.mark.parametrize(
    ("payload", "status", "param", "code"),
    [
        (body("hi", frobnicate=1), 400, "frobnicate", "unknown_parameter"),
        (body("hi", best_of=2), 400, "best_of", "unsupported_parameter"),
        (body("hi", echo=True, logprobs=2), 400, "echo", "unsupported_parameter"),
        (body("hi", logprobs=21), 400, "logprobs", "invalid_value"),
        (body("hi", temperature=5), 400, "temperature", "invalid_value"),
        (body([]), 400, "prompt", "invalid_value"),
        (body(""), 400, "prompt", "invalid_value"),
        (body([10**6]), 400, "prompt", "invalid_value"),
        (body([-1]), 400, "prompt", "invalid_value"),
        (body("hi", logit_bias={"x": 1}), 400, "logit_bias", "invalid_value"),
        (body("word " * 600), 400, "prompt", "context_length_exceeded"),
        (body("hi", max_tokens=10_000), 400, "max_tokens", "context_length_exceeded"),
        (body(["a", "b", "c"], n=3), 400, "prompt", "invalid_value"),
        ({"prompt": "hi"}, 400, "model", "missing_required_parameter"),
        ({"model": MODEL}, 400, "prompt", "missing_required_parameter"),
        (body("hi", model="gpt-3.5-turbo-instruct"), 404, "model", "model_not_found"),
    ],
)
def test_bad_requests_get_openai_shaped_errors_and_the_engine_stays_healthy(
    engine: RunningEngine, payload: dict[str, Any], status: int, param: str, code: str
) -> None:
    assert SLOTS + QUEUE < 9  # the three prompts times three choices do not fit
    with engine.client() as client:
        response = client.post("/v1/completions", json=payload)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, code)
        assert set(error) == {"message", "type", "param", "code"}
        assert client.get("/health").json()["status"] == "ok"


def test_malformed_tenant_header_is_refused(engine: RunningEngine) -> None:
    with engine.client() as client:
        response = client.post(
            "/v1/completions", json=body("hi"), headers={"x-gateway-tenant": "not-hex"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-gateway-tenant"
