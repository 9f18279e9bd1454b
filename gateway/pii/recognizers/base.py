"""What a recognizer is, and the context cues several of them share.

A recognizer finds one family of values in a text and says which type each is. It is pure
(no state between calls) and fast: it runs on every new message of every request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from gateway.pii.findings import Finding


class Recognizer(Protocol):
    entity_types: frozenset[str]

    def find(self, text: str) -> Iterable[Finding]: ...


def window_before(text: str, start: int, size: int = 40) -> str:
    """The text just before ``start``, cut at the previous line break."""
    chunk = text[max(0, start - size) : start]
    return chunk[chunk.rfind("\n") + 1 :]


# Words after which a run of digits is an order, a ticket or a build, not a person's number.
NOT_PERSONAL_NUMBER = re.compile(
    r"(?i)(?:\b(?:order|orders|invoice|inv|tracking|track|shipment|parcel|package|waybill|"
    r"ref|reference|routing|aba|account|acct|isbn|issn|serial|s/n|sku|part|item|po|"
    r"purchase|case|ticket|incident|issue|pr|build|job|run|pipeline|version|ver|release|"
    r"commit|batch|lot|model|product|confirmation|booking|reservation|transaction|txn|"
    r"payment|receipt|claim|policy|contract|request|req|id|ids|pid|uid|gid|port|pin|otp|"
    r"code|bestellung|bestellnummer|commande|facture|pedido|factura|ordine|fattura|"
    r"bestelling|factuur|rechnung|sendung)\b[\w\s#:.\-]{0,12}|#\s*)$"
)
PHONE_CUE = re.compile(
    r"(?i)\b(?:phone|phones|ph|tel|tél|tele|telephone|mobile|mob|cell|cellphone|call|"
    r"calling|text|sms|whatsapp|signal|fax|reach|number|contact|dial|ring|hotline|"
    r"téléphone|telephone|portable|joindre|appeler|numéro|telefon|handy|rufnummer|"
    r"anrufen|nummer|erreichbar|teléfono|telefono|móvil|movil|celular|llamar|número|"
    r"cellulare|chiamare|numero|telefoon|mobiel|bellen|telemóvel|telefone|ligar|"
    r"contato|contatto|llámame|ring me|call me)\b"
)
