"""Put the vault's values back into what the upstream answered: whole texts, or streams.

Both placeholder spellings are restored wherever they come back. Inside tool-call arguments
the text is JSON: a value goes back JSON-escaped, and a placeholder that stood for a JSON
number and comes back as a whole JSON string (``"<US_SSN_1>"``) goes back as the bare
number literal, so the client gets exactly the arguments it would have got.
"""

from __future__ import annotations

import json
import re

from gateway.pii.vault import (
    MAX_PLACEHOLDER_LEN,
    PLACEHOLDER,
    PLACEHOLDER_PREFIX,
    PlaceholderVault,
)

# A placeholder with the JSON quotes around it, when they are there (not escaped ones).
_QUOTED = re.compile(rf'(?<!\\)(")?({PLACEHOLDER.pattern})(")?')
# The most a stream restorer ever holds back: a placeholder and, in JSON, its two quotes.
MAX_HOLDBACK = MAX_PLACEHOLDER_LEN + 2


def restore(text: str, vault: PlaceholderVault, *, json_escaped: bool = False) -> str:
    if not len(vault) or ("<" not in text and "__pii_" not in text):
        return text
    if json_escaped:
        return _QUOTED.sub(lambda m: _json_value(m, vault), text)

    def value(match: re.Match[str]) -> str:
        found = vault.value_of(match.group(0))
        return match.group(0) if found is None else found

    return PLACEHOLDER.sub(value, text)


def _json_value(match: re.Match[str], vault: PlaceholderVault) -> str:
    opening, placeholder, closing = match.group(1) or "", match.group(2), match.group(3) or ""
    entry = vault.entry_of(placeholder)
    if entry is None:
        return match.group(0)
    if entry.number and opening and closing:
        return entry.value
    return opening + json.dumps(entry.value, ensure_ascii=False)[1:-1] + closing


def holdback_start(text: str, *, json_escaped: bool) -> int:
    """Index from which ``text`` could still become (part of) a placeholder, else ``len``."""
    floor = max(0, len(text) - MAX_HOLDBACK)
    complete = list(PLACEHOLDER.finditer(text, floor))
    start = len(text)
    for index in range(floor, len(text)):
        if (
            text[index] in "<_"
            # Inside a complete placeholder is no start: "__pii_X_1___" ends a placeholder.
            and not any(m.start() < index < m.end() for m in complete)
            and PLACEHOLDER_PREFIX.fullmatch(text, index)
        ):
            start = index
            break
    if json_escaped:
        ends = {m.end(): m.start() for m in complete}
        if len(text) in ends:  # a complete placeholder may still get its closing quote
            start = min(start, ends[len(text)])
        elif start == len(text) and text.endswith('"') and len(text) - 1 not in ends:
            return len(text) - 1  # may be the opening quote of a placeholder
        if 0 < start < len(text) and text[start - 1] == '"':
            start -= 1
    return start


class StreamRestorer:
    """Restores one text field across stream chunks, however the chunks split placeholders.

    It holds back only a tail that could still grow into a placeholder (at most
    ``MAX_HOLDBACK`` characters) and releases it at ``finish``.
    """

    def __init__(self, vault: PlaceholderVault, *, json_escaped: bool = False) -> None:
        self._vault = vault
        self._json_escaped = json_escaped
        self._held = ""

    def push(self, text: str) -> str:
        buffer = self._held + text
        cut = holdback_start(buffer, json_escaped=self._json_escaped)
        self._held = buffer[cut:]
        return restore(buffer[:cut], self._vault, json_escaped=self._json_escaped)

    def finish(self) -> str:
        tail, self._held = self._held, ""
        return restore(tail, self._vault, json_escaped=self._json_escaped)

    @property
    def holding(self) -> bool:
        return bool(self._held)
