"""E-mail addresses and phone numbers, in the national formats people actually write."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import EMAIL_ADDRESS, PHONE_NUMBER
from gateway.pii.findings import Finding
from gateway.pii.recognizers.base import NOT_PERSONAL_NUMBER, PHONE_CUE, window_before

# No top-level-domain check: an address on an internal or unknown domain identifies a
# person just as well.
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_OBFUSCATED_EMAIL = re.compile(
    r"(?i)(?<![\w.+-])[\w.+-]{1,64}\s*[\[(<{]\s*at\s*[\])>}]\s*[\w-]{1,63}"
    r"(?:\s*(?:[\[(<{]\s*dot\s*[\])>}]|\.)\s*[\w-]{1,63})+"
)


class EmailRecognizer:
    entity_types = frozenset({EMAIL_ADDRESS})

    def find(self, text: str) -> Iterator[Finding]:
        if "@" in text:
            for match in _EMAIL.finditer(text):
                yield Finding(match.start(), match.end(), EMAIL_ADDRESS, 0.95)
        lowered = text.lower()
        if "at" in lowered and ("dot" in lowered or "." in text):
            for match in _OBFUSCATED_EMAIL.finditer(text):
                yield Finding(match.start(), match.end(), EMAIL_ADDRESS, 0.8)


# Digit groups with the separators phone numbers use; what they hold is judged in code.
_PHONE = re.compile(
    r"(?<![^\W_]|[+\-/.,])(?P<intl>\+|00(?=[1-9]))?(?:\(\s*0?\d{1,5}\s*\)|\d{1,15})"
    r"(?:(?:[ \u00a0.\-/]{1,2}|\s?\(0\)\s?|(?<=\))|(?=\())(?:\(\s*\d{1,5}\s*\)|\d{1,10})){0,6}"
    r"(?!(?!x\d)[^\W_]|[\-/]|[.,]\d)"
)
_EXTENSION = re.compile(
    r"(?i)(?:\s*,?\s*(?:x|ext\.?|extn\.?|extension|poste|durchwahl|dw\.?|interno|int\.?|"
    r"anexo|ramal|toestel)\s*:?\s*|;ext=|\s?#\s?)\d{1,6}\b|(?i:\s*\(\s*(?:x|ext\.?|extn\.?|extension)\s*\d{1,6}\s*\))"
)
_DATE_LIKE = re.compile(r"^\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}$")


def _plausible_phone(candidate: str, digits: str, intl: bool, cue: bool) -> bool:
    n = len(digits)
    groups = re.findall(r"\d+", candidate)
    if intl:  # "+44 20 7946 0958", or compact E.164 as CRMs store it: "+442079460958"
        return 8 <= n <= 15 and (len(groups[0]) <= 4 or len(groups) <= 2)
    if n < 9 or n > 12 or _DATE_LIKE.match(candidate):
        return False
    if len(groups) == 1:
        # Compact digits: a trunk-prefixed national number, or digits someone called a phone.
        return cue or (digits[0] == "0" and digits[1] != "0" and n in {10, 11})
    first = groups[0]
    nanp_prefixed = first == "1" and n == 11  # "1 (415) 555-0199"
    if (len(first) < 2 and not nanp_prefixed) or max(len(g) for g in groups) > 8:
        return False
    if len(groups[-1]) < 2:
        return False
    # An IPv4 address or a dotted version is no phone: dotted phones have short groups.
    return "." not in candidate or not (
        (all(len(g) <= 3 for g in groups) and len(groups) == 4)
        or any(not 2 <= len(g) <= 4 for g in groups)
    )


class PhoneRecognizer:
    entity_types = frozenset({PHONE_NUMBER})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _PHONE.finditer(text):
            candidate = match.group(0)
            digits = re.sub(r"\D", "", candidate)
            if len(digits) < 8:
                continue
            intl = match.group("intl") is not None
            before = window_before(text, match.start())
            cue = PHONE_CUE.search(before)
            if (
                not intl
                and NOT_PERSONAL_NUMBER.search(before)
                and (cue is None or cue.group(0).lower() in _GENERIC_CUES)
            ):
                continue
            if not _plausible_phone(candidate, digits, intl, cue is not None):
                continue
            end = match.end()
            extension = _EXTENSION.match(text, end)
            if extension:
                end = extension.end()
            yield Finding(match.start(), end, PHONE_NUMBER, 0.75 if intl or cue else 0.6)


# Cue words that also precede order, account and routing numbers.
_GENERIC_CUES = frozenset({"number", "nummer", "numéro", "número", "numero", "contact", "reach"})
