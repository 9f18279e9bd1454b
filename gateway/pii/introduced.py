"""Redact personal data the upstream introduced, on routes that ask for it.

Two things this must never do: touch a placeholder (a finding overlapping ``<PERSON_1>``
would corrupt it into ``<<PERSON>``), and redact the client's own words (a value that
occurs in the client's request, which the detector only flagged in the answer's context).
So detection runs only on the text between placeholders, and a finding whose text occurs
(case-insensitively) in the request's original strings is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.pii.detector import DetectionError, PIIDetector
from gateway.pii.vault import PLACEHOLDER

log = logging.getLogger("gateway.pii")

WITHHELD = "[response withheld: PII check failed]"


class IntroducedRedactor:
    """Replaces introduced values of ``entities`` with their type label, ``<EMAIL_ADDRESS>``."""

    def __init__(
        self, detector: PIIDetector, entities: frozenset[str], client_strings: Iterable[str]
    ) -> None:
        self._detector = detector
        self._entities = entities
        # The client's own text, for this request only; NUL never occurs inside a finding.
        self._client = "\x00".join(s.casefold() for s in client_strings)

    def redact(self, text: str) -> str:
        if not text:
            return text
        out: list[str] = []
        cursor = 0
        try:
            for match in PLACEHOLDER.finditer(text):
                out.append(self._redact_segment(text[cursor : match.start()]))
                out.append(match.group(0))
                cursor = match.end()
            out.append(self._redact_segment(text[cursor:]))
        except DetectionError:
            log.error("PII check of the upstream's answer failed; the text was withheld")
            return WITHHELD
        return "".join(out)

    def _redact_segment(self, segment: str) -> str:
        if not segment.strip():
            return segment
        found = [f for f in self._detector.detect(segment) if f.entity_type in self._entities]
        out: list[str] = []
        cursor = 0
        for finding in sorted(found, key=lambda f: (f.start, -f.end)):
            start = max(finding.start, cursor)  # overlapping spans: the earlier one covers
            if finding.end <= start:
                continue
            value = segment[start : finding.end]
            if value.casefold() in self._client:
                continue  # the client's own words: not introduced
            out.append(segment[cursor:start])
            out.append(f"<{finding.entity_type}>")
            cursor = finding.end
        out.append(segment[cursor:])
        return "".join(out)
