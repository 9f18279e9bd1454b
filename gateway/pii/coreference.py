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


def _alternative(value: str) -> str:
    escaped = re.escape(value)
    before = r"(?<![^\W_])" if value[0].isalnum() else ""
    after = r"(?![^\W_])" if value[-1].isalnum() else ""
    return before + escaped + after


def propagate(texts: list[str], findings: list[list[Finding]]) -> list[list[Finding]]:
    """``findings`` (per text) plus every other occurrence of what they found."""
    kinds: dict[str, str] = {}
    for text, found in zip(texts, findings, strict=True):
        for f in found:
            value = text[f.start : f.end]
            if len(value.strip()) >= MIN_VALUE_CHARS:
                kinds.setdefault(value.casefold(), f.entity_type)
            if f.entity_type == PERSON:
                for word in name_tokens(value):
                    kinds.setdefault(word.casefold(), PERSON)
    if not kinds:
        return findings
    pattern = re.compile(
        "|".join(_alternative(v) for v in sorted(kinds, key=len, reverse=True)), re.IGNORECASE
    )
    out: list[list[Finding]] = []
    for text, found in zip(texts, findings, strict=True):
        extra = [
            Finding(m.start(), m.end(), kinds[m.group(0).casefold()], 0.7)
            for m in pattern.finditer(text)
            if m.group(0).casefold() in kinds
        ]
        out.append(merge([*found, *extra]) if extra else found)
    return out
