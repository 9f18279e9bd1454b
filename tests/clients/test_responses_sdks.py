"""The Responses API (``POST /v1/responses``, stateless) through the TLS gateway, driven by the
SDKs that speak it: openai-python's ``responses.create``/``stream``, the OpenAI Agents SDK
running a tool loop, and the Vercel AI SDK's default provider (tests/clients/node).

Every answer's token is checked over the exact bytes the SDK read; personal data is checked
against a capture upstream that records what it received and echoes it back."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.clients.conftest import (
    ECHO_MODEL,
    KEY,
    MODEL,
    AsyncRecordingTransport,
    RecordingTransport,
    attested_gateway,
    raises_verification_error,
    tampered_attested_sdk,
    verified_claims,
)
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import RunningGateway

NODE_DIR = Path(__file__).resolve().parent / "node"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
EMAIL = "maria.gonzalez@example-health.org"


def sdk(gateway: RunningGateway) -> tuple[openai.OpenAI, RecordingTransport]:
    transport = RecordingTransport(gateway.tls_context())
    client = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport, timeout=300),
    )
    return client, transport


def responses_requests(transport: RecordingTransport | AsyncRecordingTransport) -> list[dict]:
    return [
        json.loads(request.content)
        for request, _, _ in transport.exchanges
        if request.url.path.endswith("/responses")
    ]


def upstream_text(seen: dict) -> str:
    """What the capture upstream received in one request: its raw body and its headers."""
    return base64.b64decode(seen["body"]).decode("utf-8", "replace") + json.dumps(seen["headers"])


def test_create_answers_with_text_usage_and_a_verified_token(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    response = client.responses.create(
        model=MODEL, input="Say hello to the world.", max_output_tokens=16, temperature=0
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in {"completed", "incomplete"}
    assert response.output_text.strip()
    [message] = [item for item in response.output if item.type == "message"]
    assert message.role == "assistant"
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and 0 < response.usage.output_tokens <= 16
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    if response.status == "incomplete":
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
    request, http_response, received = transport.exchanges[-1]
    claims = verified_claims(
        served_evidence, request, bytes(received), http_response.headers["x-attestation-token"]
    )
    assert claims["jti"] == response.id
    assert claims["model"]["name"] == MODEL


def test_personal_data_in_input_is_tokenized_before_the_engine(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    response = client.responses.create(
        model=MODEL,
        instructions="You are a helpful assistant.",
        input=f"Write one short sentence to {EMAIL}.",
        max_output_tokens=24,
        temperature=0,
    )
    assert response.output_text
    request, http_response, received = transport.exchanges[-1]
    claims = verified_claims(
        served_evidence, request, bytes(received), http_response.headers["x-attestation-token"]
    )
    assert claims["pii"]["mode"] == "tokenize"
    assert claims["pii"]["counts"].get("EMAIL_ADDRESS") == 1


def test_input_items_are_restored_exactly_and_the_upstream_sees_placeholders(
    capture_served: RunningGateway, capture: CaptureUpstream
) -> None:
    client, transport = sdk(capture_served)
    before = len(capture.requests())
    text = f"Please write to {EMAIL} about the meeting."
    response = client.responses.create(
        model=ECHO_MODEL,
        instructions=f"The user is {EMAIL}.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": text}]}],
    )
    assert response.output_text == text
    upstream = capture.requests()[before:]
    assert upstream, "the capture upstream received nothing"
    for seen in upstream:
        assert seen["path"].endswith("/chat/completions")
        assert EMAIL not in upstream_text(seen)
        body = json.loads(base64.b64decode(seen["body"]))
        assert "<EMAIL_ADDRESS_" in json.dumps(body["messages"])
    request, http_response, received = transport.exchanges[-1]
    claims = verified_claims(
        attested_gateway(capture_served),
        request,
        bytes(received),
        http_response.headers["x-attestation-token"],
    )
    assert claims["pii"]["counts"] == {"EMAIL_ADDRESS": 1}


def test_streamed_deltas_restore_a_placeholder_split_over_many_events(
    capture_served: RunningGateway, capture: CaptureUpstream
) -> None:
    client, transport = sdk(capture_served)
    text = f"Contact {EMAIL} today."
    before = len(capture.requests())
    deltas: list[str] = []
    with client.responses.stream(model=ECHO_MODEL, input=text) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == text == final.output_text
    assert len(deltas) > 1  # the double echoes one character per chunk
    upstream = capture.requests()[before:]
    assert upstream and all(EMAIL not in upstream_text(seen) for seen in upstream)
    request, _, received = transport.exchanges[-1]
    claims = verified_claims(attested_gateway(capture_served), request, bytes(received))
    assert claims["pii"]["counts"] == {"EMAIL_ADDRESS": 1}


def test_a_function_call_with_personal_data_in_its_arguments_comes_back_restored(
    capture_served: RunningGateway, capture: CaptureUpstream
) -> None:
    client, _ = sdk(capture_served)
    before = len(capture.requests())
    ask = f"CALL_TOOL for {EMAIL}"
    tool = {**WEATHER, "name": "echo", "strict": False}
    response = client.responses.create(model=ECHO_MODEL, input=ask, tools=[tool])
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "echo" and json.loads(call.arguments) == {"text": ask}
    upstream = capture.requests()[before:]
    assert upstream and all(EMAIL not in upstream_text(seen) for seen in upstream)


def test_the_stream_is_the_responses_event_sequence_and_its_token_verifies(
    served: RunningGateway, served_evidence: Any
) -> None:
    client, transport = sdk(served)
    events = list(
        client.responses.create(
            model=MODEL,
            input="Count from one to five.",
            max_output_tokens=20,
            temperature=0,
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert "response.output_item.added" in kinds and "response.output_text.delta" in kinds
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    [done] = [e for e in events if e.type == "response.output_text.done"]
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas and deltas == done.text == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.id == events[0].response.id  # type: ignore[union-attr]
    request, _, received = transport.exchanges[-1]
    claims = verified_claims(served_evidence, request, bytes(received))
    assert claims["jti"] == final.id


def test_the_stream_helper_gives_the_final_response(served: RunningGateway) -> None:
    client, _ = sdk(served)
    deltas: list[str] = []
    with client.responses.stream(
        model=MODEL, input="Name a fruit.", max_output_tokens=12, temperature=0
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text


def test_a_required_tool_choice_gives_a_function_call_with_json_arguments(
    served: RunningGateway,
) -> None:
    client, _ = sdk(served)
    response = client.responses.create(
        model=MODEL,
        input="What's the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=64,
        temperature=0,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, response.output
    for call in calls:
        assert call.name == "get_weather" and call.call_id
        assert isinstance(json.loads(call.arguments)["city"], str)


def test_streamed_function_call_arguments_assemble_into_json(served: RunningGateway) -> None:
    client, _ = sdk(served)
    events = list(
        client.responses.create(
            model=MODEL,
            input="What's the weather in Paris?",
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "name": "get_weather"},
            max_output_tokens=64,
            temperature=0,
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert pieces == done.arguments and isinstance(json.loads(pieces)["city"], str)
    [call] = [i for i in events[-1].response.output if i.type == "function_call"]  # type: ignore[union-attr]
    assert call.arguments == pieces


def test_a_tool_result_goes_back_as_function_call_output(served: RunningGateway) -> None:
    client, _ = sdk(served)
    first = client.responses.create(
        model=MODEL,
        input="What's the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=64,
        temperature=0,
    )
    [call] = [item for item in first.output if item.type == "function_call"][:1]
    second = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "What's the weather in Paris?"},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=32,
        temperature=0,
    )
    assert second.output_text.strip()
    assert all(item.type == "message" for item in second.output)


def test_instructions_steer_the_answer(served: RunningGateway) -> None:
    client, transport = sdk(served)
    response = client.responses.create(
        model=MODEL,
        instructions="Always answer with exactly the single word: banana",
        input="What should I say?",
        max_output_tokens=8,
        temperature=0,
    )
    assert response.instructions == "Always answer with exactly the single word: banana"
    assert response.output_text.strip()
    assert json.loads(transport.exchanges[-1][0].content)["instructions"].endswith("banana")


class City(BaseModel):
    name: str
    country: str


def test_a_json_schema_text_format_constrains_the_output(served: RunningGateway) -> None:
    client, _ = sdk(served)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
        "required": ["name", "country"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=MODEL,
        input="Name a European capital city and its country.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        max_output_tokens=64,
        temperature=0,
    )
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]
    if response.status == "completed":
        City.model_validate_json(response.output_text)


def test_responses_parse_with_a_pydantic_text_format(served: RunningGateway) -> None:
    client, _ = sdk(served)
    parsed = client.responses.parse(
        model=MODEL,
        input="Name a European capital city and its country.",
        text_format=City,
        max_output_tokens=64,
        temperature=0,
    )
    if parsed.status == "completed":
        assert isinstance(parsed.output_parsed, City)


def test_store_true_and_previous_response_id_are_refused_by_name(served: RunningGateway) -> None:
    client, _ = sdk(served)
    for refused, param in (
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=MODEL, input="Hi", **refused)  # type: ignore[arg-type]
        error = info.value.body
        assert isinstance(error, dict) and error["param"] == param


def test_errors_of_the_translated_request_name_the_responses_parameters(
    served: RunningGateway,
) -> None:
    """Served through chat, but a client of the Responses API hears its own names: an input
    over the context is 'input' (not 'messages'), an output budget 'max_output_tokens'."""
    client, _ = sdk(served)
    for extra, param in (
        ({"input": "word " * 3000}, "input"),
        ({"input": "Hi", "max_output_tokens": 100000}, "max_output_tokens"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=MODEL, **extra)  # type: ignore[arg-type]
        error = info.value.body
        assert isinstance(error, dict) and error["param"] == param, error


# -- The OpenAI Agents SDK -----------------------------------------------------------------------


def test_an_agents_sdk_tool_loop_runs_the_python_tool_and_finishes(
    served: RunningGateway,
) -> None:
    from agents import (
        Agent,
        AgentHooks,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # tracing would export to OpenAI's servers
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"It is 18 degrees and sunny in {city}."

    class AnswerAfterTheTool(AgentHooks[Any]):
        """Force the call on the first turn, then let the model only answer: a tiny model's
        wording cannot decide whether the loop runs or ends."""

        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: str) -> None:
            agent.model_settings = agent.model_settings.resolve(ModelSettings(tool_choice="none"))

    async def run() -> tuple[Any, AsyncRecordingTransport]:
        transport = AsyncRecordingTransport(served.tls_context())
        client = openai.AsyncOpenAI(
            base_url=served.url + "/v1",
            api_key=KEY,
            max_retries=0,
            http_client=httpx.AsyncClient(transport=transport, timeout=300),
        )
        agent = Agent(
            name="weather",
            instructions="You answer questions about the weather. Use the tools.",
            model=OpenAIResponsesModel(MODEL, client),
            tools=[get_weather],
            model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
            reset_tool_choice=False,
            hooks=AnswerAfterTheTool(),
        )
        try:
            return await Runner.run(agent, "What's the weather in Paris?", max_turns=4), transport
        finally:
            await client.close()

    result, transport = asyncio.run(run())
    assert calls, "the agent never ran the Python tool"
    assert isinstance(result.final_output, str) and result.final_output.strip()
    sent = responses_requests(transport)
    assert len(sent) == 2, "one request with the forced call, one with its result"
    assert sent[0]["tool_choice"] == "required" and sent[1]["tool_choice"] == "none"
    items = sent[1]["input"]
    [call] = [item for item in items if item.get("type") == "function_call"]
    [output] = [item for item in items if item.get("type") == "function_call_output"]
    assert call["name"] == "get_weather" and output["call_id"] == call["call_id"]
    assert output["output"] == f"It is 18 degrees and sunny in {calls[0]}."
    hosts = {request.url.host for request, _, _ in transport.exchanges}
    assert hosts == {"127.0.0.1"}


def test_an_agents_sdk_streamed_run_stops_on_the_tool_result(served: RunningGateway) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"18 degrees in {city}"

    async def run() -> tuple[Any, list[str]]:
        client = openai.AsyncOpenAI(
            base_url=served.url + "/v1",
            api_key=KEY,
            max_retries=0,
            http_client=httpx.AsyncClient(verify=served.tls_context(), timeout=300),
        )
        agent = Agent(
            name="weather",
            model=OpenAIResponsesModel(MODEL, client),
            tools=[get_weather],
            model_settings=ModelSettings(tool_choice="get_weather", temperature=0, max_tokens=64),
            tool_use_behavior="stop_on_first_tool",
        )
        try:
            streamed = Runner.run_streamed(agent, "What's the weather in Paris?", max_turns=2)
            kinds = [getattr(event, "data", event).type async for event in streamed.stream_events()]
            return streamed, kinds
        finally:
            await client.close()

    streamed, kinds = asyncio.run(run())
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.count("response.completed") == 1
    assert str(streamed.final_output).startswith("18 degrees in ")


# -- The Vercel AI SDK -----------------------------------------------------------------------------


def test_the_vercel_ai_sdk_default_provider_generates_and_streams(
    served: RunningGateway,
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (Debian: apt install nodejs npm); skipped")
    assert (NODE_DIR / "node_modules" / "@ai-sdk" / "openai").is_dir(), (
        "the @ai-sdk/openai npm package is missing: run `make test` (npm ci in tests/clients/node)"
    )
    completed = subprocess.run(
        [node, str(NODE_DIR / "ai_sdk.mjs"), served.url + "/v1", KEY, MODEL],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(served.cert)},
        cwd=NODE_DIR,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # The default `openai(model)` speaks the Responses API, and nothing else was called.
    assert set(result["paths"]) == {"/v1/responses"}, result["paths"]
    assert result["generate"]["text"].strip()
    assert result["generate"]["usage"]["outputTokens"] > 0
    assert result["generate"]["finishReason"] in {"stop", "length"}
    assert result["stream"]["text"].strip() and result["stream"]["deltas"] > 0
    assert result["stream"]["text"] == result["stream"]["joined"]
    assert result["stream"]["finishReason"] in {"stop", "length"}
    assert result["tools"]["calls"], "the AI SDK never ran the JavaScript tool"
    assert result["tools"]["text"].strip() and result["tools"]["steps"] >= 2


def test_the_verifying_transport_rejects_a_tampered_response_and_stream(
    served: RunningGateway,
) -> None:
    client = tampered_attested_sdk(served)
    ask = [{"role": "user", "content": "Hi"}]
    raises_verification_error(  # the tamperer is seen on chat: the control
        lambda: client.chat.completions.create(model=MODEL, messages=ask, max_tokens=4)
    )
    raises_verification_error(
        lambda: client.responses.create(model=MODEL, input="Hi", max_output_tokens=4)
    )
    raises_verification_error(
        lambda: list(
            client.responses.create(model=MODEL, input="Hi", max_output_tokens=4, stream=True)
        )
    )
