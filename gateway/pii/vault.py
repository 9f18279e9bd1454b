"""Placeholders and the per-request vault that maps them back to the values they hide.

A placeholder is ``<TYPE_N>``: short, easy for a model to copy, and easy to recognise in a
stream. Text the user wrote that already looks like one is vaulted like any value (as
``<LITERAL_N>``), so the upstream only ever sees placeholders this vault issued and every
one of them maps back to exactly what the client sent.
"""

from __future__ import annotations

import re
from collections import Counter

PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]{0,39})_(\d{1,6})>")
# Longest text that can still turn out to be a placeholder: '<' + type + '_' + digits + '>'.
MAX_PLACEHOLDER_LEN = 1 + 40 + 1 + 6 + 1
PLACEHOLDER_PREFIX = re.compile(r"<(?:[A-Z][A-Z_]{0,39}(?:\d{1,6})?)?")
LITERAL = "LITERAL"


class PlaceholderVault:
    """Value <-> placeholder for one request. Held in memory and dropped with the request."""

    def __init__(self) -> None:
        self._placeholder_of: dict[str, str] = {}
        self._value_of: dict[str, str] = {}
        self._per_type: Counter[str] = Counter()

    def placeholder_for(self, entity_type: str, value: str) -> str:
        existing = self._placeholder_of.get(value)
        if existing is not None:
            return existing
        label = re.sub(r"[^A-Z_]", "_", entity_type.upper()) or "PII"
        self._per_type[label] += 1
        placeholder = f"<{label}_{self._per_type[label]}>"
        self._placeholder_of[value] = placeholder
        self._value_of[placeholder] = value
        return placeholder

    def value_of(self, placeholder: str) -> str | None:
        return self._value_of.get(placeholder)

    def __len__(self) -> int:
        return len(self._value_of)

    def counts(self) -> dict[str, int]:
        """Distinct values per type (never the values); literals are not PII and not counted."""
        return {t: n for t, n in sorted(self._per_type.items()) if t != LITERAL}
