"""A value found once is found everywhere in the request.

Detection judges each string alone, and context differs: "Dr. Seo Minjun" is a name, the
later "Minjun will get the welcome email" has nothing that says so; an MRN under ``"mrn"``
in a tool result is obvious, the same digits in "Found X (B3730603)" are not. So after every
string of a request is scanned, each found value (and each distinctive word of a found name)
is looked for in all of them, and every occurrence becomes a finding of the same type. This
also keeps one value behind one placeholder, as the vault promises.
"""

from __future__ import annotations

import re

from gateway.pii.entities import PERSON
from gateway.pii.findings import Finding, merge
from gateway.pii.recognizers.names import name_tokens

MIN_VALUE_CHARS = 4


def _occurrences(text: str, lowered: str, value: str) -> list[tuple[int, int]]:
    """Where ``value`` (lowercased) stands in ``text`` as a whole word, case-insensitively."""
    spans = []
    start = lowered.find(value)
    while start >= 0:
        end = start + len(value)
        before_ok = not value[0].isalnum() or start == 0 or not text[start - 1].isalnum()
        after_ok = not value[-1].isalnum() or end == len(text) or not text[end].isalnum()
        if before_ok and after_ok:
            spans.append((start, end))
        start = lowered.find(value, start + 1)
    return spans


def propagate(texts: list[str], findings: list[list[Finding]]) -> list[list[Finding]]:
    """``findings`` (per text) plus every other occurrence of what they found."""
    kinds: dict[str, str] = {}
    for text, found in zip(texts, findings, strict=True):
        for f in found:
            value = text[f.start : f.end]
            if len(value.strip()) >= MIN_VALUE_CHARS:
                kinds.setdefault(value.lower(), f.entity_type)
            if f.entity_type == PERSON:
                for word in name_tokens(value):
                    kinds.setdefault(word.lower(), PERSON)
    if not kinds:
        return findings
    out: list[list[Finding]] = []
    for text, found in zip(texts, findings, strict=True):
        lowered = text.lower()
        if len(lowered) != len(text):  # a few letters change length when lowered
            extra = [
                Finding(m.start(), m.end(), kind, 0.7)
                for value, kind in kinds.items()
                for m in re.finditer(re.escape(value), text, re.IGNORECASE)
            ]
            out.append(merge([*found, *extra]) if extra else found)
            continue
        extra = [
            Finding(start, end, kind, 0.7)
            for value, kind in kinds.items()
            if value in lowered
            for start, end in _occurrences(text, lowered, value)
        ]
        out.append(merge([*found, *extra]) if extra else found)
    return out
