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

JSON_STRING_CHAR = (
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


class SchemaGrammarError(ValueError):
    """A JSON schema could not be turned into a grammar (message safe for the client)."""


# A grammar spells a counted repetition out rule by rule: bounds past this cost memory and
# time on the engine for every request that sends them, and llama.cpp refuses far less.
MAX_REPETITION = 1000
MAX_GRAMMAR_CHARS = 1 << 20
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


def _check_bounds(schema: Any) -> None:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, int) and value > MAX_REPETITION:
                    raise SchemaGrammarError(
                        f"'{key}' above {MAX_REPETITION} cannot be enforced by a grammar"
                    )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


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

    def schema(self, schema: dict[str, Any], name: str) -> str:
        self._schemas += 1
        _check_bounds(schema)
        try:
            resolved = self._converter.resolve_refs(schema, f"schema-{self._schemas}")
            return str(self._converter.visit(resolved, name))
        except Exception as exc:  # the converter raises bare exceptions on what it lacks
            raise SchemaGrammarError(f"the schema cannot be turned into a grammar: {exc}") from None

    def primitive(self, name: str) -> str:
        """A built-in JSON rule (``string``, ``object``, ``value``, ...) and its dependencies."""
        return str(self._converter._add_primitive(name, llama_grammar.PRIMITIVE_RULES[name]))

    def rule(self, name: str, body: str) -> str:
        return str(self._converter._add_rule(name, body))

    def build(self, root: str) -> str:
        self.rule("root", root)
        grammar = str(self._converter.format_grammar())
        if len(grammar) > MAX_GRAMMAR_CHARS:
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
