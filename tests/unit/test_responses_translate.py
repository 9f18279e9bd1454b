"""``/v1/responses`` as the chat path serves it: request models, the translation to a chat
request, and the Response objects and stream events built from chat answers, all checked
against the installed openai-python's own types and stream accumulation."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import (
    Response,
    ResponseStreamEvent,
    response_create_params,
    response_input_item_param,
    tool_param,
)
from pydantic import TypeAdapter, ValidationError

from gateway.endpoints.responses.protocol import (
    BUILT_IN_TOOLS,
    REFUSED_ITEMS,
    ResponsesRequest,
)
from gateway.endpoints.responses.translate import (
    ResponsesStream,
    from_chat,
    item_id,
    to_chat,
)
from gateway.errors import GatewayError, from_validation_error
from gateway.protocol import ChatCompletionRequest

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RESPONSE_ID = "resp_0123456789abcdef"
CREATED = 1_760_000_000
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def parse(**body: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **body})


def refusal(**body: Any) -> GatewayError:
    with pytest.raises(ValidationError) as caught:
        parse(**body)
    return from_validation_error(caught.value)


def chat(request: ResponsesRequest) -> dict[str, Any]:
    """``to_chat``'s body, after checking the chat edge accepts it as it is."""
    body = to_chat(request)
    ChatCompletionRequest.model_validate(body)
    return body


def completion(
    content: str | None = "Hello!",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    refusal: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def chunks_of(answer: dict[str, Any], cuts: int = 3) -> list[dict[str, Any]]:
    """The stream a chat upstream would send for ``answer``: text and arguments in pieces."""
    choice = answer["choices"][0]
    message = choice["message"]
    out = [chunk({"role": "assistant"})]
    for key in ("content", "refusal"):
        text = message.get(key) or ""
        step = max(1, len(text) // cuts)
        out += [chunk({key: text[i : i + step]}) for i in range(0, len(text), step)]
    for index, call in enumerate(message.get("tool_calls") or ()):
        head = {"index": index, "id": call["id"], "type": "function"}
        out.append(
            chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"]}}]})
        )
        arguments = call["function"]["arguments"]
        step = max(1, len(arguments) // cuts)
        for i in range(0, len(arguments), step):
            piece = {"index": index, "function": {"arguments": arguments[i : i + step]}}
            out.append(chunk({"tool_calls": [piece]}))
    out.append(chunk({}, choice["finish_reason"]))
    out.append(usage_chunk(answer["usage"]))
    return out


def stream_events(
    request: ResponsesRequest, chunks: list[dict[str, Any]], *, completed_at: int | None = None
) -> list[dict[str, Any]]:
    stream = ResponsesStream(request, RESPONSE_ID, CREATED)
    events = stream.start()
    for piece in chunks:
        events += stream.feed(piece)
    return events + stream.finish(completed_at=completed_at)


def body_of(response: Response) -> dict[str, Any]:
    return response.model_dump(mode="json", by_alias=True)


def assert_valid_stream(events: list[dict[str, Any]]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    for event in events:
        EVENTS.validate_python(event)


# -- the request -------------------------------------------------------------------------------


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    body = chat(parse(instructions="Answer briefly.", input="What is 2+2?"))
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert "stream" not in body and "tools" not in body


def test_message_items_keep_their_roles_and_join_their_text_parts() -> None:
    body = chat(
        parse(
            input=[
                {"role": "developer", "content": "Be terse."},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Hello "},
                    {"type": "input_text", "text": "there"},
                ]},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hi.", "annotations": [],
                              "logprobs": []}]},
                {"role": "user", "content": "Again"},
            ]
        )
    )  # fmt: skip
    assert body["messages"] == [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Again"},
    ]


def test_a_tool_loop_history_becomes_assistant_tool_calls_and_tool_messages() -> None:
    body = chat(
        parse(
            tools=[WEATHER],
            input=[
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "call_a",
                 "name": "get_weather", "arguments": '{"city": "Paris"}'},
                {"type": "function_call", "call_id": "call_b", "name": "get_weather",
                 "arguments": '{"city": "Rome"}'},
                {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
                {"type": "function_call_output", "call_id": "call_b",
                 "output": [{"type": "input_text", "text": "21C"}]},
            ],
        )
    )  # fmt: skip
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                tool_call("call_a", "get_weather", '{"city": "Paris"}'),
                tool_call("call_b", "get_weather", '{"city": "Rome"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C"},
    ]


def test_calls_with_no_text_before_them_are_one_assistant_message_without_content() -> None:
    body = chat(
        parse(
            input=[
                {"role": "user", "content": "Go"},
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "1"},
                {"type": "function_call_output", "call_id": "c2", "output": "2"},
                {"type": "function_call", "call_id": "c3", "name": "a", "arguments": "{}"},
            ]
        )
    )
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    assert [len(m["tool_calls"]) for m in assistant] == [2, 1]
    assert all(m["content"] is None for m in assistant)


def test_function_tools_and_a_named_tool_choice_take_chat_shapes() -> None:
    body = chat(
        parse(
            tools=[WEATHER, {"type": "function", "name": "noop"}],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
        )
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "noop"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


def test_allowed_tools_limit_the_chat_tools_to_those_listed() -> None:
    body = chat(
        parse(
            tools=[WEATHER, {"type": "function", "name": "noop"}],
            tool_choice={
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "noop"}],
            },
        )
    )
    assert [tool["function"]["name"] for tool in body["tools"]] == ["noop"]
    assert body["tool_choice"] == "required"


def test_tool_choice_auto_without_tools_is_dropped_not_refused() -> None:
    # The Agents SDK sends "tools": [] for an agent without tools.
    body = chat(parse(tools=[], tool_choice="auto", parallel_tool_calls=True))
    assert "tools" not in body and "tool_choice" not in body and "parallel_tool_calls" not in body


def test_text_formats_become_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = chat(
        parse(
            text={
                "format": {
                    "type": "json_schema",
                    "name": "answer",
                    "schema": schema,
                    "strict": True,
                    "description": "The answer",
                },
                "verbosity": "low",
            }
        )
    )
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": schema,
            "strict": True,
            "description": "The answer",
        },
    }
    assert chat(parse(text={"format": {"type": "json_object"}}))["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in chat(parse(text={"format": {"type": "text"}}))


def test_sampling_limits_and_user_carry_over() -> None:
    body = chat(parse(max_output_tokens=64, temperature=0.2, top_p=0.9, user="u-1"))
    assert body["max_completion_tokens"] == 64
    assert (body["temperature"], body["top_p"], body["user"]) == (0.2, 0.9, "u-1")


def test_a_stream_always_asks_for_the_usage_chunk() -> None:
    body = chat(parse(stream=True, stream_options={"include_obfuscation": False}))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


IGNORED = {
    "store": False,
    "background": False,
    "reasoning": {"effort": "low", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "truncation": "disabled",
    "top_logprobs": 0,
    "metadata": {"session": "s-1"},
    "service_tier": "auto",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {"mode": "implicit", "ttl": "30m"},
    "safety_identifier": "hash",
    "max_tool_calls": 3,
    "image": {"context_compression": "auto"},
    "context_management": [],
    "previous_response_id": None,
    "conversation": None,
}


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_ignored_parameters_are_accepted_and_forwarded_nowhere(name: str) -> None:
    body = chat(parse(**{name: IGNORED[name]}))
    assert body == chat(parse())


def test_the_agents_sdk_default_request_validates() -> None:
    # openai-agents-python OpenAIResponsesModel._build_response_create_kwargs (7f7a44f): include
    # always sent (a list, often empty), tools always a list; a GPT-5 default model name brings
    # reasoning.effort and text.verbosity; items from earlier outputs come back as dumped.
    request = ResponsesRequest.model_validate(
        {
            "model": "local-model",
            "instructions": "You are a helpful agent.",
            "input": [
                {"content": "What's the weather in Oslo?", "role": "user"},
                {"id": "fc_1", "arguments": '{"city":"Oslo"}', "call_id": "call_1",
                 "name": "get_weather", "type": "function_call", "status": "completed"},
                {"call_id": "call_1", "output": "Sunny, 12C", "type": "function_call_output"},
            ],
            "include": [],
            "tools": [{**WEATHER, "strict": True}],
            "reasoning": {"effort": "none"},
            "text": {"verbosity": "low"},
            "stream": True,
        }
    )  # fmt: skip
    assert [m["role"] for m in chat(request)["messages"]] == ["system", "user", "assistant", "tool"]


def test_the_vercel_ai_sdk_default_request_validates() -> None:
    # vercel/ai packages/openai responses getArgs (ed857f5): store left out, JSON schema output
    # named "response" with strict true, assistant text sent back as an output_text message.
    request = ResponsesRequest.model_validate(
        {
            "model": "local-model",
            "input": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "JSON please"}]},
            ],
            "temperature": 0,
            "max_output_tokens": 100,
            "text": {"format": {"type": "json_schema", "strict": True, "name": "response",
                                "schema": {"type": "object", "properties": {}}}},
        }
    )  # fmt: skip
    assert chat(request)["response_format"]["json_schema"]["name"] == "response"


def refused_cases() -> list[tuple[dict[str, Any], str | None, str]]:
    image = {"type": "input_image", "image_url": "https://example.com/cat.png"}
    return [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
        ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
        ({"store": True}, "store", "unsupported_parameter"),
        ({"background": True}, "background", "unsupported_parameter"),
        ({"truncation": "auto"}, "truncation", "unsupported_parameter"),
        ({"top_logprobs": 5}, "top_logprobs", "unsupported_parameter"),
        ({"include": ["message.output_text.logprobs"]}, "include", "unsupported_parameter"),
        ({"include": ["file_search_call.results"]}, "include", "unsupported_parameter"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
        ({"context_management": [{"type": "compaction"}]}, "context_management",
         "unsupported_parameter"),
        ({"prompt_cache_options": {"prewarm": True}}, "prompt_cache_options.prewarm",
         "unsupported_parameter"),
        ({"tools": [WEATHER, {"type": "web_search"}]}, "tools[1]", "unsupported_parameter"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0]",
         "unsupported_parameter"),
        ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice",
         "unsupported_parameter"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]",
         "unsupported_parameter"),
        ({"input": [{"id": "msg_1"}]}, "input[0]", "unsupported_parameter"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0]",
         "unsupported_parameter"),
        ({"input": [{"role": "user", "content": "x"}, {"type": "computer_call_output",
          "call_id": "c", "output": {}}]}, "input[1]", "unsupported_parameter"),
        ({"input": [{"role": "user", "content": [image]}]}, "input[0].content",
         "unsupported_content_type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
         "input[0].content", "unsupported_content_type"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "output": [image]}]},
         "input[1].output", "unsupported_content_type"),
        ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
         "input[0].call_id", "invalid_value"),
        ({"input": []}, "input", "invalid_value"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "invalid_value"),
        ({"tool_choice": "required"}, "tool_choice", "invalid_value"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}},
         "tool_choice", "invalid_value"),
        ({"seed": 7}, "seed", "unknown_parameter"),
        ({"stop": ["\n"]}, "stop", "unknown_parameter"),
        ({"stream_options": {"include_obfuscation": True}}, None, "invalid_value"),
        ({"input": [{"role": "user", "content": "x", "tone": "warm"}]}, "input[0].tone",
         "unknown_parameter"),
    ]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "code"), refused_cases())
def test_what_cannot_be_served_is_a_400_naming_the_parameter(
    body: dict[str, Any], param: str | None, code: str
) -> None:
    error = refusal(**body)
    assert (error.status, error.param, error.code) == (400, param, code)


def test_refusals_say_why() -> None:
    assert "stateless" in refusal(previous_response_id="resp_1").message
    assert "'web_search' tool" in refusal(tools=[{"type": "web_search"}]).message
    assert "store to false" in refusal(input=[{"type": "item_reference", "id": "m"}]).message
    image = {"type": "input_image", "image_url": "https://example.com/a.png"}
    assert "does not accept images" in refusal(input=[{"role": "user", "content": [image]}]).message


@pytest.mark.parametrize(
    "body",
    [
        {"input": [{"type": "alice@example.com"}]},
        {"tools": [{"type": "alice@example.com"}]},
        {"tool_choice": {"type": "alice@example.com"}},
        {"input": [{"role": "user", "content": [{"type": "alice@example.com", "text": "x"}]}]},
        {"input": [{"role": "user", "content": "x", "alice@example.com": 1}]},
    ],
)
def test_a_refusal_never_repeats_the_client_s_own_strings(body: dict[str, Any]) -> None:
    error = refusal(**body)
    assert error.status == 400
    assert "alice" not in json.dumps(error.body())


def test_json_bytes_validate_as_python_objects_do() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "x"}]},
            {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "o"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {}}},
    }
    from_json = ResponsesRequest.model_validate_json(json.dumps(body))
    assert from_json == ResponsesRequest.model_validate(body)
    with pytest.raises(ValidationError) as caught:
        ResponsesRequest.model_validate_json('{"model": "m", "input": [{"type": "mcp_call"}]}')
    assert from_validation_error(caught.value).param == "input[0]"


def type_literals(annotation: Any) -> list[str]:
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found += [arg] if isinstance(arg, str) else type_literals(arg)
    return found


def test_every_parameter_of_the_sdk_is_honoured_ignored_or_refused_by_name() -> None:
    sdk = typing.get_type_hints(response_create_params.ResponseCreateParamsStreaming)
    assert set(sdk) <= set(ResponsesRequest.model_fields)


def test_every_sdk_input_item_type_is_served_or_refused_by_name() -> None:
    kinds = {
        kind
        for member in typing.get_args(response_input_item_param.ResponseInputItemParam)
        for kind in type_literals(typing.get_type_hints(member, include_extras=True)["type"])
    }
    assert kinds - {"message", "function_call", "function_call_output"} <= set(REFUSED_ITEMS)


def test_every_sdk_tool_type_is_a_function_or_a_refused_built_in() -> None:
    kinds = {
        kind
        for member in typing.get_args(tool_param.ToolParam)
        for kind in type_literals(typing.get_type_hints(member, include_extras=True)["type"])
    }
    assert kinds - {"function"} <= BUILT_IN_TOOLS


# -- the Response ------------------------------------------------------------------------------


def test_a_text_answer_is_a_completed_response_the_sdk_accepts() -> None:
    request = parse(instructions="Be nice.", metadata={"k": "v"}, temperature=0.5)
    body = from_chat(completion("Hello!"), request, RESPONSE_ID, CREATED, completed_at=CREATED + 1)
    response = Response.model_validate(body)
    assert response.output_text == "Hello!"
    assert (response.id, response.status, response.created_at) == (
        RESPONSE_ID,
        "completed",
        CREATED,
    )
    assert response.completed_at == CREATED + 1
    assert response.output[0].id == item_id("msg", RESPONSE_ID, 0)
    assert (response.instructions, response.metadata, response.temperature) == (
        "Be nice.",
        {"k": "v"},
        0.5,
    )
    assert body["store"] is False


def test_tool_calls_are_function_call_items_after_the_text() -> None:
    answer = completion(
        "Let me check.",
        tool_calls=[tool_call("call_a", "get_weather", '{"city":"Oslo"}')],
        finish_reason="tool_calls",
    )
    response = Response.model_validate(from_chat(answer, parse(tools=[WEATHER]), RESPONSE_ID, 1))
    message, call = response.output
    assert message.type == "message" and call.type == "function_call"
    assert (call.id, call.call_id, call.name, call.arguments, call.status) == (
        item_id("fc", RESPONSE_ID, 1),
        "call_a",
        "get_weather",
        '{"city":"Oslo"}',
        "completed",
    )
    assert response.status == "completed"
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"


def test_an_answer_of_only_tool_calls_has_no_message() -> None:
    answer = completion(None, tool_calls=[tool_call("c", "f", "{}")], finish_reason="tool_calls")
    response = Response.model_validate(from_chat(answer, parse(), RESPONSE_ID, 1))
    assert [item.type for item in response.output] == ["function_call"]
    assert response.output[0].id == item_id("fc", RESPONSE_ID, 0)


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [("length", "max_output_tokens"), ("content_filter", "content_filter")],
)
def test_an_answer_cut_short_is_incomplete(finish_reason: str, reason: str) -> None:
    body = from_chat(completion("Once upon", finish_reason=finish_reason), parse(), RESPONSE_ID, 1)
    response = Response.model_validate(body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
    assert body["output"][-1]["status"] == "incomplete"
    assert body["completed_at"] is None


def test_usage_maps_to_input_and_output_tokens() -> None:
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    response = Response.model_validate(from_chat(completion(usage=usage), parse(), RESPONSE_ID, 1))
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 30)
    assert response.usage.total_tokens == 150
    assert response.usage.input_tokens_details.cached_tokens == 100
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_an_empty_answer_is_one_empty_message() -> None:
    response = Response.model_validate(from_chat(completion(""), parse(), RESPONSE_ID, 1))
    assert len(response.output) == 1 and response.output_text == ""


def test_a_refusal_is_a_refusal_part() -> None:
    body = from_chat(completion(None, refusal="I can't help."), parse(), RESPONSE_ID, 1)
    response = Response.model_validate(body)
    assert body["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    assert response.output_text == ""


def test_item_ids_follow_the_response_id() -> None:
    answer = completion("x", tool_calls=[tool_call("c", "f", "{}")])
    first = from_chat(answer, parse(), "resp_a", 1)
    assert first == from_chat(answer, parse(), "resp_a", 1)
    second = from_chat(answer, parse(), "resp_b", 1)
    ids = [item["id"] for item in first["output"] + second["output"]]
    assert len(set(ids)) == 4
    assert ids[0].startswith("msg_") and ids[1].startswith("fc_")


def test_the_request_s_settings_are_echoed_in_sdk_shapes() -> None:
    request = parse(
        tools=[WEATHER],
        tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function",
                                                                          "name": "get_weather"}]},
        text={"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
        max_output_tokens=50,
        top_p=0.5,
        user="u",
    )  # fmt: skip
    response = Response.model_validate(from_chat(completion("{}"), request, RESPONSE_ID, 1))
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert body_of(response)["tool_choice"]["type"] == "allowed_tools"
    assert (response.max_output_tokens, response.top_p, response.user) == (50, 0.5, "u")


# -- the stream --------------------------------------------------------------------------------

ANSWERS = {
    "text": completion("Hello, wörld! 👋 How are you?"),
    "tool calls": completion(
        None,
        tool_calls=[
            tool_call("call_a", "get_weather", '{"city": "Oslo"}'),
            tool_call("call_b", "get_weather", '{"city": "Bergen"}'),
        ],
        finish_reason="tool_calls",
    ),
    "text and a tool call": completion(
        "Checking the weather.",
        tool_calls=[tool_call("call_a", "get_weather", '{"city": "Oslo"}')],
        finish_reason="tool_calls",
    ),
    "cut short": completion("It was a dark and", finish_reason="length"),
    "refusal": completion(None, refusal="I can't help with that."),
    "empty": completion(""),
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_the_streamed_response_is_the_one_from_chat_gives(name: str) -> None:
    answer = ANSWERS[name]
    request = parse(tools=[WEATHER], stream=True)
    events = stream_events(request, chunks_of(answer), completed_at=CREATED + 2)
    assert_valid_stream(events)
    expected = from_chat(answer, request, RESPONSE_ID, CREATED, completed_at=CREATED + 2)
    assert events[-1]["response"] == expected
    Response.model_validate(events[-1]["response"])


def test_a_stream_starts_in_progress_and_ends_completed() -> None:
    events = stream_events(parse(stream=True), chunks_of(ANSWERS["text"]))
    kinds = [event["type"] for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert {events[0]["response"]["status"], events[1]["response"]["status"]} == {"in_progress"}
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None
    assert events[-1]["response"]["usage"]["total_tokens"] == 16


def test_a_stream_cut_short_ends_with_response_incomplete() -> None:
    events = stream_events(parse(stream=True), chunks_of(ANSWERS["cut short"]))
    assert_valid_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_text_split_at_every_point_streams_back_whole() -> None:
    text = "Grüße, 世界! 👋🏽 done."
    request = parse(stream=True)
    for cut in range(len(text) + 1):
        pieces = [chunk({"content": text[:cut]}), chunk({"content": text[cut:]}, "stop")]
        events = stream_events(request, pieces)
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        done = next(e for e in events if e["type"] == "response.output_text.done")
        assert deltas == done["text"] == text
        assert all(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def test_tool_call_argument_pieces_stream_as_argument_deltas() -> None:
    arguments = '{"city": "Trondheim", "unit": "celsius"}'
    events = stream_events(
        parse(tools=[WEATHER], stream=True),
        chunks_of(completion(None, tool_calls=[tool_call("call_x", "get_weather", arguments)],
                             finish_reason="tool_calls"), cuts=7),
    )  # fmt: skip
    assert_valid_stream(events)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"] | {"arguments": ""} == added["item"]
    assert (added["item"]["call_id"], added["item"]["name"]) == ("call_x", "get_weather")
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(e["delta"] for e in deltas) == arguments
    assert {e["item_id"] for e in deltas} == {added["item"]["id"]}
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == arguments


def test_argument_pieces_before_the_name_are_held_until_it_comes() -> None:
    pieces = [
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
    ]
    events = stream_events(parse(stream=True), pieces)
    assert_valid_stream(events)
    kinds = [e["type"] for e in events]
    assert kinds.index("response.output_item.added") < kinds.index(
        "response.function_call_arguments.delta"
    )
    assert events[-1]["response"]["output"][0]["arguments"] == '{"a": 1}'


def test_interleaved_calls_and_late_text_keep_every_piece_in_its_item() -> None:
    def call(index: int, **function: str) -> dict[str, Any]:
        head: dict[str, Any] = {"index": index, "function": function}
        return chunk({"tool_calls": [head | ({"id": f"c{index}"} if "name" in function else {})]})

    pieces = [
        chunk({"content": "Both: "}),
        call(0, name="a", arguments='{"x"'),
        call(1, name="b", arguments='{"y"'),
        call(0, arguments=": 1}"),
        call(1, arguments=": 2}"),
        chunk({"content": "done."}, "tool_calls"),
    ]
    events = stream_events(parse(stream=True), pieces)
    assert_valid_stream(events)
    output = events[-1]["response"]["output"]
    assert output[0]["content"][0]["text"] == "Both: done."
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output[1:]] == [
        ("c0", "a", '{"x": 1}'),
        ("c1", "b", '{"y": 2}'),
    ]


def test_a_failure_mid_stream_is_an_error_event_then_response_failed() -> None:
    stream = ResponsesStream(parse(stream=True), RESPONSE_ID, CREATED)
    events = stream.start() + stream.feed(chunk({"content": "Partial"}))
    error = GatewayError(502, "The upstream failed.", type="upstream_error", code="upstream_failed")
    events += stream.fail(error.body())
    assert_valid_stream(events)
    assert events[-2] == {
        "type": "error",
        "sequence_number": events[-2]["sequence_number"],
        "code": "upstream_failed",
        "message": "The upstream failed.",
        "param": None,
    }
    failed = events[-1]["response"]
    assert events[-1]["type"] == "response.failed" and failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"
    with pytest.raises(RuntimeError):
        stream.feed(chunk({"content": "more"}))


def test_sdk_stream_state_rebuilds_the_same_response() -> None:
    answer = ANSWERS["text and a tool call"]
    request = parse(tools=[WEATHER], stream=True)
    state: ResponseStreamState[Any] = ResponseStreamState(
        input_tools=[WEATHER], text_format=openai.omit
    )
    for event in stream_events(request, chunks_of(answer, cuts=5)):
        state.handle_event(EVENTS.validate_python(event))
    final = state._completed_response
    assert final is not None
    assert final.output_text == "Checking the weather."
    call = final.output[1]
    assert call.type == "function_call" and call.arguments == '{"city": "Oslo"}'


# -- openai-python end to end, over an in-process transport ------------------------------------


def sdk_client(answer: Callable[[dict[str, Any]], httpx.Response]) -> openai.OpenAI:
    def handle(http_request: httpx.Request) -> httpx.Response:
        return answer(json.loads(http_request.content))

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
        max_retries=0,
    )


def serve(sent: list[dict[str, Any]], answer: dict[str, Any]) -> Callable[..., httpx.Response]:
    """The gateway's part: validate what the SDK sent, answer as the chat path would."""

    def handle(body: dict[str, Any]) -> httpx.Response:
        sent.append(body)
        request = ResponsesRequest.model_validate(body)
        chat(request)
        if not request.streaming:
            return httpx.Response(200, json=from_chat(answer, request, RESPONSE_ID, CREATED))
        events = stream_events(request, chunks_of(answer))
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    return handle


def test_openai_python_streams_and_accumulates_the_final_text() -> None:
    sent: list[dict[str, Any]] = []
    client = sdk_client(serve(sent, ANSWERS["text"]))
    with client.responses.stream(model="m", input="Say hello", instructions="Be nice.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello, wörld! 👋 How are you?"
    assert final.usage is not None and final.usage.total_tokens == 16
    assert sent[0]["stream"] is True


def test_openai_python_runs_a_tool_loop() -> None:
    sent: list[dict[str, Any]] = []
    call = completion(
        None,
        tool_calls=[tool_call("call_1", "get_weather", '{"city":"Oslo"}')],
        finish_reason="tool_calls",
    )
    client = sdk_client(serve(sent, call))
    history: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.responses.create(model="m", input=history, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"]
    history += first.output
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "12C"})
    client = sdk_client(serve(sent, completion("It is 12C in Oslo.")))
    second = client.responses.create(model="m", input=history, tools=[WEATHER])
    assert second.output_text == "It is 12C in Oslo."
    messages = chat(ResponsesRequest.model_validate(sent[-1]))["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == messages[2]["tool_call_id"] == "call_1"


def test_openai_python_parse_with_a_schema_round_trips() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        city: str
        celsius: int

    sent: list[dict[str, Any]] = []
    client = sdk_client(serve(sent, completion('{"city": "Oslo", "celsius": 12}')))
    parsed = client.responses.parse(model="m", input="Weather?", text_format=Answer)
    assert parsed.output_parsed == Answer(city="Oslo", celsius=12)
    assert (
        chat(ResponsesRequest.model_validate(sent[0]))["response_format"]["type"] == "json_schema"
    )
