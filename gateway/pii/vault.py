"""Placeholders and the per-request vault that maps them back to the values they hide.

A placeholder has two spellings of one vault entry:

- ``<TYPE_N>``: short, easy for a model to copy, easy to recognise in a stream; used in
  free text.
- ``__pii_TYPE_N__``: the alphabet-safe form for fields that only accept
  ``[A-Za-z0-9_-]`` (a participant ``name``, function names, tool-call ids), which a
  provider would refuse ``<`` and ``>`` in. The lower-case ``pii`` inside double
  underscores keeps it unlike ordinary identifiers such as ``MAX_RETRIES_3``.

Text the client wrote that already looks like either spelling is vaulted like any value
(as a ``LITERAL``), so the upstream only ever sees placeholders this vault issued, and every
one of them maps back to exactly what the client sent.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_TYPE = r"[A-Z][A-Z_]{0,39}"
ANGLE = re.compile(rf"<({_TYPE})_(\d{{1,6}})>")
SAFE = re.compile(rf"__pii_({_TYPE})_(\d{{1,6}})__")
# Either spelling; restore and literal detection use this one pattern.
PLACEHOLDER = re.compile(rf"<(?:{_TYPE})_\d{{1,6}}>|__pii_(?:{_TYPE})_\d{{1,6}}__")
# Longest text that can still turn out to be a placeholder of either spelling.
MAX_ANGLE_LEN = 1 + 40 + 1 + 6 + 1
MAX_SAFE_LEN = 6 + 40 + 1 + 6 + 2
MAX_PLACEHOLDER_LEN = max(MAX_ANGLE_LEN, MAX_SAFE_LEN)
# A text that could still grow into a placeholder (used to hold back a stream's tail).
PLACEHOLDER_PREFIX = re.compile(
    rf"<(?:{_TYPE}(?:\d{{1,6}})?)?"
    rf"|_(?:_(?:p(?:i(?:i(?:_(?:{_TYPE}(?:\d{{1,6}}(?:_(?:_)?)?)?)?)?)?)?)?)?"
)
LITERAL = "LITERAL"


@dataclass(frozen=True)
class VaultEntry:
    """What one placeholder stands for. ``number`` marks a JSON number from tool arguments,
    so restoring into JSON gives back the bare number literal rather than a string."""

    value: str
    number: bool = False


def safe_form(placeholder: str) -> str:
    """The alphabet-safe spelling of an angle placeholder (``<PERSON_1>``: ``__pii_PERSON_1__``)."""
    return f"__pii_{placeholder[1:-1]}__"


def angle_form(placeholder: str) -> str:
    """The angle spelling of either spelling."""
    if placeholder.startswith("<"):
        return placeholder
    return f"<{placeholder[6:-2]}>"


class PlaceholderVault:
    """Value <-> placeholder for one request. Held in memory and dropped with the request."""

    def __init__(self) -> None:
        self._placeholder_of: dict[tuple[str, bool], str] = {}
        self._entry_of: dict[str, VaultEntry] = {}
        self._per_type: Counter[str] = Counter()

    def placeholder_for(self, entity_type: str, value: str, *, number: bool = False) -> str:
        """The angle placeholder for ``value``; the same value always gets the same one."""
        existing = self._placeholder_of.get((value, number))
        if existing is not None:
            return existing
        label = re.sub(r"[^A-Z_]", "_", entity_type.upper()) or "PII"
        self._per_type[label] += 1
        placeholder = f"<{label}_{self._per_type[label]}>"
        self._placeholder_of[(value, number)] = placeholder
        self._entry_of[placeholder] = VaultEntry(value, number)
        return placeholder

    def entry_of(self, placeholder: str) -> VaultEntry | None:
        """The entry behind either spelling of a placeholder this vault issued."""
        return self._entry_of.get(angle_form(placeholder))

    def value_of(self, placeholder: str) -> str | None:
        entry = self.entry_of(placeholder)
        return entry.value if entry else None

    def __len__(self) -> int:
        return len(self._entry_of)

    def counts(self) -> dict[str, int]:
        """Distinct values per type (never the values); literals are not PII and not counted."""
        return {t: n for t, n in sorted(self._per_type.items()) if t != LITERAL}
