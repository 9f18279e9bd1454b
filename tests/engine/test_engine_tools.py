"""Tool calling and every sampling parameter against the real engine and the packaged GGUF.

SmolLM2's template knows no tools, so these calls use the generic grammar-constrained
envelope; a second engine given a Hermes-style template shows the model's-own-format path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.engine.conftest import MODEL, RunningEngine, start_engine, stop_engine

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"],
            },
        },
    },
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "hermes_tools_template.jinja"


def ask(content: str = "What's the weather in Paris?", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "tools": TOOLS,
        "max_tokens": 96,
        **extra,
    }


def post(engine: RunningEngine, body: dict[str, Any]) -> dict[str, Any]:
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_valid_calls(message: dict[str, Any], allowed: set[str]) -> list[dict[str, Any]]:
    calls = message["tool_calls"]
    assert calls and message["content"] is None
    for call in calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"]["name"] in allowed
        arguments = json.loads(call["function"]["arguments"])
        jsonschema.validate(arguments, SCHEMAS[call["function"]["name"]])
    return calls


def stream_events(engine: RunningEngine, body: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        engine.client() as client,
        client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


@pytest.mark.parametrize("seed", range(4))
def test_required_calls_are_valid_declared_and_match_their_schema(
    engine: RunningEngine, seed: int
) -> None:
    result = post(engine, ask(tool_choice="required", seed=seed, temperature=1.0))
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert_valid_calls(choice["message"], {"get_weather", "get_time"})


@pytest.mark.parametrize("seed", range(3))
def test_a_named_choice_calls_that_function(engine: RunningEngine, seed: int) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    result = post(engine, ask(tool_choice=named, seed=seed, temperature=1.0))
    calls = assert_valid_calls(result["choices"][0]["message"], {"get_time"})
    assert len(calls) == 1


@pytest.mark.parametrize("seed", range(6))
def test_auto_gives_a_valid_call_or_a_plain_answer(engine: RunningEngine, seed: int) -> None:
    choice = post(engine, ask(seed=seed, temperature=1.0))["choices"][0]
    if choice["finish_reason"] == "tool_calls":
        assert_valid_calls(choice["message"], {"get_weather", "get_time"})
    elif "tool_calls" in choice["message"]:  # a call cut off by max_tokens
        assert choice["finish_reason"] == "length"
    else:
        assert choice["message"]["content"]
        assert not choice["message"]["content"].lstrip().startswith('{"')


def test_tool_choice_none_answers_in_text(engine: RunningEngine) -> None:
    choice = post(engine, ask(tool_choice="none", max_tokens=16))["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] in {"stop", "length"}


def test_parallel_tool_calls_false_gives_exactly_one_call(engine: RunningEngine) -> None:
    for seed in range(4):
        body = ask(
            "Weather in Paris and time in Tokyo?",
            tool_choice="required",
            parallel_tool_calls=False,
            seed=seed,
            temperature=1.2,
        )
        message = post(engine, body)["choices"][0]["message"]
        assert len(assert_valid_calls(message, set(SCHEMAS))) == 1


def test_streamed_tool_calls_have_openai_delta_shapes(engine: RunningEngine) -> None:
    body = ask(tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=160)
    events = stream_events(engine, body)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    tool_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    by_call: dict[int, list[dict[str, Any]]] = {}
    for part in tool_deltas:
        by_call.setdefault(part["index"], []).append(part)
    assert sorted(by_call) == list(range(len(by_call)))
    for first, *rest in by_call.values():
        assert first["id"].startswith("call_") and first["type"] == "function"
        assert first["function"]["arguments"] == "" and first["function"]["name"] in SCHEMAS
        assert rest and all(set(d) == {"index", "function"} for d in rest)
        arguments = "".join(d["function"]["arguments"] for d in rest)
        jsonschema.validate(json.loads(arguments), SCHEMAS[first["function"]["name"]])
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # Whole and streamed answers are the same answer.
    whole = post(engine, body)["choices"][0]["message"]
    assert whole["tool_calls"][-1]["function"]["arguments"] == arguments


def test_several_choices_each_parse_their_own_calls(engine: RunningEngine) -> None:
    result = post(engine, ask(tool_choice="required", n=3, seed=5, temperature=1.0))
    assert len(result["choices"]) == 3
    for choice in result["choices"]:
        assert_valid_calls(choice["message"], set(SCHEMAS))


def test_history_with_calls_and_results_renders_and_the_model_answers(
    engine: RunningEngine,
) -> None:
    messages = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]
    body = {"model": MODEL, "messages": messages, "tools": TOOLS, "max_tokens": 64}
    choice = post(engine, {**body, "temperature": 0})["choices"][0]
    assert choice["finish_reason"] in {"stop", "length", "tool_calls"}
    # Without tools in this turn, the history still renders.
    plain = post(engine, {"model": MODEL, "messages": messages, "max_tokens": 8})
    assert plain["choices"][0]["message"]["content"] is not None


def test_tools_with_a_json_response_format_answer_json(engine: RunningEngine) -> None:
    body = ask(
        "Say hello as JSON.",
        response_format={"type": "json_object"},
        tool_choice="auto",
        temperature=0,
        max_tokens=64,
    )
    message = post(engine, body)["choices"][0]["message"]
    if message.get("tool_calls") is None and message["content"]:
        assert isinstance(json.loads(message["content"]), dict)


SAMPLING = [
    {"temperature": 0.0},
    {"temperature": 1.5},
    {"top_p": 0.5},
    {"top_k": 5},
    {"min_p": 0.2},
    {"seed": 7},
    {"frequency_penalty": 1.5},
    {"frequency_penalty": -1.0},
    {"presence_penalty": 1.0},
    {"presence_penalty": -0.5},
    {"repeat_penalty": 1.3},
    {"logit_bias": {"42": -100, "100": 5}},
    {"stop": ["."]},
    {"stop": "\n"},
    {"n": 2},
    {"max_tokens": 3},
    {"max_completion_tokens": 3},
    {"response_format": {"type": "json_object"}},
    {"user": "someone"},
    {
        "temperature": 0.8,
        "top_p": 0.9,
        "top_k": 30,
        "min_p": 0.05,
        "seed": 11,
        "frequency_penalty": 0.7,
        "presence_penalty": 0.4,
        "repeat_penalty": 1.1,
        "logit_bias": {"13": -5},
        "stop": ["\n\n"],
        "n": 2,
    },
]


@pytest.mark.parametrize("params", SAMPLING, ids=lambda p: ",".join(p))
def test_every_sampling_parameter_works_alone_and_combined(
    engine: RunningEngine, params: dict[str, Any]
) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about cats."}],
        "max_tokens": 12,
        **params,
    }
    result = post(engine, body)
    assert len(result["choices"]) == params.get("n", 1)
    for choice in result["choices"]:
        assert choice["finish_reason"] in {"stop", "length"}
    for stream_choice in stream_events(engine, body)[-1]["choices"]:
        assert stream_choice["finish_reason"] in {"stop", "length"}
    assert engine.health()["status"] == "ok"


@pytest.mark.parametrize("seed", range(6))
def test_json_schema_output_always_parses_and_matches(engine: RunningEngine, seed: int) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "lines": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "lines"],
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a poem of several lines, as JSON."}],
        "max_tokens": 200,
        "temperature": 1.3,
        "seed": seed,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }
    choice = post(engine, body)["choices"][0]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_models_retrieve_and_unknown_routes(engine: RunningEngine) -> None:
    with engine.client() as client:
        model = client.get(f"/v1/models/{MODEL}")
        missing = client.get("/v1/models/other")
        unknown = client.get("/v2/nothing")
    assert model.status_code == 200 and model.json()["id"] == MODEL
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert (
        unknown.status_code == 404 and "/v1/chat/completions" in unknown.json()["error"]["message"]
    )


@pytest.fixture(scope="module")
def hermes_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(
        tmp_path_factory.mktemp("hermes"),
        "--slots",
        "2",
        "--ctx-per-slot",
        "1024",
        "--chat-template-file",
        str(TEMPLATE),
    )
    try:
        yield running
    finally:
        stop_engine(running)


def test_a_template_with_its_own_tool_format_is_used_and_parsed(
    hermes_engine: RunningEngine,
) -> None:
    for seed in range(3):
        body = ask(tool_choice="required", seed=seed, temperature=1.0)
        message = post(hermes_engine, body)["choices"][0]["message"]
        assert_valid_calls(message, set(SCHEMAS))
    events = stream_events(hermes_engine, ask(tool_choice="required", temperature=0))
    names = [
        d["tool_calls"][0]["function"].get("name")
        for e in events
        if e["choices"] and "tool_calls" in (d := e["choices"][0]["delta"])
    ]
    assert names[0] in SCHEMAS
    # auto: the lazy grammar leaves text free; whatever comes is either text or a valid call.
    choice = post(hermes_engine, ask(temperature=0))["choices"][0]
    if choice["finish_reason"] == "tool_calls":
        assert_valid_calls(choice["message"], set(SCHEMAS))
    history = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
    ]
    post(hermes_engine, {"model": MODEL, "messages": history, "tools": TOOLS, "max_tokens": 16})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[ab]{0,40000}$"},
        {"enum": [f"value-{i}" for i in range(8000)]},
        {"type": "array", "maxItems": 10_000_000},
    ],
)
def test_schemas_that_would_crash_or_stall_the_engine_get_a_400_and_it_keeps_serving(
    engine: RunningEngine, schema: dict[str, Any]
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"x": schema}, "required": ["x"]},
        },
    }
    body = ask(tools=[tool], tool_choice="required")
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "tools" and error["code"] == "invalid_value"
    assert "value-7999" not in error["message"]
    assert engine.health()["status"] == "ok"
    post(engine, ask(tool_choice="required", max_tokens=48))
