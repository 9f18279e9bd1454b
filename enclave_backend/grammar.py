"""GBNF grammars for constrained output: JSON mode, JSON schemas, and tool-call envelopes.

Built on llama-cpp-python's JSON-schema converter with one correction: its string
characters admit raw control characters (a newline inside a string is not JSON), so the
output of a schema grammar could fail to parse. Here a string character is any character
but ``"``, ``\\`` and U+0000-U+001F, or an escape, as RFC 8259 says.

``GrammarBuilder`` lets several schemas live in one grammar (each tool's parameters under
its own rule prefix) beside hand-written rules such as a tool-call envelope.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp import llama_grammar

from enclave_backend.schema_limits import SchemaLimitError, SchemaScreen

JSON_STRING_CHAR = (
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


class SchemaGrammarError(ValueError):
    """A JSON schema could not be turned into a grammar (message safe for the client)."""


MAX_GRAMMAR_CHARS = 1 << 20
# llama.cpp parses a grammar recursively: nesting past this overflows its stack.
MAX_GRAMMAR_NESTING = 1200


def _nesting(grammar: str) -> int:
    """The deepest parenthesis nesting of any rule, outside literals and classes."""
    deepest = depth = 0
    quote = bracket = escaped = False
    for char in grammar:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote:
            quote = char != '"'
        elif bracket:
            bracket = char != "]"
        elif char == '"':
            quote = True
        elif char == "[":
            bracket = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        elif char == "\n":
            depth = 0
    return deepest


class _StrictConverter(llama_grammar.SchemaConverter):  # type: ignore[misc]
    def _add_primitive(self, name: str, rule: Any) -> str:
        if name == "char":
            rule = llama_grammar.BuiltinRule(JSON_STRING_CHAR, [])
        return str(super()._add_primitive(name, rule))


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


class GrammarBuilder:
    """Collects rules; ``schema`` adds a JSON schema's rules and returns its rule name."""

    def __init__(self) -> None:
        self._converter = _StrictConverter(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        self._schemas = 0
        self._screen = SchemaScreen()

    def schema(self, schema: dict[str, Any], name: str) -> str:
        self._schemas += 1
        try:
            screened = self._screen.screen(schema)
        except SchemaLimitError as exc:
            raise SchemaGrammarError(str(exc)) from None
        try:
            resolved = self._converter.resolve_refs(screened, f"schema-{self._schemas}")
            return str(self._converter.visit(resolved, name))
        except Exception:  # bare exceptions whose text quotes the schema: never shown
            raise SchemaGrammarError(
                "the schema uses something the grammar converter does not support (a $ref "
                "outside the schema, prefixItems, boolean sub-schemas, or a malformed keyword)"
            ) from None

    def primitive(self, name: str) -> str:
        """A built-in JSON rule (``string``, ``object``, ``value``, ...) and its dependencies."""
        return str(self._converter._add_primitive(name, llama_grammar.PRIMITIVE_RULES[name]))

    def rule(self, name: str, body: str) -> str:
        return str(self._converter._add_rule(name, body))

    def build(self, root: str) -> str:
        self.rule("root", root)
        grammar = str(self._converter.format_grammar())
        if len(grammar) > MAX_GRAMMAR_CHARS or _nesting(grammar) > MAX_GRAMMAR_NESTING:
            raise SchemaGrammarError("the schemas are too large to enforce as one grammar")
        return grammar


def json_object_grammar() -> str:
    """Any JSON object (JSON mode)."""
    builder = GrammarBuilder()
    return builder.build(builder.primitive("object"))


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """A JSON document matching ``schema``; an empty schema means any JSON object."""
    if not schema:
        return json_object_grammar()
    builder = GrammarBuilder()
    return builder.build(builder.schema(schema, "response"))
