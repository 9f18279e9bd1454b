"""The response side of the PII stage: every string of every upstream chunk or completion.

Every string gets placeholder restore (both spellings); every free-text string also gets
introduced-value redaction when the route asks for it. Protocol identifiers (``id``,
``model``, ``role``, ``finish_reason``, ...) are restored but not redacted, except the ones
inside a choice that an upstream fills in itself (a message's ``name``, a tool call's ``id``
and ``function.name``, a ``tool_call_id``): those are redacted too, into the identifier
alphabet (``__pii_EMAIL_ADDRESS__``), of every type but the NER-found ``PERSON``.
Tool-call ``arguments`` are JSON text and restored as such.

In a stream, each (choice index, field path) string is a text of its own with its own
streaming restorer, so a placeholder split across any number of chunks is restored exactly
(``delta.content``, ``delta.reasoning_content``, each tool call's arguments, any field a
provider adds). Strings outside ``choices``, and inside lists other than ``tool_calls``, are
restored whole per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.pii.introduced import IntroducedRedactor
from gateway.pii.restore import StreamRestorer, holdback_start, restore
from gateway.pii.vault import PlaceholderVault

Chunk = dict[str, Any]
# Keys whose strings are protocol identifiers, not text a model wrote for people.
IDENTIFIERS = frozenset(
    {
        "id",
        "object",
        "model",
        "created",
        "role",
        "finish_reason",
        "type",
        "index",
        "system_fingerprint",
        "name",
        "tool_call_id",
        "service_tier",
    }
)
# Identifiers inside a choice whose value an upstream writes itself: redacted as well.
WRITTEN_IDENTIFIERS = frozenset({"name", "id", "tool_call_id"})
JSON_TEXT = frozenset({"arguments"})
# A field path inside one choice: dict keys, and ("call", n) for the tool call with index n.
FieldPath = tuple[Any, ...]


class ResponseRestorer:
    """Restores (and, if asked, redacts introduced values in) whole completions."""

    def __init__(self, vault: PlaceholderVault, redactor: IntroducedRedactor | None) -> None:
        self._vault = vault
        self._redactor = redactor

    def text(self, value: str, key: Any, *, in_choice: bool = False) -> str:
        if self._redactor is not None:
            if key not in IDENTIFIERS:
                value = self._redactor.redact(value)
            elif in_choice and key in WRITTEN_IDENTIFIERS:
                value = self._redactor.redact_identifier(value)
        return restore(value, self._vault, json_escaped=key in JSON_TEXT)

    def walk(self, node: Any, key: Any = None, *, in_choice: bool = False) -> Any:
        """``node`` with every string restored; dicts and lists are changed in place."""
        if isinstance(node, str):
            return self.text(node, key, in_choice=in_choice)
        if isinstance(node, dict):
            for child_key, value in list(node.items()):
                inside = in_choice or child_key == "choices"
                node[child_key] = self.walk(value, child_key, in_choice=inside)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                node[index] = self.walk(value, key, in_choice=in_choice)
        return node


class LineRedactingRestorer:
    """A streaming restorer for routes that redact what the upstream introduced.

    Detection needs context, so text is released a line at a time (or about every
    ``MAX_LINE`` characters, cut at a space, never inside a placeholder), at the cost of
    some latency on such routes.
    """

    MAX_LINE = 400

    def __init__(self, vault: PlaceholderVault, redact: Callable[[str], str], json: bool) -> None:
        self._vault = vault
        self._redact = redact
        self._json = json
        self._held = ""

    def _release(self, text: str) -> str:
        return restore(self._redact(text), self._vault, json_escaped=self._json)

    def push(self, text: str) -> str:
        self._held += text
        cut = self._held.rfind("\n") + 1
        if cut == 0 and len(self._held) >= self.MAX_LINE:
            cut = self._held.rfind(" ", 0, len(self._held) - 60) + 1
            if cut == 0:
                cut = holdback_start(self._held, json_escaped=self._json) or len(self._held)
        if cut == 0:
            return ""
        ready, self._held = self._held[:cut], self._held[cut:]
        return self._release(ready)

    def finish(self) -> str:
        tail, self._held = self._held, ""
        return self._release(tail) if tail else ""


class _Restorer(Protocol):
    def push(self, text: str) -> str: ...

    def finish(self) -> str: ...


class StreamRestoration:
    """Per-stream state: one restorer per (choice index, field path)."""

    def __init__(self, vault: PlaceholderVault, redactor: IntroducedRedactor | None) -> None:
        self._vault = vault
        self._redactor = redactor
        self._whole = ResponseRestorer(vault, redactor)
        self._open: dict[tuple[int, FieldPath], _Restorer] = {}

    def _restorer(self, index: int, path: FieldPath) -> _Restorer:
        key = (index, path)
        if key not in self._open:
            json = path[-1] in JSON_TEXT
            self._open[key] = (
                LineRedactingRestorer(self._vault, self._redactor.redact, json)
                if self._redactor is not None
                else StreamRestorer(self._vault, json_escaped=json)
            )
        return self._open[key]

    def chunk(self, chunk: Chunk) -> Chunk:
        """Restore one chunk in place; a finishing choice also gets what was held back."""
        for key, value in list(chunk.items()):
            if key != "choices":
                chunk[key] = self._whole.walk(value, key)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else 0
            self._fields(choice, index, ())
            if choice.get("finish_reason") is not None:
                self._flush_into(choice, index)
        return chunk

    def _fields(self, node: dict[str, Any], index: int, path: FieldPath) -> None:
        for key, value in list(node.items()):
            here = (*path, key)
            if isinstance(value, str):
                if key in IDENTIFIERS:
                    node[key] = self._whole.text(value, key, in_choice=True)
                else:
                    node[key] = self._restorer(index, here).push(value)
            elif isinstance(value, dict):
                self._fields(value, index, here)
            elif isinstance(value, list):
                if key == "tool_calls":
                    for position, call in enumerate(value):
                        if isinstance(call, dict):
                            number = call.get("index", position)
                            self._fields(call, index, (*here, ("call", number)))
                        else:
                            value[position] = self._whole.walk(call, key, in_choice=True)
                else:
                    node[key] = self._whole.walk(value, key, in_choice=True)

    def open_choices(self) -> list[int]:
        return sorted({index for index, _ in self._open})

    def tails(self, index: int) -> dict[str, Any]:
        """What is still held back for choice ``index``, as a choice's fields; closes them."""
        choice: dict[str, Any] = {}
        self._flush_into(choice, index)
        return choice

    def _flush_into(self, choice: dict[str, Any], index: int) -> None:
        for key in sorted((k for k in self._open if k[0] == index), key=repr):
            tail = self._open.pop(key).finish()
            if tail:
                _append(choice, key[1], tail)


def _append(node: dict[str, Any], path: FieldPath, text: str) -> None:
    """Append ``text`` to the string at ``path`` below ``node``, creating what is missing."""
    head, rest = path[0], path[1:]
    if not rest:
        node[head] = (node.get(head) or "") + text
        return
    if isinstance(rest[0], tuple):  # the tool call with that index, inside a list
        calls = node.setdefault(head, [])
        number = rest[0][1]
        call = next((c for c in calls if isinstance(c, dict) and c.get("index") == number), None)
        if call is None:
            call = {"index": number}
            calls.append(call)
        _append(call, rest[1:], text)
        return
    child = node.get(head)
    if not isinstance(child, dict):
        child = {}
        node[head] = child
    _append(child, rest, text)
