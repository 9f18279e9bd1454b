"""Hostile or absurd request bodies get OpenAI-shaped 400s from a real engine, never 500s,
and the engine stays healthy after them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.conftest import MODEL, QUEUE, SLOTS, RunningEngine

DEEP = 1200


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def tool_history(arguments: str, *, with_tools: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4,
        "messages": [
            {"role": "user", "content": "Look it up."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
    }
    if with_tools:
        body["tools"] = [{"type": "function", "function": {"name": "lookup"}}]
    return body


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        **extra,
    }


ARGUMENTS = "messages[1].tool_calls[0].function.arguments"

BODIES: list[tuple[str, bytes | dict[str, Any], str | None]] = [
    ("deep-body", ('{"model":"' + MODEL + '","messages":' + nested(DEEP) + "}").encode(), None),
    (
        "deep-body-in-schema",
        (
            '{"model":"'
            + MODEL
            + '","messages":[{"role":"user","content":"hi"}],"response_format":{"type":'
            '"json_schema","json_schema":{"schema":{"type":"object","x":' + nested(DEEP) + "}}}}"
        ).encode(),
        None,
    ),
    ("deep-arguments-with-tools", tool_history(nested(DEEP), with_tools=True), ARGUMENTS),
    ("deep-arguments-history-only", tool_history(nested(DEEP), with_tools=False), ARGUMENTS),
    (
        "deep-object-arguments",
        tool_history('{"a":' * DEEP + "1" + "}" * DEEP, with_tools=True),
        ARGUMENTS,
    ),
    ("n-past-capacity", chat(n=SLOTS + QUEUE + 1), "n"),
    ("n-past-limit", chat(n=10**6), "n"),
    ("huge-max-tokens", chat(max_tokens=10**30), "max_tokens"),
    ("logit-bias-superscript", chat(logit_bias={"²": 1}), "logit_bias"),
    ("logit-bias-huge-id", chat(logit_bias={"99999999": 1}), "logit_bias"),
    (
        "deep-response-schema",
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": nested_schema(200)},
            }
        ),
        None,
    ),
    (
        "deep-tool-parameters",
        chat(
            tools=[
                {"type": "function", "function": {"name": "f", "parameters": nested_schema(200)}}
            ]
        ),
        None,
    ),
]


@pytest.mark.parametrize(("name", "body", "param"), BODIES, ids=[b[0] for b in BODIES])
def test_hostile_bodies_are_400_and_leave_the_engine_healthy(
    engine: RunningEngine, name: str, body: bytes | dict[str, Any], param: str | None
) -> None:
    with engine.client() as client:
        if isinstance(body, bytes):
            response = client.post(
                "/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json"},
            )
        else:
            response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error" and error["message"]
        if param is not None:
            assert error["param"] == param
        health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # It still serves.
    with engine.client() as client:
        ok = client.post("/v1/chat/completions", json=chat(max_tokens=2))
    assert ok.status_code == 200, ok.text
