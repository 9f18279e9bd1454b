"""A JSON key is context for its value: ``{"ssn": "412859031"}`` holds an SSN whatever its
shape, ``{"customer_name": "li wei"}`` a name even in lowercase.

The stage passes the key a string sits under (``field``); when the key names a kind of
personal data and the value has that kind's shape, the whole value is a finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.pii.entities import (
    CREDENTIAL,
    CREDIT_CARD,
    DATE_OF_BIRTH,
    EMAIL_ADDRESS,
    IBAN_CODE,
    MEDICAL_RECORD_NUMBER,
    PASSPORT,
    PERSON,
    PHONE_NUMBER,
    STREET_ADDRESS,
    US_SSN,
)
from gateway.pii.findings import Finding
from gateway.pii.recognizers.credentials import is_secret_value
from gateway.pii.recognizers.dates import DATE
from gateway.pii.recognizers.names import NameRecognizer, handle_is_name, looks_like_person

_MAYBE_PERSON = "PERSON?"  # a key that often, not always, holds a person's name
_HINTS: list[tuple[str, str]] = [
    (
        r"(?:ssn|social_security(?:_number|_no)?|tax_?id|tin|itin|taxpayer_id(?:_number)?|"
        r"tax_identification_number|national_insurance(?:_number)?|nino|sin)",
        US_SSN,
    ),
    (
        r"(?:dob|d_o_b|date_of_birth|birth_?date|birthday|birth_day|born(?:_on)?|"
        r"geburtsdatum|date_(?:de_)?naissance|fecha_(?:de_)?nacimiento|data_(?:di_)?nascita|"
        r"geboortedatum|data_de_nascimento)",
        DATE_OF_BIRTH,
    ),
    (r"(?:passport(?:_?(?:no|nr|number|num|id))?|passeport|reisepass|pasaporte)", PASSPORT),
    (
        r"(?:mrn|medical_record(?:_number|_no|_id)?|med_rec(?:_no)?|patient_id|chart_(?:no|number)|"
        r"nhs_(?:no|number)|health_record_(?:no|number|id)|ehr_id|hospital_number)",
        MEDICAL_RECORD_NUMBER,
    ),
    (
        r"(?:phone|phone_?(?:no|number)|mobile(?:_number)?|cell(?:_?phone)?|telephone|tel|fax|"
        r"contact_number|whatsapp|msisdn|telefon|telefono|teléfono|portable|handy)",
        PHONE_NUMBER,
    ),
    (r"(?:e_?mail(?:_address)?|mail)", EMAIL_ADDRESS),
    (r"(?:card|card_?(?:no|number)|credit_card(?:_number)?|cc_?(?:no|number)|pan)", CREDIT_CARD),
    (r"(?:iban|iban_code)", IBAN_CODE),
    (
        r"(?:address(?:_line_?\d?)?|street(?:_address)?|addr|home_address|shipping_address|"
        r"billing_address|mailing_address|postal_address|residence|adresse|anschrift|"
        r"direcci[oó]n|indirizzo|endere[cç]o)",
        STREET_ADDRESS,
    ),
    (
        r"(?:password|passwd|pwd|passphrase|secret|token|api_?key|access_?key|secret_?key|"
        r"client_secret|private_key|auth_token|access_token|refresh_token|session_token|"
        r"secret_access_key|bearer)",
        CREDENTIAL,
    ),
    (
        r"(?:first_?name|last_?name|full_?name|given_?name|family_?name|surname|middle_name|"
        r"maiden_name|customer_name|patient_name|employee_name|contact_name|person_name|"
        r"account_holder(?:_name)?|holder_name|cardholder(?:_name)?|beneficiary(?:_name)?|"
        r"recipient_name|sender_name|guardian(?:_name)?|next_of_kin|emergency_contact(?:_name)?|"
        r"spouse(?:_name)?|nom|prenom|prénom|vorname|nachname|nombre|apellidos?|cognome)",
        PERSON,
    ),
    (
        r"(?:name|user|username|user_name|handle|login|author|assignee|reviewer|owner|sender|"
        r"recipient|contact|participant|customer|patient|employee|person|attendee|guest|"
        r"passenger|traveler|traveller|member|candidate|applicant|tenant|signer)",
        _MAYBE_PERSON,
    ),
]
_COMPILED = [(re.compile(rf"(?:^|_){pattern}$"), entity) for pattern, entity in _HINTS]
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def normalise_key(key: str) -> str:
    return re.sub(r"[^0-9a-zà-ÿ]+", "_", _SNAKE.sub("_", key).lower()).strip("_")


def hint_for(field: str | None) -> str | None:
    if not field or len(field) > 64:
        return None
    key = normalise_key(field)
    for pattern, entity in _COMPILED:
        if pattern.search(key):
            return entity
    return None


def _digits(value: str) -> int:
    return sum(c.isdigit() for c in value)


def _secretish(value: str) -> bool:
    return len(value) >= 6 and is_secret_value(value, "secret")


_WHOLE: dict[str, Callable[[str], bool]] = {
    US_SSN: lambda v: 9 <= _digits(v) <= 11 and len(v) <= 16,
    PASSPORT: lambda v: len(v) <= 24 and _digits(v) >= 2,
    MEDICAL_RECORD_NUMBER: lambda v: len(v) <= 24 and _digits(v) >= 3,
    PHONE_NUMBER: lambda v: 7 <= _digits(v) <= 20 and len(v) <= 40,
    CREDIT_CARD: lambda v: 12 <= _digits(v) <= 19 and len(v) <= 25,
    IBAN_CODE: lambda v: 15 <= len(re.sub(r"[\s\-]", "", v)) <= 34 and _digits(v) >= 4,
    EMAIL_ADDRESS: lambda v: "@" in v and len(v) <= 254,
    STREET_ADDRESS: lambda v: len(v) <= 200 and (_digits(v) > 0 or len(v.split()) >= 2),
    CREDENTIAL: _secretish,
    PERSON: looks_like_person,
}


# "key": "value", key: value, key=value inside a text (JSON tool results, YAML, forms).
_KEYED = re.compile(
    r"(?P<q>[\"']?)(?P<key>[A-Za-zÀ-ÿ_][\w\-. ]{0,40}?)(?P=q)[^\S\n]*(?::|=>|=)[^\S\n]*"
    r"(?:\"(?P<dq>(?:[^\"\\\n]|\\.){1,300})\"|'(?P<sq>[^'\n]{1,300})'"
    r"|(?P<bare>[^\s\"'{\[][^\n]{0,300}))"
)
_KEEPS_COMMAS = {STREET_ADDRESS}


def keyed_findings(text: str, names: NameRecognizer) -> list[Finding]:
    """Field findings for values written after their key inside a text."""
    if ":" not in text and "=" not in text:
        return []
    out: list[Finding] = []
    for match in _KEYED.finditer(text):
        key = match.group("key").strip()
        hint = hint_for(key)
        if hint is None:
            continue
        group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
        start, end = match.start(group), match.end(group)
        if group == "bare":
            value = text[start:end]
            if hint not in _KEEPS_COMMAS:
                cut = re.search(r"[,;}\]]|\s{2,}", value)
                end = start + (cut.start() if cut else len(value))
            end = start + len(text[start:end].rstrip(" ,;}]."))
        out += [f.shifted(start) for f in field_findings(text[start:end], key, names)]
    return out


def field_findings(text: str, field: str | None, names: NameRecognizer) -> list[Finding]:
    """Findings the key implies for its whole value (or, for dates, for its dates)."""
    hint = hint_for(field)
    if hint is None:
        return []
    value = text.strip()
    if not value:
        return []
    start = text.index(value[0])
    whole = Finding(start, start + len(value), hint, 0.9)
    if hint == DATE_OF_BIRTH:
        dates = [Finding(m.start(), m.end(), DATE_OF_BIRTH, 0.9) for m in DATE.finditer(text)]
        if dates:
            return dates
        return [whole] if len(value) <= 24 and _digits(value) >= 2 else []
    if hint == _MAYBE_PERSON:
        if handle_is_name(value, lenient=True) or (
            looks_like_person(value) and any(True for _ in names.find(value))
        ):
            return [Finding(whole.start, whole.end, PERSON, 0.85)]
        return []
    return [whole] if _WHOLE[hint](value) else []
