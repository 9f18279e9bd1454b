"""Planted personal data never reaches the upstream, and the client gets its text back exactly.

The upstream is a separate process that records every byte it receives and echoes the last
user message back (one character per SSE event when streaming); the client is the official
OpenAI SDK over TLS.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote, quote_plus

import httpx
import openai
import pytest

from tests.conftest import CaptureUpstream
from tests.gateway.conftest import KEY, RunningGateway, start_gateway, stop_gateway
from tests.pii.conftest import pii_gateway_config

PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\n"
    "OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n"
    "-----END PRIVATE KEY-----"
)
PLANTED = {
    "name": "Margaret Thornton",
    "email": "maria.gonzalez@example-health.org",
    "phone": "(415) 555-0199",
    "intl_phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "ssn": "078-05-1120",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ip": "203.0.113.77",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "private_key_line": "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2",
}
PROMPT = (
    f"Patient {PLANTED['name']} (email {PLANTED['email']}, phone {PLANTED['phone']}, "
    f"mobile {PLANTED['intl_phone']}) paid with card {PLANTED['card']}. SSN {PLANTED['ssn']}, "
    f"IBAN {PLANTED['iban']}, last seen from {PLANTED['ip']}. Keys: {PLANTED['aws']} and "
    f"{PLANTED['github']}. Authorization: Bearer {PLANTED['jwt']}. Encoded copies: "
    f"{quote(PLANTED['email'], safe='')} and "
    f"{base64.b64encode(PLANTED['email'].encode()).decode()}."
    " Text that looks like a placeholder stays mine: <PERSON_1> and <EMAIL_ADDRESS_2>."
)


def encodings(value: str) -> set[str]:
    variants = {
        value,
        value.lower(),
        value.upper(),
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(value.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
        binascii.hexlify(value.encode()).decode(),
        "".join(ch for ch in value if ch.isalnum()),
    }
    return {v for v in variants if len(v) >= 6}


def assert_nothing_leaked(capture: CaptureUpstream) -> None:
    received = capture.received_bytes()
    decoded = received.decode("utf-8", "replace")
    for label, value in PLANTED.items():
        for variant in encodings(value):
            assert variant not in decoded, f"{label} reached the upstream as {variant!r}"


def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        http_client=httpx.Client(verify=gateway.tls_context()),
    )


def full_request_messages() -> list[dict]:
    return [
        {"role": "system", "content": f"You help {PLANTED['name']} ({PLANTED['email']})."},
        {"role": "user", "content": f"My card is {PLANTED['card']}", "name": "margaret"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "arguments": json.dumps({"ssn": PLANTED["ssn"], "key": PRIVATE_KEY}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": f"IBAN {PLANTED['iban']}"},
        {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
    ]


def test_no_planted_value_reaches_the_upstream_and_text_comes_back_exactly(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    client = sdk(pii_gateway)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": f"Look up records for {PLANTED['email']}",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "ssn": {"type": "string", "description": f"for example {PLANTED['ssn']}"}
                    },
                },
            },
        }
    ]
    result = client.chat.completions.create(
        model="capture",
        messages=full_request_messages(),
        tools=tools,
        stop=[PLANTED["phone"]],
        user=PLANTED["email"],
    )
    assert result.choices[0].message.content == PROMPT

    streamed = client.chat.completions.create(
        model="capture", messages=full_request_messages(), stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    assert "".join(pieces) == PROMPT
    # The echo sends one character per event; restoration holds back no more than a
    # placeholder's length, so most of the text still arrives in many small pieces.
    assert len([p for p in pieces if p]) > len(PROMPT) // 4

    assert len(capture.requests()) >= 2
    assert_nothing_leaked(capture)
    sent = base64.b64decode(capture.requests()[-1]["body"])
    assert b"<PERSON_" in sent and b"<EMAIL_ADDRESS_" in sent


def test_tool_call_arguments_are_restored_with_json_escaping(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    client = sdk(pii_gateway)
    message = f"CALL_TOOL for {PLANTED['name']}: {PRIVATE_KEY}"
    result = client.chat.completions.create(
        model="capture", messages=[{"role": "user", "content": message}]
    )
    call = result.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"text": message}

    arguments = ""
    for chunk in client.chat.completions.create(
        model="capture", messages=[{"role": "user", "content": message}], stream=True
    ):
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += delta_call.function.arguments or ""
    assert json.loads(arguments) == {"text": message}
    assert_nothing_leaked(capture)


def test_block_route_refuses_naming_types_and_forwards_nothing(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    with pii_gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": "capture-block",
                "messages": [{"role": "user", "content": f"Mail {PLANTED['email']} now"}],
            },
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "pii_blocked"
    assert "EMAIL_ADDRESS" in error["message"]
    assert PLANTED["email"] not in response.text
    assert len(capture.requests()) == before


def test_redact_route_sends_type_labels_and_restores_nothing(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    client = sdk(pii_gateway)
    result = client.chat.completions.create(
        model="capture-redact",
        messages=[{"role": "user", "content": f"Write to {PLANTED['email']}"}],
    )
    assert result.choices[0].message.content == "Write to <EMAIL_ADDRESS>"
    assert_nothing_leaked(capture)


def test_values_the_upstream_introduced_are_redacted_on_such_routes(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    client = sdk(pii_gateway)
    mine = f"INTRODUCE reply to {PLANTED['email']}"
    expected = f"Ask <EMAIL_ADDRESS>. {mine}"
    result = client.chat.completions.create(
        model="capture-introduced", messages=[{"role": "user", "content": mine}]
    )
    assert result.choices[0].message.content == expected
    streamed = client.chat.completions.create(
        model="capture-introduced", messages=[{"role": "user", "content": mine}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def test_detector_failure_refuses_the_request_and_forwards_nothing(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> None:
    tmp = tmp_path_factory.mktemp("pii-timeout")
    gateway = start_gateway(tmp, pii_gateway_config(tmp, capture, timeout_s=0.000001))
    try:
        before = len(capture.requests())
        with gateway.client() as client:
            for stream in (False, True):
                response = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "capture",
                        "stream": stream,
                        "messages": [{"role": "user", "content": PROMPT}],
                    },
                )
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "pii_detection_failed"
                assert PLANTED["email"] not in response.text
        assert len(capture.requests()) == before
    finally:
        stop_gateway(gateway)


def test_gateway_logs_never_contain_planted_values(pii_gateway: RunningGateway) -> None:
    logs = pii_gateway.log_path.read_text(errors="replace")
    for engine_log in (pii_gateway.run_dir / "engines").glob("*.log"):
        logs += engine_log.read_text(errors="replace")
    for label, value in PLANTED.items():
        assert value not in logs, f"{label} appears in a log"
