"""Payment cards (issuer ranges and Luhn), IBANs (country length and mod-97), crypto wallets."""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.pii.entities import CREDIT_CARD, CRYPTO, IBAN_CODE
from gateway.pii.findings import Finding
from gateway.pii.recognizers.checksums import base58check_valid, iban_valid, luhn_valid

# Digits with one kind of separator between groups, as people and forms write them.
_CARD = re.compile(
    r"(?<![^\W_]|[\-])(?<!\d[.,])\d(?:(?:\s{0,2}[\-./_]\s{0,2}|\s{1,2})?\d){12,18}(?![^\W_]|-|[.,]\d)"
)
_IBAN = re.compile(
    r"(?:(?<![\w])|(?<=IBAN)|(?<=iban))(?i:[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,30})(?![\w])"
)


_BTC = re.compile(
    r"(?<![\w])(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[ac-hj-np-z02-9]{11,71})(?![\w])"
)


def _issuer(digits: str) -> bool:
    """Known issuer ranges: Visa, Mastercard (incl. 2-series), Amex, Discover, JCB, Diners,
    UnionPay, Maestro."""
    n = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return n in {13, 16, 19}
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in {34, 37}:
        return n == 15
    if (
        digits.startswith(("6011", "65"))
        or 644 <= int(digits[:3]) <= 649
        or (622126 <= six <= 622925)
    ):
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in {36, 38, 39} or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if two == 62:
        return 16 <= n <= 19
    return digits[:2] in {"50", "56", "57", "58", "63", "67"} and 12 <= n <= 19


def _consistent_separators(candidate: str) -> bool:
    separators = set(re.findall(r"\D+", candidate))
    return len(separators) <= 1


class CardRecognizer:
    entity_types = frozenset({CREDIT_CARD})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _CARD.finditer(text):
            candidate = match.group(0)
            digits = re.sub(r"\D", "", candidate)
            if (
                13 <= len(digits) <= 19
                and _consistent_separators(candidate)
                and _issuer(digits)
                and luhn_valid(digits)
            ):
                yield Finding(match.start(), match.end(), CREDIT_CARD, 0.95)


class IbanRecognizer:
    entity_types = frozenset({IBAN_CODE})

    def find(self, text: str) -> Iterator[Finding]:
        position = 0
        while (match := _IBAN.search(text, position)) is not None:
            end = _valid_prefix_end(match.group(0))
            if end is None:
                position = match.start() + 1
                continue
            # The pattern is greedy (it may run into the words after the IBAN): cut it at the
            # longest prefix that is a valid IBAN and scan on from there.
            yield Finding(match.start(), match.start() + end, IBAN_CODE, 0.95)
            position = match.start() + end


def _valid_prefix_end(candidate: str) -> int | None:
    """Length (in ``candidate``) of its longest prefix that is a valid IBAN, if any."""
    compact = re.sub(r"[ \-]", "", candidate).upper()
    for length in range(min(34, len(compact)), 14, -1):
        if iban_valid(compact[:length]):
            seen = 0
            for index, char in enumerate(candidate):
                if char not in " -":
                    seen += 1
                    if seen == length:
                        return index + 1
    return None


class CryptoRecognizer:
    entity_types = frozenset({CRYPTO})

    def find(self, text: str) -> Iterator[Finding]:
        for match in _BTC.finditer(text):
            value = match.group(0)
            if value.startswith("bc1") or base58check_valid(value):
                yield Finding(match.start(), match.end(), CRYPTO, 0.9)
