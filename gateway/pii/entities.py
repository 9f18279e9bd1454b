"""The PII entity types: one definition, used by recognizers, policies, tokens and the bench.

A type name is what a placeholder says (``<PERSON_1>``), what a route's ``pii.entities``
lists, and what a response token counts. Aliases are the short names people write in config.
"""

from __future__ import annotations

PERSON = "PERSON"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
US_SSN = "US_SSN"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
IP_ADDRESS = "IP_ADDRESS"
CREDENTIAL = "CREDENTIAL"
PASSPORT = "PASSPORT"
MEDICAL_RECORD_NUMBER = "MEDICAL_RECORD_NUMBER"
DATE_OF_BIRTH = "DATE_OF_BIRTH"
STREET_ADDRESS = "STREET_ADDRESS"
CRYPTO = "CRYPTO"
MAC_ADDRESS = "MAC_ADDRESS"

# The twelve types the evaluation corpus labels (bench/pii_corpus.py, bench/pii_eval.py).
LABELLED = (
    PERSON,
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    US_SSN,
    CREDIT_CARD,
    IBAN_CODE,
    IP_ADDRESS,
    CREDENTIAL,
    PASSPORT,
    MEDICAL_RECORD_NUMBER,
    DATE_OF_BIRTH,
    STREET_ADDRESS,
)
# What the built-in recognizers find; every route covers all of them unless it lists fewer.
BUILTIN = (*LABELLED, CRYPTO, MAC_ADDRESS)

ALIASES = {
    "EMAIL": EMAIL_ADDRESS,
    "PHONE": PHONE_NUMBER,
    "SSN": US_SSN,
    "IBAN": IBAN_CODE,
    "ADDRESS": STREET_ADDRESS,
    "DOB": DATE_OF_BIRTH,
    "MRN": MEDICAL_RECORD_NUMBER,
    "NAME": PERSON,
}


def canonical(name: str) -> str:
    """The type a config or label name means: ``email`` -> ``EMAIL_ADDRESS``."""
    upper = name.strip().upper()
    return ALIASES.get(upper, upper)
