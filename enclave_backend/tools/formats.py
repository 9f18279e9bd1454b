"""Tool-call formats: how a model is asked for calls, the grammar that keeps them valid, and
the parser that reads them back.

``tool_format_for`` picks one from the chat template's source, as llama.cpp's
``common/chat.cpp`` does: Hermes/Qwen ``<tool_call>`` JSON, Llama 3.x bare JSON, Mistral
``[TOOL_CALLS]``. Those templates render the tools themselves, and the grammar is lazy: it
turns on when the model writes the format's opening (its trigger), so text before a call is
unconstrained; with ``required`` or a named choice it holds from the first token. Every other
template gets the generic format: a JSON envelope, either ``{"tool_calls": [...]}`` or
``{"response": ...}``, constrained from the first token.

In every format the grammar admits only declared function names (only the named one for a
named choice), arguments that match each function's parameter schema, and at most one call
unless parallel calls are allowed.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from enclave_backend.grammar import GrammarBuilder, gbnf_literal
from enclave_backend.tools.prompting import generic_history, native_history
from enclave_backend.tools.spec import MAX_PARALLEL_CALLS, ToolSpec
from enclave_backend.tools.stream_parser import (
    END,
    ParserOutput,
    Program,
    StreamParser,
    call_object,
    expect_literal,
    json_string,
    raw_value,
    rest_as_content,
    skip_space,
)

Message = dict[str, Any]
# For the generic format's plain answer: None (free text), "object" (JSON mode) or a schema.
ResponseShape = None | str | dict[str, Any]
SEPARATOR = '"," space'
CALLS_KEY = gbnf_literal('"tool_calls"')
RESPONSE_KEY = gbnf_literal('"response"')


@dataclass(frozen=True)
class ToolGrammar:
    gbnf: str
    # Regexes over the output so far; the grammar starts at the first group of the first
    # that matches. Empty: the grammar holds from the first token.
    trigger_patterns: tuple[str, ...] = ()
    trigger_words: tuple[str, ...] = ()  # given to llama.cpp as tokens when single tokens


class ToolFormat(Protocol):
    name: str
    renders_tools: bool  # the template gets ``tools`` (its own format) or not (generic)

    def messages(self, messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]: ...

    def grammar(self, spec: ToolSpec, response: ResponseShape) -> ToolGrammar: ...

    def parser(self, *, response_is_json: bool) -> StreamParser: ...

    def call_id(self) -> str: ...


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema or ("type" not in schema and "properties" in schema):
        return {"type": "object", **schema}
    return schema


def _call_rules(builder: GrammarBuilder, spec: ToolSpec, argument_key: str) -> str:
    """One alternative per callable function: ``{"name": "f", "<key>": <its arguments>}``."""
    alternatives = []
    for i, function in enumerate(spec.callable):
        arguments = builder.schema(_parameters(function.parameters), f"fn{i}-arguments")
        body = " ".join(
            [
                '"{" space',
                gbnf_literal('"name"'),
                'space ":" space',
                gbnf_literal(f'"{function.name}"'),
                'space "," space',
                gbnf_literal(f'"{argument_key}"'),
                'space ":" space',
                arguments,
                '"}" space',
            ]
        )
        alternatives.append(builder.rule(f"call{i}", body))
    return builder.rule("call", " | ".join(alternatives))


def _repeat(item: str, spec: ToolSpec, separator: str) -> str:
    if spec.max_calls == 1:
        return item
    return f"{item} ({separator} {item}){{0,{MAX_PARALLEL_CALLS - 1}}}"


def _openai_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def _content_until(c: str, out: ParserOutput, marker: str) -> Generator[None, str, bool]:
    """Content up to ``marker`` (held back while it may be starting); True once it is read."""
    partial = ""
    while c != END:
        candidate = partial + c
        while candidate and not marker.startswith(candidate):
            out.content(candidate[0])
            candidate = candidate[1:]
        partial = candidate
        if partial == marker:
            return True
        c = yield
    out.content(partial)
    return False


def _drain() -> Program:
    while (yield) != END:
        pass


def _one_call_unless_asked(spec: ToolSpec) -> ToolSpec:
    """Several calls only when the client asked for them with ``parallel_tool_calls: true``:
    models without a tool format of their own repeat one call until ``max_tokens`` when
    merely allowed to go on (one call is always a valid answer where several are allowed)."""
    return spec if spec.parallel_asked else replace(spec, parallel=False)


class GenericFormat:
    """The envelope for templates without tool support (llama.cpp's generic format)."""

    name = "generic"
    renders_tools = False

    def messages(self, messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]:
        return generic_history(messages, spec and _one_call_unless_asked(spec))

    def grammar(self, spec: ToolSpec, response: ResponseShape) -> ToolGrammar:
        spec = _one_call_unless_asked(spec)
        builder = GrammarBuilder()
        call = _call_rules(builder, spec, "arguments")
        calls = builder.rule(
            "calls",
            f'{CALLS_KEY} space ":" space "[" space {_repeat(call, spec, SEPARATOR)} "]" space',
        )
        if spec.must_call:
            return ToolGrammar(builder.build(f'"{{" space {calls} "}}" space'))
        if response is None:
            # A reply that says nothing, only spaces, or the "..." / "<your answer>" of the
            # instructions (which small models copy) is never an answer.
            builder.primitive("string")
            first = builder.rule(
                "reply-first", r'[^"\\\x7F\x00-\x20.<…] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
            )
            answer = builder.rule("reply-text", f'"\\"" {first} char* "\\"" space')
        elif response == "object":
            answer = builder.primitive("object")
        else:
            assert isinstance(response, dict)
            answer = builder.schema(response, "response-value")
        reply = builder.rule("reply", f'{RESPONSE_KEY} space ":" space {answer}')
        return ToolGrammar(builder.build(f'"{{" space ({calls} | {reply}) "}}" space'))

    def parser(self, *, response_is_json: bool) -> StreamParser:
        def program(out: ParserOutput) -> Program:
            c = yield from skip_space((yield))
            if c != "{":
                yield from rest_as_content(c, out)
                return
            c = yield from skip_space((yield))
            key: list[str] = []
            if c != '"' or not (yield from json_string(key.append)):
                return
            c = yield from skip_space((yield))
            if c != ":":
                return
            c = yield from skip_space((yield))
            if "".join(key) == "response":
                if c == '"' and not response_is_json:
                    yield from json_string(out.content)
                else:
                    yield from raw_value(c, out.content)
            elif "".join(key) == "tool_calls" and c == "[":
                while True:
                    c = yield from skip_space((yield))
                    whole, c = yield from call_object(c, out)
                    c = yield from skip_space(c)
                    if not whole or c != ",":
                        break
            yield from _drain()

        return StreamParser(program)

    def call_id(self) -> str:
        return _openai_call_id()


class HermesFormat:
    """``<tool_call>{"name": ..., "arguments": ...}</tool_call>``: Hermes 2/3, Qwen 2.5/3."""

    name = "hermes"
    renders_tools = True
    open_tag = "<tool_call>"
    close_tag = "</tool_call>"

    def messages(self, messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]:
        return native_history(messages)

    def grammar(self, spec: ToolSpec, response: ResponseShape) -> ToolGrammar:
        builder = GrammarBuilder()
        call = _call_rules(builder, spec, "arguments")
        one = builder.rule(
            "tool-call",
            # The templates show the JSON on its own line: let the model write it so.
            f'{gbnf_literal(self.open_tag)} "\\n"? space {call} "\\n"? '
            + gbnf_literal(self.close_tag),
        )
        gbnf = builder.build(_repeat(one, spec, '"\\n"? space'))
        if spec.must_call:
            return ToolGrammar(gbnf)
        pattern = r"[\s\S]*?(" + re.escape(self.open_tag) + r")[\s\S]*"
        return ToolGrammar(gbnf, (pattern,), (self.open_tag,))

    def parser(self, *, response_is_json: bool) -> StreamParser:
        def program(out: ParserOutput) -> Program:
            c = yield
            while c != END:
                if not (yield from _content_until(c, out, self.open_tag)):
                    return
                c = yield from skip_space((yield))
                whole, c = yield from call_object(c, out)
                c = yield from skip_space(c)
                if not whole or not (yield from expect_literal(c, self.close_tag)):
                    yield from _drain()
                    return
                c = yield

        return StreamParser(program)

    def call_id(self) -> str:
        return _openai_call_id()


class Llama3Format:
    """Llama 3.1-3.3 JSON calls: ``{"name": ..., "parameters": ...}`` as the whole answer."""

    name = "llama3"
    renders_tools = True
    _opening = re.compile(r'\{\s*"name"')

    def messages(self, messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]:
        return native_history(messages)

    def grammar(self, spec: ToolSpec, response: ResponseShape) -> ToolGrammar:
        builder = GrammarBuilder()
        call = _call_rules(builder, spec, "parameters")
        gbnf = builder.build(_repeat(call, spec, '";" space'))
        if spec.must_call:
            return ToolGrammar(gbnf)
        return ToolGrammar(gbnf, (r'\s*(\{\s*"name")[\s\S]*',))

    def parser(self, *, response_is_json: bool) -> StreamParser:
        keys = frozenset({"parameters", "arguments"})

        def program(out: ParserOutput) -> Program:
            c = yield from skip_space((yield))
            seen = ""
            while c != END and len(seen) < 64:  # is this '{"name"' (a call) or an answer?
                seen += c
                if self._opening.match(seen) or not _could_open(seen):
                    break
                c = yield
            out.unread(seen[1:])
            if not self._opening.match(seen):
                yield from rest_as_content(seen[:1] or END, out)
                return
            c = seen[0]
            while True:
                whole, c = yield from call_object(c, out, argument_keys=keys)
                c = yield from skip_space(c)
                if not whole or c != ";":
                    break
                c = yield from skip_space((yield))
            yield from _drain()

        return StreamParser(program)

    def call_id(self) -> str:
        return _openai_call_id()


def _could_open(seen: str) -> bool:
    """Whether ``seen`` may still grow into ``{"name"`` (whitespace allowed after ``{``)."""
    rest = seen[1:].lstrip(" \t\r\n") if seen.startswith("{") else None
    return rest is not None and '"name"'.startswith(rest)


class MistralFormat:
    """``[TOOL_CALLS][{"name": ..., "arguments": ...}, ...]``: Mistral Nemo, Small, Large."""

    name = "mistral"
    renders_tools = True
    marker = "[TOOL_CALLS]"
    _id_alphabet = string.ascii_letters + string.digits

    def messages(self, messages: Sequence[Message], spec: ToolSpec | None) -> list[Message]:
        return native_history(messages)

    def grammar(self, spec: ToolSpec, response: ResponseShape) -> ToolGrammar:
        builder = GrammarBuilder()
        call = _call_rules(builder, spec, "arguments")
        calls = _repeat(call, spec, SEPARATOR)
        gbnf = builder.build(f'{gbnf_literal(self.marker)} space "[" space {calls} "]" space')
        if spec.must_call:
            return ToolGrammar(gbnf)
        pattern = r"[\s\S]*?(" + re.escape(self.marker) + r")[\s\S]*"
        return ToolGrammar(gbnf, (pattern,), (self.marker,))

    def parser(self, *, response_is_json: bool) -> StreamParser:
        def program(out: ParserOutput) -> Program:
            c = yield
            while c != END:
                if not (yield from _content_until(c, out, self.marker)):
                    return
                c = yield from skip_space((yield))
                if c != "[":
                    yield from _drain()
                    return
                while True:
                    c = yield from skip_space((yield))
                    whole, c = yield from call_object(c, out)
                    c = yield from skip_space(c)
                    if not whole or c != ",":
                        break
                if c != "]":
                    yield from _drain()
                    return
                c = yield

        return StreamParser(program)

    def call_id(self) -> str:
        # Mistral's templates refuse tool call ids that are not 9 alphanumerics.
        return "".join(secrets.choice(self._id_alphabet) for _ in range(9))


def tool_format_for(template_source: str) -> ToolFormat:
    """The model's own format when its template renders one, else the generic envelope."""
    if "tools" in template_source:
        if "<tool_call>" in template_source:
            return HermesFormat()
        if "[TOOL_CALLS]" in template_source:
            return MistralFormat()
        if "<|start_header_id|>" in template_source and "parameters" in template_source:
            return Llama3Format()
    return GenericFormat()
