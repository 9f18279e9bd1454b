"""The response side: every field of upstream chunks is restored, streams split anywhere."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from gateway.pii.detector import CancelToken, Finding
from gateway.pii.introduced import IntroducedRedactor
from gateway.pii.response import ResponseRestorer, StreamRestoration
from gateway.pii.restore import MAX_HOLDBACK, StreamRestorer, restore
from gateway.pii.vault import PlaceholderVault, safe_form
from tests.unit.test_pii_request_walk import FakeDetector


def vault_with(**values: str) -> PlaceholderVault:
    vault = PlaceholderVault()
    for kind, value in values.items():
        vault.placeholder_for(kind, value)
    return vault


def test_completion_fields_outside_content_are_restored() -> None:
    vault = vault_with(PERSON="Ann Lee")
    completion: dict[str, Any] = {
        "id": "x",
        "provider_note": "for <PERSON_1>",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi <PERSON_1>",
                    "reasoning_content": "think of <PERSON_1>",
                    "tool_calls": [
                        {
                            "id": "__pii_PERSON_1__",
                            "function": {"name": "f", "arguments": '{"n": "<PERSON_1>"}'},
                        }
                    ],
                },
            }
        ],
    }
    out = ResponseRestorer(vault, None).walk(completion)
    message = out["choices"][0]["message"]
    assert out["provider_note"] == "for Ann Lee"
    assert message["reasoning_content"] == "think of Ann Lee"
    assert message["tool_calls"][0]["id"] == "Ann Lee"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"n": "Ann Lee"}


def stream_fields(vault: PlaceholderVault, field: str, text: str, pieces: list[str]) -> str:
    restoration = StreamRestoration(vault, None)
    out = ""
    for piece in pieces:
        chunk = restoration.chunk({"choices": [{"index": 0, "delta": {field: piece}}]})
        out += chunk["choices"][0]["delta"].get(field, "")
    tail = restoration.tails(0)
    return out + (tail.get("delta", {}).get(field, "") if tail else "")


def test_placeholders_split_across_chunks_in_any_delta_field_are_restored() -> None:
    vault = vault_with(PERSON="Zoë", EMAIL_ADDRESS="z@x.org")
    text = "a <PERSON_1> b __pii_EMAIL_ADDRESS_1__ c<PERSON_1>"
    for field in ("content", "reasoning_content", "x_custom"):
        assert stream_fields(vault, field, text, list(text)) == "a Zoë b z@x.org cZoë"


def test_tool_call_arguments_stream_per_call_index_and_numbers_come_back_bare() -> None:
    vault = PlaceholderVault()
    vault.placeholder_for("US_SSN", "123456789", number=True)
    vault.placeholder_for("PERSON", 'Ann "A"')
    first = '{"ssn": "<US_SSN_1>", "who": "<PERSON_1>"}'
    second = '{"x": "<PERSON_1>"}'
    restoration = StreamRestoration(vault, None)
    got = {0: "", 1: ""}
    for a, b in zip(first, second.ljust(len(first)), strict=True):
        calls = [{"index": 0, "function": {"arguments": a}}]
        if b != " ":
            calls.append({"index": 1, "function": {"arguments": b}})
        chunk = restoration.chunk({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
        for call in chunk["choices"][0]["delta"]["tool_calls"]:
            got[call["index"]] += call["function"]["arguments"]
    finish = restoration.chunk(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    )
    for call in finish["choices"][0]["delta"].get("tool_calls", []):
        got[call["index"]] += call["function"]["arguments"]
    assert json.loads(got[0]) == {"ssn": 123456789, "who": 'Ann "A"'}
    assert json.loads(got[1]) == {"x": 'Ann "A"'}


def test_random_splits_restore_exactly_and_hold_back_is_bounded() -> None:
    vault = vault_with(PERSON="Margaret", EMAIL_ADDRESS="m@x.org", US_SSN="078-05-1120")
    pieces = [
        "<PERSON_1>",
        "__pii_EMAIL_ADDRESS_1__",
        "<US_SSN_1>",
        "<b>",
        "__init__",
        "_",
        "<",
        " x ",
    ]
    rng = random.Random(7)
    for json_mode in (False, True):
        for _ in range(200):
            text = "".join(rng.choice(pieces) for _ in range(12))
            restorer = StreamRestorer(vault, json_escaped=json_mode)
            out, cursor = "", 0
            while cursor < len(text):
                step = rng.randint(1, 5)
                out += restorer.push(text[cursor : cursor + step])
                cursor += step
                assert len(restorer._held) <= MAX_HOLDBACK
            out += restorer.finish()
            assert out == restore(text, vault, json_escaped=json_mode)


def test_safe_form_is_the_same_vault_entry() -> None:
    vault = vault_with(PERSON="Ann")
    assert restore(safe_form("<PERSON_1>"), vault) == "Ann"
    assert restore("MAX_RETRIES_3 __init__ __pii_PERSON_9__", vault) == (
        "MAX_RETRIES_3 __init__ __pii_PERSON_9__"
    )


class EmailAndNameDetector(FakeDetector):
    """Also flags the capitalised word after "Dear", as a contextual detector would."""

    def detect(
        self,
        text: str,
        *,
        field: str | None = None,
        cancel: CancelToken | None = None,
        scope: str = "",
    ) -> list[Finding]:
        found = super().detect(text, field=field, cancel=cancel)
        match = re.search(r"Dear ([A-Z][a-z]+)", text)
        if match:
            found.append(Finding(match.start(1), match.end(1), "PERSON", 0.9))
        # A sloppy span that runs into whatever follows, placeholders included.
        at = text.find("x@evil.org")
        if at >= 0:
            found.append(Finding(at, min(len(text), at + 14), "EMAIL_ADDRESS", 0.9))
        return found


def test_introduced_redaction_never_touches_placeholders_or_the_clients_own_words() -> None:
    redactor = IntroducedRedactor(
        EmailAndNameDetector(),
        frozenset({"PERSON", "EMAIL_ADDRESS"}),
        ["Please write to Dear Ruth for me"],
    )
    text = "Dear Ruth, mail x@evil.org<PERSON_1> now"
    assert redactor.redact(text) == "Dear Ruth, mail <EMAIL_ADDRESS><PERSON_1> now"


def test_introduced_values_in_extra_fields_are_redacted() -> None:
    redactor = IntroducedRedactor(FakeDetector(), frozenset({"EMAIL_ADDRESS"}), ["hello"])
    completion = {
        "provider_note": "ping a@b.org",
        "choices": [
            {"index": 0, "message": {"reasoning_content": "ask c@d.org", "role": "assistant"}}
        ],
    }
    out = ResponseRestorer(PlaceholderVault(), redactor).walk(completion)
    assert out["provider_note"] == "ping <EMAIL_ADDRESS>"
    assert out["choices"][0]["message"]["reasoning_content"] == "ask <EMAIL_ADDRESS>"
    assert out["choices"][0]["message"]["role"] == "assistant"
