"""The engine process end to end: real model, real socket, real batching."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.engine.conftest import CTX_PER_SLOT, MODEL, QUEUE, SLOTS, RunningEngine

# Forbid the end-of-turn tokens so a generation runs until max_tokens.
NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def complete(engine: RunningEngine, body: dict[str, Any]) -> dict[str, Any]:
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stream_deltas(engine: RunningEngine, body: dict[str, Any]) -> tuple[list[str], list[dict]]:
    """Content deltas in order, and every chunk, of a streamed completion."""
    deltas: list[str] = []
    chunks: list[dict] = []
    with (
        engine.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        chunk = json.loads(line[len("data: ") :])
        chunks.append(chunk)
        for choice in chunk["choices"]:
            if choice["delta"].get("content"):
                deltas.append(choice["delta"]["content"])
    return deltas, chunks


def test_concurrent_requests_all_complete_with_sensible_text(engine: RunningEngine) -> None:
    topics = ["the sea", "a mountain", "coffee", "a library", "the moon", "rain", "a train", "bees"]

    async def one(client: httpx.AsyncClient, topic: str) -> dict[str, Any]:
        response = await client.post(
            "/v1/chat/completions",
            json=chat(f"Write one sentence about {topic}.", max_tokens=48, seed=7),
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def all_of_them() -> list[dict[str, Any]]:
        async with engine.async_client() as client:
            return await asyncio.gather(*(one(client, t) for t in topics))

    before = engine.health()["decode_steps"]
    results = asyncio.run(all_of_them())
    after = engine.health()["decode_steps"]
    total_tokens = 0
    for result in results:
        choice = result["choices"][0]
        text = choice["message"]["content"]
        assert choice["finish_reason"] in {"stop", "length"}
        assert len(text.split()) >= 3, text
        assert any(ch.isalpha() for ch in text)
        usage = result["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        total_tokens += usage["completion_tokens"]
    # Batching: far fewer decode steps than tokens generated one request at a time.
    assert after - before < total_tokens
    engine.wait_idle()


def test_same_seed_reproduces_the_same_output_when_run_alone(engine: RunningEngine) -> None:
    body = chat("Invent a name for a cat.", temperature=0.9, seed=1234, max_tokens=24)
    first = complete(engine, body)["choices"][0]["message"]["content"]
    second = complete(engine, body)["choices"][0]["message"]["content"]
    assert first == second
    other = {**body, "seed": 4321}
    outputs = {
        complete(engine, {**other, "seed": s})["choices"][0]["message"]["content"]
        for s in (1, 2, 3)
    }
    assert len(outputs) > 1, "different seeds should not all give the same sample"


def test_stop_string_spanning_token_boundary_is_matched_and_not_emitted(
    engine: RunningEngine,
) -> None:
    body = chat("Describe a sunny day at the beach.", temperature=0, max_tokens=40)
    deltas, _ = stream_deltas(engine, body)
    full = "".join(deltas)
    # Pick a stop string made of the end of one token and the start of the next.
    index = next(
        i for i in range(3, len(deltas) - 1) if len(deltas[i]) >= 2 and len(deltas[i + 1]) >= 2
    )
    stop = deltas[index][-2:] + deltas[index + 1][:2]
    expected = full[: full.index(stop)]

    result = complete(engine, {**body, "stop": [stop]})
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["choices"][0]["message"]["content"] == expected
    streamed, _ = stream_deltas(engine, {**body, "stop": stop})
    assert "".join(streamed) == expected
    assert stop not in "".join(streamed)


def test_max_tokens_and_max_completion_tokens_cap_the_answer(engine: RunningEngine) -> None:
    body = chat("Tell me a long story about dragons.", temperature=0)
    for field in ("max_tokens", "max_completion_tokens"):
        result = complete(engine, {**body, field: 5})
        assert result["usage"]["completion_tokens"] == 5
        assert result["choices"][0]["finish_reason"] == "length"


def test_json_mode_output_parses(engine: RunningEngine) -> None:
    result = complete(
        engine,
        chat(
            "Give me a JSON object describing a book with a title and an author.",
            response_format={"type": "json_object"},
            temperature=0,
            max_tokens=200,
        ),
    )
    assert result["choices"][0]["finish_reason"] == "stop"
    assert isinstance(json.loads(result["choices"][0]["message"]["content"]), dict)


def test_json_schema_output_follows_the_schema(engine: RunningEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    result = complete(
        engine,
        chat(
            "Name a city and its population.",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": schema, "strict": True},
            },
            temperature=0,
            max_tokens=120,
        ),
    )
    data = json.loads(result["choices"][0]["message"]["content"])
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_stream_has_role_first_usage_last_and_one_done(engine: RunningEngine) -> None:
    deltas, chunks = stream_deltas(
        engine,
        chat("Say hello.", max_tokens=12, stream_options={"include_usage": True}),
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 12 or chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert all(c["id"] == chunks[0]["id"] for c in chunks)
    assert deltas


def test_n_returns_independent_choices(engine: RunningEngine) -> None:
    result = complete(engine, chat("Name a fruit.", n=2, max_tokens=8, seed=3))
    assert [c["index"] for c in result["choices"]] == [0, 1]
    assert all(c["message"]["content"] for c in result["choices"])
    # Both choices are counted; each is capped at 8 tokens.
    assert 2 <= result["usage"]["completion_tokens"] <= 16


def test_cancelled_stream_frees_its_slot(engine: RunningEngine) -> None:
    engine.wait_idle()
    cancelled_before = engine.health()["requests"]["cancelled"]
    with (
        engine.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=chat("Count from one to one thousand.", stream=True, **NEVER_ENDING),
        ) as response,
    ):
        # Keep the line iterator referenced: dropping it closes the connection early.
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
        assert engine.health()["slots"]["busy"] == 1
    health = engine.wait_idle(timeout=10)
    assert health["requests"]["cancelled"] == cancelled_before + 1


def test_non_streaming_client_that_disconnects_frees_its_slot(engine: RunningEngine) -> None:
    engine.wait_idle()
    with engine.client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/chat/completions",
            json=chat("Count from one to one thousand.", **NEVER_ENDING),
        )
    engine.wait_idle(timeout=10)


def test_requests_past_the_queue_bound_get_503_with_retry_after(engine: RunningEngine) -> None:
    engine.wait_idle()

    async def scenario() -> httpx.Response:
        async with engine.async_client() as client:
            body = chat("Count from one to one thousand.", stream=True, **NEVER_ENDING)
            streams = [
                client.stream("POST", "/v1/chat/completions", json=body)
                for _ in range(SLOTS + QUEUE)
            ]
            opened = []
            try:
                for stream in streams:
                    opened.append(await stream.__aenter__())
                for _ in range(200):
                    health = (await client.get("/health")).json()
                    if health["slots"]["busy"] == SLOTS and health["queue"]["depth"] == QUEUE:
                        break
                    await asyncio.sleep(0.05)
                return await client.post("/v1/chat/completions", json=chat("hi", max_tokens=2))
            finally:
                for stream in streams[: len(opened)]:
                    await stream.__aexit__(None, None, None)

    response = asyncio.run(scenario())
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    error = response.json()["error"]
    assert error["code"] == "engine_overloaded" and error["type"] == "server_error"
    engine.wait_idle(timeout=20)


def test_prompt_longer_than_the_context_answers_400(engine: RunningEngine) -> None:
    with engine.client() as client:
        response = client.post(
            "/v1/chat/completions", json=chat("word " * (CTX_PER_SLOT * 2), max_tokens=4)
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert str(CTX_PER_SLOT) in error["message"]
        response = client.post("/v1/chat/completions", json=chat("hello", max_tokens=CTX_PER_SLOT))
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "max_tokens"
    assert engine.health()["slots"]["busy"] == 0


def test_follow_up_turn_hits_the_prompt_cache(engine: RunningEngine) -> None:
    engine.wait_idle()
    history = [{"role": "user", "content": "My favourite colour is teal. Remember it."}]
    first = complete(engine, {"model": MODEL, "messages": history, "max_tokens": 16})
    hits_before = engine.health()["prompt_cache"]["hits"]
    history += [
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "What is my favourite colour?"},
    ]
    second = complete(engine, {"model": MODEL, "messages": history, "max_tokens": 16})
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1
    assert engine.health()["prompt_cache"]["hits"] == hits_before + 1


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (chat("hi", frobnicate=1), 400, "frobnicate", "unknown_parameter"),
        (chat("hi", temperature=3), 400, "temperature", "invalid_value"),
        (chat("hi", top_p=-1), 400, "top_p", "invalid_value"),
        (chat("hi", max_tokens=0), 400, "max_tokens", "invalid_value"),
        (chat("hi", n=0), 400, "n", "invalid_value"),
        (chat("hi", top_logprobs=3), 400, "top_logprobs", "invalid_value"),
        (chat("hi", logprobs=True, top_logprobs=21), 400, "top_logprobs", "invalid_value"),
        (chat("hi", logit_bias={"abc": 1}), 400, "logit_bias", "invalid_value"),
        ({"model": MODEL, "messages": []}, 400, "messages", "invalid_value"),
        ({"model": MODEL}, 400, "messages", "missing_required_parameter"),
        ({**chat("hi"), "model": "gpt-4"}, 404, "model", "model_not_found"),
        (
            chat("hi", tools=[{"type": "function", "function": {"name": "bad name"}}]),
            400,
            "tools[0].function.name",
            "invalid_value",
        ),
        (chat("hi", tool_choice="required"), 400, "tool_choice", "invalid_value"),
        (chat("hi", logit_bias={"²": 1}), 400, "logit_bias", "invalid_value"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "messages[0].content",
            "unsupported_content_type",
        ),
    ],
)
def test_invalid_requests_get_openai_shaped_errors(
    engine: RunningEngine, body: dict[str, Any], status: int, param: str | None, code: str
) -> None:
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_malformed_json_and_unknown_routes_are_openai_shaped(engine: RunningEngine) -> None:
    with engine.client() as client:
        bad = client.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_json"
        missing = client.get("/v1/nothing-here")
        assert missing.status_code == 404
        assert "error" in missing.json()


def test_models_lists_the_served_model(engine: RunningEngine) -> None:
    with engine.client() as client:
        models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_openai_sdk_works_against_the_engine(engine: RunningEngine) -> None:
    import openai

    http_client = httpx.Client(transport=httpx.HTTPTransport(uds=str(engine.socket)))
    client = openai.OpenAI(base_url="http://engine/v1", api_key="unused", http_client=http_client)
    result = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
    )
    assert result.choices[0].message.content
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = []
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert pieces and usage is not None and usage.completion_tokens > 0
    http_client.close()
