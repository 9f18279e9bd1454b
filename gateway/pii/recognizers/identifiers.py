"""Government and medical identifiers: SSNs, passports, medical record numbers.

SSNs are found by shape (3-2-4 groups, also read out digit by digit) and as nine plain
digits unless the words before them say order, routing, invoice or the like. Passports and
medical record numbers have no shape of their own, so they are found after their labels, in
the spellings and languages people use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import MEDICAL_RECORD_NUMBER, PASSPORT, US_SSN
from gateway.pii.findings import Finding
from gateway.pii.recognizers.base import NOT_PERSONAL_NUMBER, window_before
from gateway.pii.recognizers.checksums import ssn_plausible

# An underscore is a separator here: "ssn_123-45-6789", "call_412859031".
_SSN_GROUPED = re.compile(r"(?<![^\W_]|[\-./])\d{3}([ \-.\u00a0_/])\d{2}\1\d{4}(?![^\W_]|-|[.,]\d)")
_NINE = re.compile(r"(?<![^\W_]|[\-./,+])\d{9}(?![^\W_]|-|[.,]\d)")
# Digits read out one to four at a time: "4 1 2, 8 5, 9 0 3 1", "412 85 9031".
_SPOKEN = re.compile(r"(?<![\w\-./+])\d{1,4}(?:[\s,.\-…]{1,5}\d{1,4}){2,8}(?![\w\-]|[.,]\d)")
_SSN_CUE = re.compile(
    r"(?i)\b(?:ssn|ss#|social\s+security(?:\s+(?:number|no|#))?|tax\s*(?:payer\s*)?id(?:entification)?"
    r"(?:\s+number)?|tin|itin|sozialversicherungsnummer|numéro de sécurité sociale)\b[^\n]{0,24}$"
)


class SsnRecognizer:
    entity_types = frozenset({US_SSN})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _SSN_GROUPED.finditer(text):
            yield Finding(match.start(), match.end(), US_SSN, 0.85)
        for match in _NINE.finditer(text):
            before = window_before(text, match.start())
            if _SSN_CUE.search(before):
                yield Finding(match.start(), match.end(), US_SSN, 0.9)
            elif ssn_plausible(match.group(0)) and not NOT_PERSONAL_NUMBER.search(before):
                yield Finding(match.start(), match.end(), US_SSN, 0.65)
        for match in _SPOKEN.finditer(text):
            digits = re.sub(r"\D", "", match.group(0))
            if len(digits) != 9:
                continue
            before = window_before(text, match.start())
            if _SSN_CUE.search(before) or (
                ssn_plausible(digits) and not NOT_PERSONAL_NUMBER.search(before)
            ):
                yield Finding(match.start(), match.end(), US_SSN, 0.65)


_PASSPORT_LABEL = re.compile(
    r"(?i)\b(?:passport|passports|passeport|reisepass|reisepassnummer|passnummer|pasaporte|"
    r"passaporto|paspoort|paspoortnummer|passaporte|pass-?nr|pp\s?(?:no|#|number)|"
    r"travel\s+document(?:\s+(?:no|number|#))?)"
)
_MRN_LABEL = re.compile(
    r"(?i)(?:\b(?:mrn|mr\s?#|mr\s?no\.?|mr\s?number|med(?:ical)?\.?\s?rec(?:ord)?s?\.?"
    r"(?:\s?(?:no|number|num|nr|#|id))?|patient\s?(?:record|chart|file|id)(?:\s?(?:no|number|#))?|"
    r"chart\s?(?:no|number|#)|hospital\s?(?:no|number)|nhs\s?(?:no|number)|"
    r"health\s?record(?:\s?(?:no|number))?|ehr\s?(?:id|no|number)|numéro\s+de\s+dossier|"
    r"dossier\s+(?:médical|patient)|n°\s?de\s?dossier|patientennummer|fallnummer|"
    r"historia\s+clínica|nhc|cartella\s+clinica|numero\s+di\s+cartella|patiëntnummer|"
    r"patient\s?(?:no|number|#)|med\.?\s?rec\.?|medical\s?(?:id|no|number|#)|health\s?id|"
    r"hospital\s?id|uhid|emr\s?(?:#|id|no|number)?|ehr\s?#|chi\s?number|ipp|pid|"
    r"patienten-?id|krankenakte|n°\s?patient|número\s+de\s+historia|numero\s+paziente|"
    r"record\s?(?:no|number|#))"
    r"|(?<!\w)m\.r\.n\.?)"
)
# An identifier after its label: letters and digits, at most one inner space or dash group.
_ID_VALUE = re.compile(
    r"(?<![\w\-])(?:[A-Z]{1,3}[ \-])?(?=[A-Za-z]*\d)[A-Za-z0-9]{1,12}"
    r"(?:[ \-](?=[A-Za-z]*\d)[A-Za-z0-9]{1,10}){0,2}(?![\w\-])"
)
_LABEL_REACH = 48


def _value_after(text: str, end: int, min_digits: int) -> re.Match[str] | None:
    """The first identifier-shaped value after a label, on the same line and sentence."""
    reach = text[end : end + _LABEL_REACH]
    stop = re.search(r"\n|[.!?;]\s+[A-Z][a-z]|[!?;](?:\s|$)|\.$", reach)
    limit = end + (stop.start() if stop else len(reach))
    for match in _ID_VALUE.finditer(text, end, limit):
        value = match.group(0)
        digits = sum(c.isdigit() for c in value)
        if digits >= min_digits and len(value.replace(" ", "").replace("-", "")) >= 5:
            return match
    return None


_MRN_PREFIXED = re.compile(r"\b(?:MRN|MR|PT|PID|EHR)[\-#]\d{5,10}\b")


class LabelledIdRecognizer:
    entity_types = frozenset({PASSPORT, MEDICAL_RECORD_NUMBER})

    def find(self, text: str) -> Iterator[Finding]:
        for label in _PASSPORT_LABEL.finditer(text):
            value = _value_after(text, label.end(), min_digits=1)
            if value is not None and (
                not any(c.islower() for c in value.group(0))
                or sum(c.isdigit() for c in value.group(0)) >= 5
            ):
                yield Finding(value.start(), value.end(), PASSPORT, 0.85)
        for label in _MRN_LABEL.finditer(text):
            value = _value_after(text, label.end(), min_digits=4)
            if value is not None:
                yield Finding(value.start(), value.end(), MEDICAL_RECORD_NUMBER, 0.85)
        for match in _MRN_PREFIXED.finditer(text):
            yield Finding(match.start(), match.end(), MEDICAL_RECORD_NUMBER, 0.85)
