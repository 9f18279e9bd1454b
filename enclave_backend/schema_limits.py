"""What a client's JSON schema may ask of a grammar, checked before any grammar is built.

A grammar spells counted repetitions out rule by rule and alternatives out one by one, and
llama.cpp checks every candidate token against it on the decode thread every slot shares:
a schema can make one request crash the engine (a ``{0,40000}`` in a ``pattern`` nests past
llama.cpp's recursive parser) or slow every other sequence (8,000 ``enum`` values cost
seconds per token). ``screen`` refuses such schemas with a message that names the keyword
and never quotes the schema, and rewrites ``pattern`` escapes (``\\d``, ``\\.``) into the
character classes the grammar converter understands.
"""

from __future__ import annotations

import re
from typing import Any

MAX_REPETITION = 1000  # maxLength, maxItems, ... (a schema's own bounds)
MAX_PATTERN_REPETITION = 100  # {m,n} inside a pattern
MAX_PATTERN_CHARS = 512
MAX_ALTERNATIVES = 512  # enum values and anyOf/oneOf members, over a request's schemas
MAX_DEPTH = 32
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_DATA = frozenset({"enum", "const", "default", "examples"})
_NAMED_SCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_COUNTED = re.compile(r"(?<!\\)\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_OUTSIDE_CLASS = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[A-Za-z0-9_]",
    "W": "[^A-Za-z0-9_]",
    "s": "[ \\t\\n\\r]",
    "S": "[^ \\t\\n\\r]",
}
_INSIDE_CLASS = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t\\n\\r"}


class SchemaLimitError(ValueError):
    """The schema asks more than a grammar may (the message is safe to show the client)."""


class _Budget:
    def __init__(self) -> None:
        self.alternatives = 0

    def spend(self, count: int) -> None:
        self.alternatives += count
        if self.alternatives > MAX_ALTERNATIVES:
            raise SchemaLimitError(
                f"more than {MAX_ALTERNATIVES} enum values and anyOf/oneOf alternatives in "
                "all schemas together cannot be enforced"
            )


class SchemaScreen:
    """Screens every schema of one request against one shared alternatives budget."""

    def __init__(self) -> None:
        self._budget = _Budget()

    def screen(self, schema: Any) -> Any:
        return self._node(schema, 0)

    def _node(self, node: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SchemaLimitError(f"schemas nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            return [self._node(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        for key in _BOUNDS:
            if key in node:
                _check_bound(key, node[key])
        for key in ("enum", "anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                self._budget.spend(len(node[key]))
        screened: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DATA:
                screened[key] = value  # values, not schemas: nothing in them is a keyword
            elif key in _NAMED_SCHEMAS and isinstance(value, dict):
                # Property names are the client's words: a property may be called "pattern".
                screened[key] = {name: self._node(sub, depth + 1) for name, sub in value.items()}
            else:
                screened[key] = self._node(value, depth + 1)
        if "pattern" in node:
            screened["pattern"] = _pattern(node["pattern"])
        return screened


def _check_bound(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SchemaLimitError(f"'{key}' must be a non-negative integer")
    if value > MAX_REPETITION:
        raise SchemaLimitError(f"'{key}' above {MAX_REPETITION} cannot be enforced")


def _pattern(pattern: Any) -> str:
    if not isinstance(pattern, str):
        raise SchemaLimitError("'pattern' must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaLimitError(f"a 'pattern' longer than {MAX_PATTERN_CHARS} characters")
    for match in _COUNTED.finditer(pattern):
        if any(int(n) > MAX_PATTERN_REPETITION for n in match.groups() if n):
            raise SchemaLimitError(
                f"a counted repetition above {MAX_PATTERN_REPETITION} in a 'pattern'"
            )
    return _class_escapes(pattern)


def _class_escapes(pattern: str) -> str:
    """``\\d`` and friends, and escaped punctuation, as character classes."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            i += 2
            if in_class:
                out.append(
                    _INSIDE_CLASS.get(
                        escaped, escaped if escaped in ".$()|*+?{}/" else "\\" + escaped
                    )
                )
            elif escaped in _OUTSIDE_CLASS:
                out.append(_OUTSIDE_CLASS[escaped])
            elif not escaped.isalnum() and escaped not in "]\\^-":
                out.append(f"[{escaped}]")
            else:
                out.append("\\" + escaped)
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)
