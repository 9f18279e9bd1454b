"""Put the vault's values back into what the upstream answered: whole texts, or streams.

Inside tool-call arguments the text is JSON, so a value goes back JSON-escaped.
"""

from __future__ import annotations

import json

from gateway.pii.vault import MAX_PLACEHOLDER_LEN, PLACEHOLDER, PLACEHOLDER_PREFIX, PlaceholderVault


def restore(text: str, vault: PlaceholderVault, *, json_escaped: bool = False) -> str:
    if "<" not in text or not len(vault):
        return text

    def value(match: object) -> str:
        assert hasattr(match, "group")
        found = vault.value_of(match.group(0))
        if found is None:
            return str(match.group(0))
        return json.dumps(found, ensure_ascii=False)[1:-1] if json_escaped else found

    return PLACEHOLDER.sub(value, text)


def _holdback_start(text: str) -> int:
    """Index from which ``text`` could still become a placeholder, else ``len(text)``."""
    start = text.rfind("<", max(0, len(text) - MAX_PLACEHOLDER_LEN))
    if start >= 0 and PLACEHOLDER_PREFIX.fullmatch(text, start):
        return start
    return len(text)


class StreamRestorer:
    """Restores one text field across stream chunks, however the chunks split placeholders.

    It holds back only a tail that could still grow into a placeholder (at most
    ``MAX_PLACEHOLDER_LEN`` characters) and releases it at ``finish``.
    """

    def __init__(self, vault: PlaceholderVault, *, json_escaped: bool = False) -> None:
        self._vault = vault
        self._json_escaped = json_escaped
        self._held = ""

    def push(self, text: str) -> str:
        buffer = self._held + text
        cut = _holdback_start(buffer)
        self._held = buffer[cut:]
        return restore(buffer[:cut], self._vault, json_escaped=self._json_escaped)

    def finish(self) -> str:
        tail, self._held = self._held, ""
        return restore(tail, self._vault, json_escaped=self._json_escaped)

    @property
    def holding(self) -> bool:
        return bool(self._held)
