"""Redact personal data the upstream introduced, on routes that ask for it.

Two things this must never do: touch a placeholder (a finding overlapping ``<PERSON_1>``
would corrupt it into ``<<PERSON>``), and redact the client's own words (a value that
occurs in the client's request, which the detector only flagged in the answer's context).
So detection runs only on the text between placeholders, and a finding whose text occurs
in the request's original strings as a whole value (case-insensitively, with no letter or
digit right before or after it) is left alone: ``ann@x.io`` the upstream wrote is not the
client's own because the client wrote ``joann@x.io``.

Identifier fields (a ``name``, a tool call's ``id`` or ``function.name``) only accept
``[A-Za-z0-9_-]``; ``redact_identifier`` redacts into that alphabet
(``__pii_EMAIL_ADDRESS__``). It leaves out ``PERSON``: that type is found by the NER model,
which takes about one random tool call id in twenty (``call_sbpbW11yAzm60YDJEY8f0k4Z``) for
a name, and a redacted id would break the client's tool-call round trip.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from gateway.pii.detector import DetectionError, PIIDetector
from gateway.pii.entities import PERSON
from gateway.pii.vault import PLACEHOLDER

log = logging.getLogger("gateway.pii")

WITHHELD = "[response withheld: PII check failed]"
WITHHELD_IDENTIFIER = "__pii_WITHHELD__"
# Types not redacted in identifier fields (see above).
NOT_IN_IDENTIFIERS = frozenset({PERSON})
# A type label as ``redact`` writes it; placeholders (``<PERSON_1>``) have digits, never this.
_LABEL = re.compile(r"<([A-Z][A-Z_]{0,39})>")


def identifier_form(redacted: str) -> str:
    """``redacted`` (what ``redact`` gave for an identifier) in the identifier alphabet."""
    if redacted == WITHHELD:
        return WITHHELD_IDENTIFIER
    return _LABEL.sub(r"__pii_\1__", redacted)


class IntroducedRedactor:
    """Replaces introduced values of ``entities`` with their type label, ``<EMAIL_ADDRESS>``."""

    def __init__(
        self,
        detector: PIIDetector,
        entities: frozenset[str],
        client_strings: Iterable[str],
        *,
        scope: str = "",
    ) -> None:
        self._detector = detector
        self._scope = scope  # the detection cache's partition: the request's API key
        self._entities = entities
        # The client's own text, for this request only; NUL never occurs inside a finding.
        self._client = "\x00".join(s.casefold() for s in client_strings)
        self._own: dict[str, bool] = {}

    def redact_identifier(self, text: str) -> str:
        """``redact`` for an identifier field, in the identifier alphabet."""
        return identifier_form(self.redact(text, self._entities - NOT_IN_IDENTIFIERS))

    def redact(self, text: str, entities: frozenset[str] | None = None) -> str:
        if not text:
            return text
        wanted = self._entities if entities is None else entities
        out: list[str] = []
        cursor = 0
        try:
            for match in PLACEHOLDER.finditer(text):
                out.append(self._redact_segment(text[cursor : match.start()], wanted))
                out.append(match.group(0))
                cursor = match.end()
            out.append(self._redact_segment(text[cursor:], wanted))
        except DetectionError:
            log.error("PII check of the upstream's answer failed; the text was withheld")
            return WITHHELD
        return "".join(out)

    def _redact_segment(self, segment: str, entities: frozenset[str]) -> str:
        if not segment.strip():
            return segment
        found = [
            f
            for f in self._detector.detect(segment, scope=self._scope)
            if f.entity_type in entities
        ]
        out: list[str] = []
        cursor = 0
        for finding in sorted(found, key=lambda f: (f.start, -f.end)):
            start = max(finding.start, cursor)  # overlapping spans: the earlier one covers
            if finding.end <= start:
                continue
            value = segment[start : finding.end]
            if self._is_clients(value):
                continue  # the client's own words: not introduced
            out.append(segment[cursor:start])
            out.append(f"<{finding.entity_type}>")
            cursor = finding.end
        out.append(segment[cursor:])
        return "".join(out)

    def _is_clients(self, value: str) -> bool:
        """Whether ``value`` occurs whole in the client's strings (not inside a longer one)."""
        needle = value.casefold()
        if needle in self._own:
            return self._own[needle]
        found = False
        if needle.strip():
            haystack = self._client
            at = haystack.find(needle)
            while at >= 0 and not found:
                end = at + len(needle)
                found = not (at > 0 and haystack[at - 1].isalnum()) and not (
                    end < len(haystack) and haystack[end].isalnum()
                )
                at = haystack.find(needle, at + 1)
        self._own[needle] = found
        return found
