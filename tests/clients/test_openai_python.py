"""openai-python through the TLS gateway: tools in every mode, parse(), streams, parameters."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from gateway.attestation.transport import AttestedTransport
from gateway.attestation.verifier import VerificationPolicy
from tests.clients.conftest import KEY, MODEL
from tests.gateway.conftest import RunningGateway

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
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
}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def sdk(served: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=served.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(verify=served.tls_context()),
    )


def arguments_of(call: Any) -> dict[str, Any]:
    parsed = json.loads(call.function.arguments)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_tool_calls_non_streamed(served: RunningGateway, choice: Any) -> None:
    result = sdk(served).chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice=choice,
        temperature=0,
        max_tokens=96,
    )
    choice_ = result.choices[0]
    assert choice_.finish_reason == "tool_calls" and choice_.message.content is None
    call = choice_.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in {"get_weather", "get_time"}
    if isinstance(choice, dict):
        assert call.function.name == "get_weather"
    assert arguments_of(call)


def test_a_tool_call_round_trip_with_the_result(served: RunningGateway) -> None:
    client = sdk(served)
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=64,
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call.function.name == "get_weather" and arguments_of(call)["city"] == "Paris"
    history = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], temperature=0, max_tokens=48
    )
    assert second.choices[0].finish_reason in {"stop", "length", "tool_calls"}


def test_streamed_tool_calls_assemble_into_valid_arguments(served: RunningGateway) -> None:
    stream = sdk(served).chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice="required",
        stream=True,
        temperature=0,
        max_tokens=64,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        delta = chunk.choices[0].delta  # every chunk has a choice: no IndexError
        for part in delta.tool_calls or ():
            entry = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += part.id or ""
            entry["name"] += (part.function.name or "") if part.function else ""
            entry["arguments"] += (part.function.arguments or "") if part.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and calls
    for entry in calls.values():
        assert entry["id"].startswith("call_") and entry["name"] in {"get_weather", "get_time"}
        assert isinstance(json.loads(entry["arguments"]), dict)


def test_parallel_calls_are_allowed_and_can_be_switched_off(served: RunningGateway) -> None:
    client = sdk(served)
    ask = [{"role": "user", "content": "Weather in Paris and Rome, and the time in Tokyo?"}]
    for seed in range(3):
        single = client.chat.completions.create(
            model=MODEL,
            messages=ask,
            tools=[WEATHER, TIME],
            tool_choice="required",
            parallel_tool_calls=False,
            seed=seed,
            temperature=1.0,
            max_tokens=96,
        )
        assert len(single.choices[0].message.tool_calls) == 1
    many = client.chat.completions.create(
        model=MODEL,
        messages=ask,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=True,
        seed=1,
        temperature=0.7,
        max_tokens=256,
    )
    if many.choices[0].finish_reason == "tool_calls":  # not cut off by max_tokens
        for call in many.choices[0].message.tool_calls:
            arguments_of(call)


class GetWeather(BaseModel):
    city: str


def test_chat_completions_parse_with_a_pydantic_tool(served: RunningGateway) -> None:
    result = sdk(served).chat.completions.parse(
        model=MODEL,
        messages=ASK,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
        max_tokens=64,
    )
    call = result.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, GetWeather)


def test_parse_with_a_response_format(served: RunningGateway) -> None:
    class Answer(BaseModel):
        city: str
        country: str

    result = sdk(served).chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a city and its country."}],
        response_format=Answer,
        max_tokens=64,
        temperature=0,
    )
    if result.choices[0].finish_reason == "stop":
        assert isinstance(result.choices[0].message.parsed, Answer)


def test_the_quickstart_stream_loop_never_sees_a_chunk_without_choices(
    served: RunningGateway,
) -> None:
    text = ""
    stream = sdk(served).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        max_tokens=8,
    )
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
    assert text


def test_streams_of_both_forms_verify_through_the_attested_transport(
    served: RunningGateway,
) -> None:
    transport = AttestedTransport(
        served.url,
        policy=VerificationPolicy(allow_simulated=True),
        inner=httpx.HTTPTransport(verify=served.tls_context()),
    )
    client = openai.OpenAI(
        base_url=served.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )
    for options in (None, {"include_usage": True}):
        extra: dict[str, Any] = {"stream_options": options} if options else {}
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                max_tokens=6,
                **extra,
            )
        )
        assert chunks
        if options is None:
            assert all(chunk.choices for chunk in chunks)
        else:
            assert chunks[-1].usage is not None


def test_standard_parameters_are_accepted_or_refused_by_name(served: RunningGateway) -> None:
    client = sdk(served)
    accepted = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        metadata={"app": "tests"},
        store=False,
        service_tier="auto",
        prompt_cache_key="tests",
        safety_identifier="user-1",
        verbosity="low",
        reasoning_effort="low",
        modalities=["text"],
        logprobs=False,
        prediction={"type": "content", "content": "Hello"},
        frequency_penalty=1.0,
        presence_penalty=0.5,
        extra_body={"repeat_penalty": 1.2, "top_k": 20, "min_p": 0.1},
    )
    assert accepted.choices[0].message.content is not None
    for refused, param in (
        ({"web_search_options": {}}, "web_search_options"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], **refused
            )
        error = info.value.body
        assert isinstance(error, dict) and error["param"] == param
        assert "not supported" in error["message"]
        assert error["code"] == "unsupported_parameter"


def test_an_image_part_is_refused_naming_the_part(served: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(served).chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    ],
                }
            ],
        )
    message = info.value.body["message"]  # type: ignore[index]
    assert "does not accept images" in message and "messages[0].content[1]" in message


def test_models_retrieve_and_unknown_paths(served: RunningGateway) -> None:
    client = sdk(served)
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with httpx.Client(verify=served.tls_context()) as plain:
        response = plain.get(served.url + "/v1/nothing/here")
    assert response.status_code == 404
    assert "'/v1/nothing/here'" in response.json()["error"]["message"]
