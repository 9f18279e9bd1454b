"""Tool-call parsers read the same calls from a stream split anywhere as from whole text."""

from __future__ import annotations

import json
import random

import pytest

from enclave_backend.choice_output import ChoiceOutput
from enclave_backend.tools.events import ArgumentsDelta, CallStarted, ContentDelta, ParsedDelta
from enclave_backend.tools.formats import (
    GenericFormat,
    HermesFormat,
    Llama3Format,
    MistralFormat,
    ToolFormat,
    tool_format_for,
)


def parse(fmt: ToolFormat, text: str, *, json_response: bool = False, seed: int = 0):
    """(content, [(name, arguments)]) read with the text cut into random pieces."""
    parser = fmt.parser(response_is_json=json_response)
    rng = random.Random(seed)
    deltas: list[ParsedDelta] = []
    i = 0
    while i < len(text):
        n = rng.randint(1, 5)
        deltas += parser.feed(text[i : i + n])
        i += n
    deltas += parser.finish()
    content = "".join(d.text for d in deltas if isinstance(d, ContentDelta))
    calls = [[d.name, ""] for d in deltas if isinstance(d, CallStarted)]
    for d in deltas:
        if isinstance(d, ArgumentsDelta):
            calls[d.index][1] += d.text
    return content, [tuple(c) for c in calls]


@pytest.mark.parametrize("seed", range(20))
def test_generic_calls_are_read_whatever_the_split(seed: int) -> None:
    text = (
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa}r\\"is", '
        '"days": [1, 2]}}, {"name": "get_time", "arguments": {}}]}'
    )
    content, calls = parse(GenericFormat(), text, seed=seed)
    assert content == ""
    assert calls == [
        ("get_weather", '{"city": "Pa}r\\"is", "days": [1, 2]}'),
        ("get_time", "{}"),
    ]
    assert json.loads(calls[0][1]) == {"city": 'Pa}r"is', "days": [1, 2]}


@pytest.mark.parametrize("seed", range(10))
def test_generic_response_is_decoded_with_escapes_and_surrogate_pairs(seed: int) -> None:
    text = '{"response": "Line one\\nd\\u00e9j\\u00e0 \\"vu\\" \\ud83d\\ude00 \\\\ end"}'
    content, calls = parse(GenericFormat(), text, seed=seed)
    assert calls == []
    assert content == 'Line one\ndéjà "vu" 😀 \\ end'


def test_generic_json_response_is_the_raw_json_document() -> None:
    content, calls = parse(GenericFormat(), '{"response": {"a": [1, "}"]}}', json_response=True)
    assert calls == [] and json.loads(content) == {"a": [1, "}"]}


def test_a_call_cut_off_by_max_tokens_keeps_what_was_written() -> None:
    content, calls = parse(GenericFormat(), '{"tool_calls": [{"name": "f", "arguments": {"q": "ab')
    assert content == "" and calls == [("f", '{"q": "ab')]


def test_arguments_before_the_name_are_held_until_the_name_is_known() -> None:
    text = '<tool_call>\n{"arguments": {"x": 1}, "name": "f"}\n</tool_call>'
    assert parse(HermesFormat(), text) == ("", [("f", '{"x": 1}')])


def test_arguments_sent_as_a_json_string_are_unwrapped() -> None:
    text = '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'
    assert parse(HermesFormat(), text) == ("", [("f", '{"x": 1}')])


@pytest.mark.parametrize("seed", range(10))
def test_hermes_text_then_calls(seed: int) -> None:
    text = (
        "Let me check that.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>'
    )
    content, calls = parse(HermesFormat(), text, seed=seed)
    assert content == "Let me check that."
    assert calls == [("get_weather", '{"city": "Paris"}'), ("get_time", '{"tz": "CET"}')]


def test_hermes_text_that_only_looks_like_a_marker_is_content() -> None:
    assert parse(HermesFormat(), "a <tool_ca b <tool_cal") == ("a <tool_ca b <tool_cal", [])


def test_llama3_call_and_plain_answers() -> None:
    fmt = Llama3Format()
    assert parse(fmt, '{"name": "f", "parameters": {"a": 1}}') == ("", [("f", '{"a": 1}')])
    assert parse(fmt, '{"answer": 42}') == ('{"answer": 42}', [])
    assert parse(fmt, "Hello there") == ("Hello there", [])
    assert parse(fmt, "{") == ("{", [])


@pytest.mark.parametrize("seed", range(5))
def test_mistral_calls(seed: int) -> None:
    text = '[TOOL_CALLS][{"name": "f", "arguments": {"a": "b"}}, {"name": "g", "arguments": {}}]'
    assert parse(MistralFormat(), text, seed=seed) == ("", [("f", '{"a": "b"}'), ("g", "{}")])


def test_the_format_follows_the_chat_template() -> None:
    assert isinstance(tool_format_for("{{ tools }} <tool_call>"), HermesFormat)
    assert isinstance(tool_format_for("{{ tools }} [TOOL_CALLS]"), MistralFormat)
    llama = "{{ tools }} <|start_header_id|> parameters"
    assert isinstance(tool_format_for(llama), Llama3Format)
    assert isinstance(tool_format_for("{{ messages }}"), GenericFormat)
    assert isinstance(tool_format_for("{{ tools }} something else"), GenericFormat)


def test_choice_output_streams_openai_deltas_and_builds_the_message() -> None:
    fmt = GenericFormat()
    output = ChoiceOutput(fmt, fmt.parser(response_is_json=False))
    deltas = output.push('{"tool_calls": [{"name": "f", "arguments": {"a"')
    deltas += output.push(": 1}}]}")
    deltas += output.finish()
    first = deltas[0]["tool_calls"][0]
    assert first["index"] == 0 and first["type"] == "function"
    assert first["id"].startswith("call_") and first["function"] == {"name": "f", "arguments": ""}
    fragments = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:]]
    assert all("id" not in d["tool_calls"][0] for d in deltas[1:])
    assert json.loads("".join(fragments)) == {"a": 1}
    message = output.message()
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": first["id"], "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert output.finish_reason("stop") == "tool_calls"
    assert output.finish_reason("length") == "length"


def test_mistral_call_ids_are_nine_alphanumerics() -> None:
    call_id = MistralFormat().call_id()
    assert len(call_id) == 9 and call_id.isalnum()
