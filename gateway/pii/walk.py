"""Every string of a chat request the upstream will receive, found by protocol position.

"Every string" means every string: values at any depth, object keys inside user JSON (tool
parameter schemas, ``response_format`` schemas, tool-call arguments, ``logit_bias``), the
numbers in that JSON, and the text of tool-call arguments. Exempt are only the wire
protocol's own identifiers, by position, never by key name: a ``"type"`` inside a user's
schema is scanned like any other string.

The walk yields ``Leaf`` objects; the stage decides what each becomes and calls
``Leaf.put``. ``RequestWalk.finish`` then writes renamed keys and re-serialises the
tool-call arguments that changed (arguments nobody touched stay byte-identical).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
_ANY = "*"

# The protocol's own identifiers: validated enums and the model the router rewrites.
EXEMPT: frozenset[Path] = frozenset(
    {
        ("model",),
        ("messages", _ANY, "role"),
        ("messages", _ANY, "content", _ANY, "type"),
        ("messages", _ANY, "tool_calls", _ANY, "type"),
        ("tools", _ANY, "type"),
        ("tool_choice",),
        ("tool_choice", "type"),
        ("response_format", "type"),
    }
)
# Fields providers restrict to ^[A-Za-z0-9_-]{1,64}$: a placeholder there takes the safe form.
RESTRICTED: frozenset[Path] = frozenset(
    {
        ("messages", _ANY, "name"),
        ("messages", _ANY, "tool_call_id"),
        ("messages", _ANY, "tool_calls", _ANY, "id"),
        ("messages", _ANY, "tool_calls", _ANY, "function", "name"),
        ("tools", _ANY, "function", "name"),
        ("tool_choice", "function", "name"),
        ("response_format", "json_schema", "name"),
    }
)
# Identifiers the detector gets no field context for (a function called "lookup" is no name).
NO_CONTEXT: frozenset[Path] = RESTRICTED - {("messages", _ANY, "name")}
# Objects whose keys the client chose: below these, keys are scanned and numbers too.
USER_JSON: frozenset[Path] = frozenset(
    {
        ("tools", _ANY, "function", "parameters"),
        ("response_format", "json_schema", "schema"),
        ("tool_choice", "function"),
        ("logit_bias",),
    }
)
ARGUMENTS: Path = ("messages", _ANY, "tool_calls", _ANY, "function", "arguments")
# Schema keywords whose values are examples of the property they sit in: the property's
# name is their context ("dob": {"examples": ["1987-09-25"]}).
SCHEMA_VALUES = frozenset({"examples", "example", "default", "enum", "const"})


@dataclass
class Leaf:
    """One scannable piece: a string value, an object key, a number, or arguments text.

    ``field`` is the detector's context (the key it sits under); ``restricted`` says the
    field accepts only ``[A-Za-z0-9_-]``; ``number`` marks a JSON number (``text`` is its
    JSON literal) whose replacement becomes a JSON string.
    """

    text: str
    field: str | None
    put: Callable[[Any], None]
    restricted: bool = False
    number: bool = False
    key: bool = False


@dataclass
class _Arguments:
    """Tool-call arguments parsed as JSON, re-serialised only if a leaf inside changed."""

    container: dict[str, Any]
    holder: list[Any]
    changed: bool = False


@dataclass
class RequestWalk:
    """The leaves of one request body, and what must happen after they were replaced."""

    body: dict[str, Any]
    leaves: list[Leaf] = field(default_factory=list)
    _renames: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _arguments: list[_Arguments] = field(default_factory=list)

    @classmethod
    def of(cls, body: dict[str, Any]) -> RequestWalk:
        walk = cls(body)
        walk._visit(body, (), None, user_json=False, on_change=None)
        return walk

    def finish(self) -> None:
        """Apply key renames (keeping order) and re-serialise changed arguments."""
        for mapping, renames in self._renames:
            if renames:
                items = list(mapping.items())
                mapping.clear()
                for key, value in items:
                    mapping[renames.get(key, key)] = value
        for arguments in self._arguments:
            if arguments.changed:
                arguments.container["arguments"] = json.dumps(
                    arguments.holder[0], ensure_ascii=False
                )

    # -- the walk --------------------------------------------------------------------------
    def _visit(
        self,
        node: Any,
        path: Path,
        enclosing: str | None,
        *,
        user_json: bool,
        on_change: Callable[[], None] | None,
    ) -> None:
        if isinstance(node, dict):
            renames: dict[str, str] = {}
            if user_json:
                self._renames.append((node, renames))
            for key, value in node.items():
                child = (*path, key)
                inside = user_json or child in USER_JSON
                if user_json:
                    self.leaves.append(Leaf(key, None, _renamer(renames, key, on_change), key=True))
                # A schema's "required" lists property names: scanned as the keys they name.
                context = None if user_json and key == "required" else key
                if user_json and key in SCHEMA_VALUES:
                    context = enclosing
                self._slot(node, key, value, child, context, user_json=inside, on_change=on_change)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                self._slot(
                    node,
                    index,
                    value,
                    (*path, _ANY),
                    enclosing,
                    user_json=user_json,
                    on_change=on_change,
                )

    def _slot(
        self,
        container: Any,
        key: Any,
        value: Any,
        path: Path,
        enclosing: str | None,
        *,
        user_json: bool,
        on_change: Callable[[], None] | None,
    ) -> None:
        if isinstance(value, str):
            if path in EXEMPT:
                return
            if not user_json and path == ARGUMENTS:
                self._arguments_text(container, value, path)
                return
            restricted = path in RESTRICTED
            context = None if path in NO_CONTEXT else enclosing
            self.leaves.append(
                Leaf(value, context, _setter(container, key, on_change), restricted=restricted)
            )
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int | float):
            if user_json:
                self.leaves.append(
                    Leaf(
                        json.dumps(value),
                        enclosing,
                        _setter(container, key, on_change),
                        number=True,
                    )
                )
        else:
            self._visit(value, path, enclosing, user_json=user_json, on_change=on_change)

    def _arguments_text(self, container: dict[str, Any], text: str, path: Path) -> None:
        try:
            document = json.loads(text, object_pairs_hook=_unique_keys)
        except ValueError:
            # Not JSON, or JSON with a key twice (a parser keeps one value, the model reads
            # both): scanned as text (with its escapes decoded, by the stage).
            self.leaves.append(Leaf(text, "arguments", _setter(container, "arguments", None)))
            return
        parsed = _Arguments(container, [document])
        self._arguments.append(parsed)

        def changed() -> None:
            parsed.changed = True

        self._slot(parsed.holder, 0, document, path, "arguments", user_json=True, on_change=changed)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _setter(
    container: Any, key: Any, on_change: Callable[[], None] | None
) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        if container[key] != value:
            container[key] = value
            if on_change is not None:
                on_change()

    return put


def _renamer(
    renames: dict[str, str], key: str, on_change: Callable[[], None] | None
) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        if value != key:
            renames[key] = str(value)
            if on_change is not None:
                on_change()

    return put


def iter_strings(node: Any) -> Iterator[str]:
    """Every string in a JSON document, keys included (the client's own words)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from iter_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_strings(value)
