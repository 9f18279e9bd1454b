"""Dates of birth: a date in any of the formats people write, after words that say "born".

Other dates (appointments, timestamps, release dates) are not personal data on their own and
stay untouched: masking every ISO timestamp rewrites half of a DevOps conversation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import DATE_OF_BIRTH
from gateway.pii.findings import Finding

MONTHS = (
    # English, French, German, Spanish, Italian, Dutch, Portuguese; full and abbreviated.
    r"(?:jan(?:uary|vier|uar|uari|eiro|\.)?|jänner|feb(?:ruary|ruar|ruari|\.)?|févr(?:ier|\.)?|"
    r"fevr(?:ier)?|fevereiro|febbraio|febrero|mar(?:ch|s|zo|ço|co|\.)?|märz|maerz|maart|apr(?:il|ile|\.)?|"
    r"avril|abril|may|mai|mei|mayo|maio|maggio|june?|juin|juni|junio|junho|giugno|july?|"
    r"juillet|juli|julio|julho|luglio|aug(?:ust|ustus|\.)?|août|aout|agosto|sep(?:t(?:ember|\.)?)?|"
    r"septembre|septiembre|setiembre|setembro|settembre|oct(?:ober|obre|\.)?|okt(?:ober|\.)?|"
    r"octubre|outubro|ottobre|nov(?:ember|embre|iembre|embro|\.)?|dec(?:ember|\.)?|déc(?:embre|\.)?|"
    r"dez(?:ember|embro|\.)?|diciembre|dicembre|enero|gennaio)"
)
_DAY = r"(?:[0-3]?\d|1er|1re)(?:st|nd|rd|th|er|º|°|\.)?"
DATE = re.compile(
    rf"(?i)(?<![\w/.\-])(?:"
    rf"{_DAY}\s*(?:de\s+|of\s+|-\s*)?{MONTHS}\.?,?\s*(?:de\s+|-\s*)?(?:1[89]|20)\d\d"
    rf"|{MONTHS}\.?\s+{_DAY},?\s+(?:1[89]|20)\d\d"
    rf"|{MONTHS}\.?,?\s+(?:of\s+)?(?:1[89]|20)\d\d"
    r"|[0-3]?\d\s?[./\-]\s?[0-3]?\d\s?[./\-]\s?(?:(?:1[89]|20)\d\d|\d\d)"
    r"|(?:1[89]|20)\d\d[./\-][01]?\d[./\-][0-3]?\d"
    r")(?![\w/\-]|\.\d)"
)
_BIRTH_CUE = re.compile(
    r"(?i)(?:\b(?:dob|d\.o\.b|date\s+of\s+birth|birth\s*date|birthdate|birthday|bday|born|"
    r"n[ée]e?|n[ée]\(e\)|date\s+de\s+naissance|naissance|geboren|geb|geburtsdatum|"
    r"geburtstag|fecha\s+de\s+nacimiento|f\.\s?nac|nacid[oa]|nacimiento|cumpleaños|"
    r"data\s+di\s+nascita|nat[oa]|nascita|geboortedatum|data\s+de\s+nascimento|nascid[oa]|"
    r"nascimento|aniversário)\b)[^\n]{0,28}$"
)


class BirthDateRecognizer:
    entity_types = frozenset({DATE_OF_BIRTH})

    def find(self, text: str) -> Iterator[Finding]:
        for match in DATE.finditer(text):
            before = text[max(0, match.start() - 48) : match.start()]
            if _BIRTH_CUE.search(before):
                yield Finding(match.start(), match.end(), DATE_OF_BIRTH, 0.85)
