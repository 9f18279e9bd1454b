"""Chat completions' logprobs from a real engine: OpenAI's shape, whole and streamed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.engine.conftest import MODEL, RunningEngine


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


GREEDY = chat("Name three colours.", temperature=0, max_tokens=12, logprobs=True, top_logprobs=5)


def complete(engine: RunningEngine, body: dict[str, Any]) -> dict[str, Any]:
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def streamed_choices(engine: RunningEngine, body: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        engine.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [c for line in lines[:-1] for c in json.loads(line[len("data: ") :])["choices"]]


def joined_text(content: list[dict[str, Any]]) -> str:
    return b"".join(bytes(entry["bytes"]) for entry in content).decode("utf-8")


def test_top_logprobs_are_ranked_and_the_greedy_token_is_the_first(
    engine: RunningEngine,
) -> None:
    result = complete(engine, GREEDY)
    choice = result["choices"][0]
    assert set(choice["logprobs"]) == {"content", "refusal"}
    assert choice["logprobs"]["refusal"] is None
    content = choice["logprobs"]["content"]
    # Every sampled token but the end-of-turn one (which usage does not count either).
    assert len(content) == result["usage"]["completion_tokens"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        top = entry["top_logprobs"]
        assert len(top) == 5
        values = [alt["logprob"] for alt in top]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values) and entry["logprob"] <= 0
        assert all(set(alt) == {"token", "logprob", "bytes"} for alt in top)
        # Temperature 0, no bias, penalty or grammar: the sampled token is the model's top-1.
        assert (entry["token"], entry["bytes"]) == (top[0]["token"], top[0]["bytes"])
        assert entry["logprob"] == pytest.approx(top[0]["logprob"])
        assert entry["token"] == bytes(entry["bytes"]).decode("utf-8", "replace")
    assert joined_text(content) == choice["message"]["content"]


def test_streamed_chunks_carry_the_logprobs_of_their_own_delta(engine: RunningEngine) -> None:
    whole = complete(engine, GREEDY)["choices"][0]["logprobs"]["content"]
    chunks = streamed_choices(engine, GREEDY)
    assert chunks[0]["logprobs"] is None  # the role chunk has no tokens
    streamed = []
    for chunk in chunks:
        text = chunk["delta"].get("content")
        if chunk["logprobs"] is not None:
            entries = chunk["logprobs"]["content"]
            assert joined_text(entries) == text
            streamed += entries
        else:
            assert not text
    assert [e["token"] for e in streamed] == [e["token"] for e in whole]
    for one, other in zip(streamed, whole, strict=True):
        assert one["logprob"] == pytest.approx(other["logprob"], abs=1e-3)
        assert len(one["top_logprobs"]) == 5


def test_logprob_does_not_depend_on_temperature(engine: RunningEngine) -> None:
    greedy = complete(engine, {**GREEDY, "max_tokens": 1})["choices"][0]["logprobs"]
    hot = complete(engine, {**GREEDY, "max_tokens": 1, "temperature": 1.5, "seed": 3})
    first_alternatives = hot["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert [a["token"] for a in first_alternatives] == [
        a["token"] for a in greedy["content"][0]["top_logprobs"]
    ]
    for one, other in zip(first_alternatives, greedy["content"][0]["top_logprobs"], strict=True):
        assert one["logprob"] == pytest.approx(other["logprob"], abs=1e-3)


def test_logprobs_without_top_logprobs_and_without_asking(engine: RunningEngine) -> None:
    body = chat("Say yes.", temperature=0, max_tokens=4)
    plain = complete(engine, body)["choices"][0]
    assert plain["logprobs"] is None
    asked = complete(engine, {**body, "logprobs": True, "n": 2})
    for choice in asked["choices"]:
        content = choice["logprobs"]["content"]
        assert content and all(entry["top_logprobs"] == [] for entry in content)
        assert joined_text(content) == choice["message"]["content"]
    assert all(
        chunk["logprobs"] is None for chunk in streamed_choices(engine, body) if chunk["delta"]
    )


def test_json_mode_logprobs_are_those_of_the_sampled_tokens(engine: RunningEngine) -> None:
    result = complete(
        engine,
        chat(
            "Give me a JSON object with a name.",
            response_format={"type": "json_object"},
            temperature=0,
            max_tokens=16,
            logprobs=True,
            top_logprobs=2,
        ),
    )
    choice = result["choices"][0]
    content = choice["logprobs"]["content"]
    assert joined_text(content) == choice["message"]["content"]
    assert all(entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2 for entry in content)


def test_stop_string_tokens_are_not_reported(engine: RunningEngine) -> None:
    whole = complete(engine, GREEDY)["choices"][0]
    text = whole["message"]["content"]
    tokens = [e["token"] for e in whole["logprobs"]["content"]]
    # Stop at the start of the fourth token: the tokens from there on are not reported.
    stop = tokens[3]
    cut = text.index(stop)
    result = complete(engine, {**GREEDY, "stop": [stop]})["choices"][0]
    assert result["message"]["content"] == text[:cut]
    assert joined_text(result["logprobs"]["content"]).startswith(text[:cut])
    assert len(result["logprobs"]["content"]) <= 4


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_tool_call_tokens_are_reported_in_content_whole_and_streamed(
    engine: RunningEngine,
) -> None:
    body = chat(
        "What is the weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
        logprobs=True,
        top_logprobs=1,
    )
    result = complete(engine, body)
    choice = result["choices"][0]
    assert choice["message"]["tool_calls"]
    content = choice["logprobs"]["content"]
    assert len(content) == result["usage"]["completion_tokens"]
    assert "get_weather" in joined_text(content)
    chunks = streamed_choices(engine, {**body, "stream_options": {"include_usage": True}})
    streamed = [e for c in chunks if c["logprobs"] for e in c["logprobs"]["content"]]
    assert [e["token"] for e in streamed] == [e["token"] for e in content]
