"""Paths an attacker found around the PII stage, each closed against a real gateway process.

Values are planted through each path; the capture upstream records every byte it receives,
and none of them may hold a planted value, raw or JSON-escaped.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.auth import hash_key
from gateway.pii.findings import Finding
from gateway.pii.introduced import IntroducedRedactor
from gateway.pii.response import StreamRestoration
from gateway.pii.vault import PlaceholderVault
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import RunningGateway, free_port, start_gateway, stop_gateway
from tests.pii.conftest import pii_gateway_config
from tests.pii.test_pii_e2e import PLANTED

EMAIL = PLANTED["email"]
SSN = PLANTED["ssn"]
CARD_DIGITS = "4111111111111111"
OTHER_KEY = "sk-test-other-0123456789"


def forms(value: str) -> set[str]:
    escaped = json.dumps(value)[1:-1]
    return {value, escaped, json.dumps(value, ensure_ascii=True)[1:-1]}


def received_since(capture: CaptureUpstream, before: int) -> str:
    out = b""
    for request in capture.requests()[before:]:
        out += base64.b64decode(request["body"]) + json.dumps(request["headers"]).encode()
    return out.decode("utf-8", "replace")


def assert_none_arrived(capture: CaptureUpstream, before: int, *values: str) -> None:
    received = received_since(capture, before)
    assert len(capture.requests()) > before, "nothing was forwarded at all"
    for value in values:
        for form in forms(value):
            assert form not in received, f"{value!r} reached the upstream as {form!r}"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def chat(gateway: RunningGateway, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    with gateway.client() as client:
        return client.post("/v1/chat/completions", json=body, **kwargs)


def streamed_text(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The streamed content and every other delta field, concatenated per field."""
    content = ""
    fields: dict[str, str] = {}
    for line in response.text.splitlines():
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        for choice in event.get("choices") or ():
            for key, value in (choice.get("delta") or {}).items():
                if isinstance(value, str) and key != "role":
                    if key == "content":
                        content += value
                    else:
                        fields[key] = fields.get(key, "") + value
        for key, value in event.items():
            if isinstance(value, str) and key not in {"id", "object", "model"}:
                fields.setdefault("top." + key, value)
    return content, fields


def tool_message(arguments: str, name: str = "lookup", call_id: str = "call_0") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def test_strings_under_type_role_model_keys_object_keys_and_numbers_never_arrive(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    arguments = json.dumps(
        {"type": EMAIL, "role": SSN, "model": PLANTED["card"], EMAIL: 1, "card": int(CARD_DIGITS)}
    )
    schema = {
        "type": "object",
        "properties": {EMAIL: {"type": SSN}, "model": {"type": "string"}},
        "required": [EMAIL],
    }
    body = {
        "model": "capture",
        "messages": [{"role": "user", "content": "hello"}, tool_message(arguments)],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": EMAIL, "properties": {SSN: {}}}},
        },
    }
    response = chat(pii_gateway, body)
    assert response.status_code == 200, response.text
    assert_none_arrived(capture, before, EMAIL, SSN, PLANTED["card"], CARD_DIGITS)


def test_escaped_values_in_invalid_arguments_and_in_content_never_arrive(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    hidden = EMAIL.replace("@", "\\u0040")
    surrogate = "\\ud83d\\ude00" + EMAIL.replace("@", "\\u0040").replace(".", "\\u002E")
    body = {
        "model": "capture",
        "messages": [
            {"role": "user", "content": f"mail {surrogate} today"},
            tool_message('{"to": "' + hidden + '", "broken'),
        ],
    }
    response = chat(pii_gateway, body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"mail {surrogate} today"
    assert_none_arrived(capture, before, EMAIL, hidden, surrogate, EMAIL.split("@")[0])


def test_tool_call_keys_and_numbers_come_back_exactly_as_the_client_sent_them(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    original = {EMAIL: "primary", "card": int(CARD_DIGITS), "count": 2, "ssn": SSN}
    body = {
        "model": "capture",
        "messages": [
            tool_message(json.dumps(original)),
            {"role": "user", "content": "ECHO_ARGS please"},
        ],
    }
    before = len(capture.requests())
    response = chat(pii_gateway, body)
    arguments = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == original
    streamed = chat(pii_gateway, {**body, "stream": True})
    text = ""
    for line in streamed.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                for call in choice.get("delta", {}).get("tool_calls") or ():
                    text += call.get("function", {}).get("arguments") or ""
    assert json.loads(text) == original
    assert_none_arrived(capture, before, EMAIL, CARD_DIGITS, SSN)


def test_participant_name_placeholder_fits_the_name_alphabet_and_is_restored(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    body = {
        "model": "capture",
        "messages": [{"role": "user", "content": "ECHO_NAME hi", "name": EMAIL}],
    }
    response = chat(pii_gateway, body)
    assert response.json()["choices"][0]["message"]["content"] == f"ECHO_NAME hi name={EMAIL}"
    sent = json.loads(base64.b64decode(capture.requests()[-1]["body"]))
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sent["messages"][0]["name"])
    assert_none_arrived(capture, before, EMAIL)


@pytest.mark.parametrize("model", ["capture", "capture-introduced"])
def test_fields_beyond_content_are_restored_and_introduced_values_redacted(
    pii_gateway: RunningGateway, capture: CaptureUpstream, model: str
) -> None:
    mine = f"REASONING about {EMAIL} and <PERSON_1>"
    body = {"model": model, "messages": [{"role": "user", "content": mine}]}
    introduced = "<EMAIL_ADDRESS>" if model == "capture-introduced" else "intruder@example.net"
    message_body = chat(pii_gateway, body).json()
    message = message_body["choices"][0]["message"]
    assert message["content"] == mine
    assert message["reasoning_content"] == f"Think of {introduced}. {mine}"
    assert message_body["provider_note"] == mine
    content, fields = streamed_text(chat(pii_gateway, {**body, "stream": True}))
    assert content == mine
    assert fields["reasoning_content"] == f"Think of {introduced}. {mine}"
    assert fields["top.provider_note"] == mine


VARIED = [
    f"Patient {PLANTED['name']} wrote from {EMAIL}.",
    f"{EMAIL}{EMAIL} back to back",
    f"<{EMAIL}>",
    f"card={PLANTED['card']};ssn={SSN}",
    "literal <PERSON_1> and <EMAIL_ADDRESS_1> and __pii_PERSON_1__ stay",
    "MAX_RETRIES_3 and __init__ and <b>bold</b> are ordinary",
    f"unicode Zoë Ünal 日本語 {EMAIL} ✓",
    f'json {{"email": "{EMAIL}", "n": 1}}',
    f"newline\n{SSN}\nend",
    f"phone {PLANTED['phone']} intl {PLANTED['intl_phone']}",
    f"iban {PLANTED['iban']} ip {PLANTED['ip']}",
    f"tabs\t{EMAIL}\t<",
    "ends with a lone <",
    "ends with __pii_",
    f"< {EMAIL} >",
    f"{SSN}",
    "",
]


def varied_texts() -> list[str]:
    texts = [t for t in VARIED if t]
    # A lone PEM body line is only a secret in its PEM context: not planted bare here.
    values = [v for k, v in PLANTED.items() if k != "private_key_line"]
    for index in range(40):
        value = values[index % len(values)]
        texts.append(f"case {index}: <<{value}>> __{value}__ {'x' * (index % 7)}<")
    return texts


@pytest.mark.parametrize("model", ["capture", "capture-introduced"])
def test_restore_is_exact_for_many_varied_texts_streamed_and_not(
    pii_gateway: RunningGateway, capture: CaptureUpstream, model: str
) -> None:
    texts = varied_texts()
    assert len(texts) >= 50
    with pii_gateway.client() as client:
        for text in texts:
            body = {"model": model, "messages": [{"role": "user", "content": text}]}
            answer = client.post("/v1/chat/completions", json=body).json()
            assert answer["choices"][0]["message"]["content"] == text
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
            assert streamed_text(streamed)[0] == text


def test_unknown_model_name_is_not_echoed_logged_or_signed(pii_gateway: RunningGateway) -> None:
    model = f"gpt-{SSN}"
    response = chat(pii_gateway, {"model": model, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    assert SSN not in response.text
    claims = claims_of(response.headers["x-attestation-token"])
    assert SSN not in json.dumps(claims)
    assert claims["model"]["name"] is None and claims["model"]["requested_sha256"]
    assert SSN not in pii_gateway.log_path.read_text(errors="replace")


def test_ssn_shaped_request_id_is_only_echoed_back_to_the_client(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    response = chat(
        pii_gateway,
        {"model": "capture", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": "123-45-6789"},
    )
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-client-request-id"] == "123-45-6789"
    assert "123-45-6789" not in json.dumps(claims_of(response.headers["x-attestation-token"]))
    assert_none_arrived(capture, before, "123-45-6789")
    assert "123-45-6789" not in pii_gateway.log_path.read_text(errors="replace")


def test_unrecognized_argument_named_like_pii_is_not_echoed(pii_gateway: RunningGateway) -> None:
    body = {"model": "capture", "messages": [{"role": "user", "content": "x"}], EMAIL: 1}
    response = chat(pii_gateway, body)
    assert response.status_code == 400
    assert EMAIL not in response.text


@pytest.fixture(scope="module")
def fallback_gateway(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("pii-fallback")
    config = pii_gateway_config(tmp, capture)
    dead = f"https://127.0.0.1:{free_port()}/v1"
    config["models"] = [
        {
            # An in-guest route (an attested engine) that is down, with PII handling off.
            "name": "local-off",
            "deployments": [
                {"kind": "remote", "base_url": dead, "attestation": {"allow_simulated": True}}
            ],
            "pii": {"mode": "off"},
            "fallback": "external",
        },
        {
            "name": "external",
            "deployments": [{"kind": "remote", "base_url": capture.url + "/v1", "model": "x"}],
        },
    ]
    running = start_gateway(tmp, config, ready_models=["external"])
    try:
        yield running
    finally:
        stop_gateway(running)


def test_off_route_falling_back_outside_the_guest_is_tokenized(
    fallback_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    text = f"Write to {EMAIL} about card {PLANTED['card']}"
    body = {"model": "local-off", "messages": [{"role": "user", "content": text}]}
    response = chat(fallback_gateway, body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == text
    claims = claims_of(response.headers["x-attestation-token"])
    assert claims["pii"]["mode"] == "tokenize"
    streamed = chat(fallback_gateway, {**body, "stream": True})
    assert streamed_text(streamed)[0] == text
    assert_none_arrived(capture, before, EMAIL, PLANTED["card"])


@pytest.fixture(scope="module")
def small_timeout_gateway(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("pii-starve")
    config = pii_gateway_config(tmp, capture, timeout_s=3)
    config["api_keys"].append({"name": "other", "sha256": hash_key(OTHER_KEY)})
    config["listener"]["max_body_bytes"] = 8 * 1024 * 1024
    running = start_gateway(tmp, config)
    try:
        yield running
    finally:
        stop_gateway(running)


def test_huge_request_is_refused_while_other_tenants_keep_being_served(
    small_timeout_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    huge = " ".join(f"word{i} Mr Smith lives at {i} Main Street" for i in range(16_000))[:600_000]

    def big() -> httpx.Response:
        with small_timeout_gateway.client(timeout=120) as client:
            body = {"model": "capture", "messages": [{"role": "user", "content": huge}]}
            return client.post("/v1/chat/completions", json=body)

    def small(index: int) -> httpx.Response:
        with small_timeout_gateway.client(OTHER_KEY, timeout=60) as client:
            body = {
                "model": "capture",
                "messages": [{"role": "user", "content": f"note {index} for {EMAIL}"}],
            }
            return client.post("/v1/chat/completions", json=body)

    answers: list[httpx.Response] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        refused = pool.submit(big)
        while not refused.done() and len(answers) < 300:
            answers += [f.result() for f in [pool.submit(small, i) for i in range(3)]]
        big_answer = refused.result()
        answers += [pool.submit(small, i).result() for i in range(3)]
    assert big_answer.status_code == 503
    assert big_answer.json()["error"]["code"] == "pii_detection_failed"
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert EMAIL in answer.json()["choices"][0]["message"]["content"]


def test_a_value_hidden_behind_a_duplicate_argument_key_never_arrives(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    arguments = '{"note": "write to ' + EMAIL + " ssn " + SSN + '", "note": "hello"}'
    body = {
        "model": "capture",
        "messages": [{"role": "user", "content": "x"}, tool_message(arguments)],
    }
    response = chat(pii_gateway, body)
    assert response.status_code == 200, response.text
    assert_none_arrived(capture, before, EMAIL, SSN)
    blocked = chat(pii_gateway, {**body, "model": "capture-block"})
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_blocked"


def test_invisible_and_lookalike_characters_do_not_hide_a_value(
    pii_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    hidden = [
        EMAIL.replace("@", "\u200b@"),
        EMAIL.replace("@", "\uff20"),
        SSN[:6] + "\u00ad" + SSN[6:],
        "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in CARD_DIGITS),
    ]
    body = {"model": "capture", "messages": [{"role": "user", "content": " and ".join(hidden)}]}
    response = chat(pii_gateway, body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == " and ".join(hidden)
    assert_none_arrived(capture, before, *hidden)


def test_arguments_nested_too_deep_or_with_lone_surrogates_are_a_400(
    pii_gateway: RunningGateway,
) -> None:
    for arguments in ('{"a":' * 3000 + "1" + "}" * 3000, '{"a": "\\ud800 x"}'):
        body = {"model": "capture", "messages": [tool_message(arguments)]}
        response = chat(pii_gateway, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_value"


def streamed_choices(response: httpx.Response) -> dict[int, dict[str, Any]]:
    """Per choice index: content, and the identifier fields (``name``, tool call ids/names)."""
    out: dict[int, dict[str, Any]] = {}
    for line in response.text.splitlines():
        if not line.startswith("data: {"):
            continue
        for choice in json.loads(line[6:]).get("choices") or ():
            seen = out.setdefault(choice["index"], {"content": "", "calls": {}})
            delta = choice.get("delta") or {}
            seen["content"] += delta.get("content") or ""
            if "name" in delta:
                seen["name"] = delta["name"]
            for call in delta.get("tool_calls") or ():
                got = seen["calls"].setdefault(call["index"], {"arguments": ""})
                if "id" in call:
                    got["id"] = call["id"]
                function = call.get("function") or {}
                if "name" in function:
                    got["name"] = function["name"]
                got["arguments"] += function.get("arguments") or ""
    return out


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["capture", "capture-introduced"])
def test_pii_the_upstream_put_in_identifier_fields_is_redacted_in_the_safe_form(
    pii_gateway: RunningGateway, model: str, stream: bool
) -> None:
    mine = f"IDENTIFIERS for {EMAIL} and {PLANTED['name']}"
    body = {"model": model, "messages": [{"role": "user", "content": mine}], "stream": stream}
    response = chat(pii_gateway, body)
    assert response.status_code == 200, response.text
    if stream:
        choice = streamed_choices(response)[0]
        name, call, content = choice["name"], choice["calls"][0], choice["content"]
    else:
        message = response.json()["choices"][0]["message"]
        name, content = message["name"], message["content"]
        raw = message["tool_calls"][0]
        call = {"id": raw["id"], **raw["function"]}
    assert content == mine
    assert json.loads(call["arguments"]) == {"text": mine}
    if model == "capture":
        assert (name, call["id"], call["name"]) == (
            "intruder@example.net",
            "intruder@example.net",
            "(212) 555-0187",
        )
        return
    assert name == call["id"] == "__pii_EMAIL_ADDRESS__"
    assert call["name"] == "__pii_PHONE_NUMBER__"


def test_a_value_inside_a_longer_client_value_is_not_the_clients_own(
    pii_gateway: RunningGateway,
) -> None:
    # The upstream introduces intruder@example.net; the client only wrote a longer address
    # that contains it, so that is no excuse. The client's own whole value (any case) is.
    for client_value, kept in [
        ("theintruder@example.net", False),
        ("intruder@example.network", False),
        ("INTRUDER@Example.NET", True),
    ]:
        mine = f"INTRODUCE reply to {client_value} please"
        body = {"model": "capture-introduced", "messages": [{"role": "user", "content": mine}]}
        expected = "intruder@example.net" if kept else "<EMAIL_ADDRESS>"
        answer = chat(pii_gateway, body).json()["choices"][0]["message"]["content"]
        assert answer == f"Ask {expected}. {mine}", client_value
        streamed = chat(pii_gateway, {**body, "stream": True})
        assert streamed_text(streamed)[0] == f"Ask {expected}. {mine}", client_value


class _EmailDetector:
    def detect(self, text: str, scope: str = "") -> list[Any]:
        return [
            Finding(m.start(), m.end(), "EMAIL_ADDRESS", 0.9)
            for m in re.finditer(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)
        ]


@pytest.mark.parametrize(
    ("client", "redacted"),
    [
        ("write to joann@x.io", True),
        ("write to ann@x.io.uk", False),
        ("ann@x.ioo", True),
        ("Mail ANN@X.IO.", False),
        ("(ann@x.io)", False),
        ("ann", True),
        ("x.io", True),
    ],
)
def test_the_clients_own_value_must_match_whole(client: str, redacted: bool) -> None:
    redactor = IntroducedRedactor(
        _EmailDetector(),  # type: ignore[arg-type]
        frozenset({"EMAIL_ADDRESS"}),
        ["unrelated", client],
    )
    expected = "ask <EMAIL_ADDRESS> now" if redacted else "ask ann@x.io now"
    assert redactor.redact("ask ann@x.io now") == expected


@pytest.mark.parametrize("model", ["capture", "capture-introduced"])
def test_several_streamed_choices_are_restored_and_redacted_each_on_its_own(
    pii_gateway: RunningGateway, capture: CaptureUpstream, model: str
) -> None:
    before = len(capture.requests())
    mine = f"CHOICES to {EMAIL}, {PLANTED['name']}, {SSN}; literal <PERSON_1> and __pii_X_1__"
    body = {"model": model, "n": 2, "messages": [{"role": "user", "content": mine}]}
    introduced = "<EMAIL_ADDRESS>" if model == "capture-introduced" else "intruder@example.net"
    expected = {0: mine, 1: f"Also {introduced}: {mine}"}
    answer = chat(pii_gateway, body).json()
    assert {c["index"]: c["message"]["content"] for c in answer["choices"]} == expected
    streamed = streamed_choices(chat(pii_gateway, {**body, "stream": True}))
    assert {index: seen["content"] for index, seen in streamed.items()} == expected
    assert_none_arrived(capture, before, EMAIL, SSN, PLANTED["name"])


class _NamesEverywhere(_EmailDetector):
    def detect(self, text: str, scope: str = "") -> list[Any]:
        return [*super().detect(text), Finding(0, len(text), "PERSON", 0.8)]


def test_identifier_redaction_keeps_ner_names_out_of_tool_call_ids() -> None:
    # NER takes random ids for names now and then; such an id must survive the round trip.
    redactor = IntroducedRedactor(
        _NamesEverywhere(),  # type: ignore[arg-type]
        frozenset({"EMAIL_ADDRESS", "PERSON"}),
        ["hi"],
    )
    call = {"index": 0, "id": "call_sbpbW11yAzm60YDJEY8f0k4Z", "function": {"name": "a@b.io"}}
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    out = StreamRestoration(PlaceholderVault(), redactor).chunk(chunk)
    got = out["choices"][0]["delta"]["tool_calls"][0]
    assert got["id"] == "call_sbpbW11yAzm60YDJEY8f0k4Z"
    assert got["function"]["name"] == "__pii_EMAIL_ADDRESS__"
