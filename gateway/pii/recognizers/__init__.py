"""The recognizers the detector runs, one module per family of values, listed once here."""

from __future__ import annotations

from gateway.pii.recognizers.addresses import AddressRecognizer
from gateway.pii.recognizers.base import Recognizer
from gateway.pii.recognizers.contact import EmailRecognizer, PhoneRecognizer
from gateway.pii.recognizers.credentials import CredentialRecognizer
from gateway.pii.recognizers.dates import BirthDateRecognizer
from gateway.pii.recognizers.financial import CardRecognizer, CryptoRecognizer, IbanRecognizer
from gateway.pii.recognizers.identifiers import LabelledIdRecognizer, SsnRecognizer
from gateway.pii.recognizers.names import NameRecognizer
from gateway.pii.recognizers.network import IpRecognizer, MacRecognizer


def default_recognizers() -> list[Recognizer]:
    return [
        EmailRecognizer(),
        CredentialRecognizer(),
        CardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        MacRecognizer(),
        CryptoRecognizer(),
        SsnRecognizer(),
        PhoneRecognizer(),
        LabelledIdRecognizer(),
        BirthDateRecognizer(),
        AddressRecognizer(),
        NameRecognizer(),
    ]


__all__ = ["Recognizer", "default_recognizers"]
