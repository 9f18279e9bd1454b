"""The request side of the PII stage, in-process, with a small fake detector.

The fake finds e-mail addresses, ``123-45-6789``-shaped SSNs, 16-digit card numbers, and
under the ``name`` field any capitalised word: enough to show which strings the stage hands
to the detector and what it does with the findings.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import pytest

from gateway.config import APIKeyConfig, PIIDetectionConfig, RoutePIIPolicy
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.pii.detector import CancelToken, DetectionCancelled, Finding
from gateway.pii.policy import RoutePolicy
from gateway.pii.restore import restore
from gateway.pii.stage import PIIStage
from gateway.pii.vault import PlaceholderVault
from gateway.pii.walk import RequestWalk
from gateway.protocol import ChatCompletionRequest

TYPES = ["EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD", "PERSON"]
PATTERNS = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"), "EMAIL_ADDRESS"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "US_SSN"),
    (re.compile(r"\b\d{16}\b"), "CREDIT_CARD"),
]


class FakeDetector:
    uses_ner = False
    entity_types = TYPES

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def detect(
        self,
        text: str,
        *,
        field: str | None = None,
        cancel: CancelToken | None = None,
        scope: str = "",
    ) -> list[Finding]:
        self.calls.append((text, field))
        found = [
            Finding(m.start(), m.end(), kind, 0.9)
            for pattern, kind in PATTERNS
            for m in pattern.finditer(text)
        ]
        if field == "name":
            found += [
                Finding(m.start(), m.end(), "PERSON", 0.9)
                for m in re.finditer(r"[A-Z][a-z]+", text)
            ]
        return sorted(found, key=lambda f: f.start)


EMAIL = "maria.gonzalez@example-health.org"
SSN = "078-05-1120"
CARD = "4111111111111111"


def stage(detector: Any, mode: str = "tokenize", **config: Any) -> PIIStage:
    policy = RoutePolicy.resolve(RoutePIIPolicy(mode=mode), TYPES, False)  # type: ignore[arg-type]
    return PIIStage(detector, {"m": policy}, PIIDetectionConfig(**config))


def exchange(body: dict[str, Any]) -> Exchange:
    request = ChatCompletionRequest.model_validate({"model": "m", **body})
    return Exchange(
        request_id="req_test",
        operation="chat/completions",
        key=APIKeyConfig(name="k", sha256="0" * 64),
        model="m",
        body_bytes=b"",
        upstream_body=request.upstream_body("m"),
    )


def tokenized(body: dict[str, Any], detector: Any | None = None) -> tuple[dict[str, Any], Any]:
    ex = exchange(body)
    asyncio.run(stage(detector or FakeDetector()).on_request(ex))
    return ex.upstream_body, ex.pii_vault


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def tool_call(arguments: str, name: str = "lookup", call_id: str = "call_0") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ],
    }


def test_type_role_and_model_keys_inside_user_json_are_scanned() -> None:
    arguments = json.dumps({"type": EMAIL, "role": SSN, "model": CARD})
    schema = {"type": "object", "properties": {"x": {"type": EMAIL, "enum": [SSN]}}}
    body, _ = tokenized(
        {
            "messages": [user("hi"), tool_call(arguments)],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"type": "object", "model": EMAIL}},
            },
        }
    )
    sent = json.dumps(body)
    for value in (EMAIL, SSN, CARD):
        assert value not in sent
    assert body["model"] == "m" and body["messages"][0]["role"] == "user"
    assert body["tools"][0]["function"]["parameters"]["type"] == "object"


def test_object_keys_in_user_json_are_replaced_keeping_their_order() -> None:
    arguments = json.dumps({"a": 1, EMAIL: "x", "z": 2})
    schema = {"type": "object", "properties": {EMAIL: {"type": "string"}}, "required": [EMAIL]}
    body, vault = tokenized(
        {
            "messages": [user("hi"), tool_call(arguments)],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
            "logit_bias": {SSN: 1.0},
        }
    )
    sent_arguments = json.loads(body["messages"][1]["tool_calls"][0]["function"]["arguments"])
    assert list(sent_arguments) == ["a", "<EMAIL_ADDRESS_1>", "z"]
    parameters = body["tools"][0]["function"]["parameters"]
    assert list(parameters["properties"]) == ["<EMAIL_ADDRESS_1>"]
    assert parameters["required"] == ["<EMAIL_ADDRESS_1>"]
    assert list(body["logit_bias"]) == ["<US_SSN_1>"]
    echoed = json.dumps({"<EMAIL_ADDRESS_1>": "x"})
    assert json.loads(restore(echoed, vault, json_escaped=True)) == {EMAIL: "x"}


def test_numbers_in_tool_arguments_are_scanned_and_restored_as_numbers() -> None:
    arguments = json.dumps({"card": int(CARD), "count": 3})
    body, vault = tokenized({"messages": [user("hi"), tool_call(arguments)]})
    sent = body["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"card": "<CREDIT_CARD_1>", "count": 3}
    assert json.loads(restore(sent, vault, json_escaped=True)) == {"card": int(CARD), "count": 3}
    assert restore("card <CREDIT_CARD_1>", vault) == f"card {CARD}"
    assert json.loads(
        restore(json.dumps({"n": "no <CREDIT_CARD_1>"}), vault, json_escaped=True)
    ) == {"n": f"no {CARD}"}


def test_pii_free_arguments_stay_byte_identical() -> None:
    arguments = '{"b":  1,   "a": "MAX_RETRIES_3"}'
    body, _ = tokenized({"messages": [user("hi"), tool_call(arguments)]})
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments


def test_escaped_values_in_arguments_that_are_not_json_are_masked_whole() -> None:
    hidden = EMAIL.replace("@", "\\u0040").replace(".", "\\u002e")
    arguments = '{"to": "' + hidden + '", oops'
    body, vault = tokenized({"messages": [user(f"send to {hidden} now"), tool_call(arguments)]})
    sent = json.dumps(body, ensure_ascii=False)
    assert hidden not in sent and EMAIL not in sent
    assert body["messages"][0]["content"] == "send to <EMAIL_ADDRESS_1> now"
    assert restore(body["messages"][0]["content"], vault) == f"send to {hidden} now"


def test_surrogate_pair_escapes_are_decoded_for_scanning() -> None:
    body, _ = tokenized({"messages": [user("x \\ud83d\\ude00maria\\u0040example.org y")]})
    assert "maria" not in body["messages"][0]["content"]


def test_participant_name_gets_an_alphabet_safe_placeholder_that_restores() -> None:
    body, vault = tokenized({"messages": [{"role": "user", "content": "hi", "name": "Margaret"}]})
    name = body["messages"][0]["name"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)
    assert "Margaret" not in name
    assert restore(f"Dear {name}, and <PERSON_1>", vault) == "Dear Margaret, and Margaret"


def test_tool_call_ids_take_the_safe_form() -> None:
    body, vault = tokenized({"messages": [user("hi"), tool_call("{}", call_id=f"id-{SSN}")]})
    call = body["messages"][1]["tool_calls"][0]
    assert SSN not in call["id"] and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", call["id"])
    assert restore(call["id"], vault) == f"id-{SSN}"


def test_text_that_looks_like_either_placeholder_form_is_vaulted_as_literal() -> None:
    text = "keep <PERSON_1> and __pii_PERSON_1__ and MAX_RETRIES_3 as written"
    body, vault = tokenized(
        {"messages": [user(text), {"role": "user", "content": "x", "name": "Ann"}]}
    )
    sent = body["messages"][0]["content"]
    assert "<PERSON_1>" not in sent and "__pii_PERSON_1__" not in sent
    assert "MAX_RETRIES_3" in sent
    assert restore(sent, vault) == text


def test_message_name_is_scanned_with_the_name_field_and_identifiers_without_context() -> None:
    detector = FakeDetector()
    tokenized(
        {"messages": [{"role": "user", "content": "hi", "name": "bob"}, tool_call("{}")]},
        detector,
    )
    fields = dict(detector.calls)
    assert fields["bob"] == "name"
    assert fields["lookup"] is None and fields["call_0"] is None
    assert "user" not in fields and "function" not in fields and "m" not in fields


def test_block_mode_refuses_values_found_in_keys() -> None:
    ex = exchange({"messages": [user("hi"), tool_call(json.dumps({EMAIL: 1}))]})
    with pytest.raises(GatewayError) as info:
        asyncio.run(stage(FakeDetector(), mode="block").on_request(ex))
    assert info.value.code == "pii_blocked"


def test_request_walk_visits_every_string_but_protocol_identifiers() -> None:
    walk = RequestWalk.of(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "t"}]}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "n"}},
        }
    )
    assert sorted(leaf.text for leaf in walk.leaves) == ["f", "n", "name", "t"]


class SlowDetector(FakeDetector):
    """Blocks in detect until told to go on, and records whether it saw the cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = threading.Event()

    def detect(
        self,
        text: str,
        *,
        field: str | None = None,
        cancel: CancelToken | None = None,
        scope: str = "",
    ) -> list[Finding]:
        self.started.set()
        self.release.wait(5)
        if cancel is not None and cancel.cancelled:
            self.saw_cancel.set()
            raise DetectionCancelled("cancelled")
        return super().detect(text, field=field, cancel=cancel)


def test_timed_out_detection_is_cancelled_and_stops_between_windows() -> None:
    detector = SlowDetector()
    detector.uses_ner = True  # type: ignore[misc]
    ex = exchange({"messages": [user("word " * 10_000)]})

    async def run() -> None:
        task = asyncio.create_task(stage(detector, timeout_s=0.2).on_request(ex))
        with pytest.raises(GatewayError) as info:
            await task
        assert info.value.code == "pii_detection_failed"
        detector.release.set()

    asyncio.run(run())
    assert ex.cancel.cancelled
    assert detector.saw_cancel.wait(5)
    calls = len(detector.calls)
    assert calls <= 1  # no window after the one running when the request gave up


def test_restored_vault_knows_only_what_was_vaulted() -> None:
    assert restore("<PERSON_1>", PlaceholderVault()) == "<PERSON_1>"


def test_a_copy_of_a_found_value_that_the_detector_missed_is_masked_too() -> None:
    class MissesWrapped(FakeDetector):
        def detect(
            self,
            text: str,
            *,
            field: str | None = None,
            cancel: CancelToken | None = None,
            scope: str = "",
        ) -> list[Finding]:
            return [
                f for f in super().detect(text, field=field) if text[f.start - 1 : f.start] != "_"
            ]

    body, vault = tokenized(
        {"messages": [user(f"{SSN} and __{SSN}__ but not 9{SSN}")]}, MissesWrapped()
    )
    sent = body["messages"][0]["content"]
    assert sent == f"<US_SSN_1> and __<US_SSN_1>__ but not 9{SSN}"
    assert restore(sent, vault) == f"{SSN} and __{SSN}__ but not 9{SSN}"


def test_one_key_sending_huge_texts_leaves_detection_workers_to_other_keys() -> None:
    class Blocking(FakeDetector):
        """Holds every text of key "a" until released; others pass at once."""

        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()
            self.waiting = threading.Semaphore(0)

        def detect(
            self,
            text: str,
            *,
            field: str | None = None,
            cancel: CancelToken | None = None,
            scope: str = "",
        ) -> list[Finding]:
            if scope == "a" * 64:
                self.waiting.release()
                self.release.wait(10)
            return super().detect(text, field=field, cancel=cancel)

    detector = Blocking()
    pii = stage(detector, offload_chars=10)  # every text goes to a worker thread
    huge = {"messages": [user("x" * 200)]}

    def keyed(body: dict[str, Any], digest: str) -> Exchange:
        ex = exchange(body)
        ex.key = APIKeyConfig(name=digest[:1], sha256=digest)
        return ex

    async def scenario() -> dict[str, Any]:
        flood = [asyncio.create_task(pii.on_request(keyed(huge, "a" * 64))) for _ in range(40)]
        other = keyed({"messages": [user(f"mail {EMAIL}")]}, "b" * 64)
        try:
            await asyncio.wait_for(pii.on_request(other), timeout=5)
        finally:
            detector.release.set()
            await asyncio.gather(*flood)
        return other.upstream_body

    body = asyncio.run(scenario())
    assert EMAIL not in json.dumps(body)
