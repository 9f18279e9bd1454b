"""A process's attested key set and the evidence document that proves it.

Built once at start-up: a signing key generated in memory, the key set (that key plus the
TLS certificate's SPKI digest), an evidence provider, and a first piece of evidence collected
right away so a broken TEE stops start-up rather than the first client. The gateway's
attestation service adds the tokens it signs; an engine's remote face serves this alone.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from confidential_common.tee.keys import KeySet, SigningKey, report_data_for
from confidential_common.tee.providers import Evidence, EvidenceProvider

UNNONCED_CACHE_S = 30.0


class EvidenceService:
    def __init__(self, provider: EvidenceProvider, *, tls_spki_sha256: str) -> None:
        self._provider = provider
        self.key = SigningKey()
        self.keyset = KeySet(self.key.jwk, tls_spki_sha256)
        self.keyset_digest = self.keyset.digest
        self.tee = provider.tee
        first = self._collect(b"")
        self.measurements = first.measurements
        self._cached: tuple[float, Evidence] | None = (time.monotonic(), first)
        self._lock = threading.Lock()

    @property
    def simulated(self) -> bool:
        return self.tee == "simulated"

    def _collect(self, nonce: bytes) -> Evidence:
        return self._provider.collect(report_data_for(self.keyset_digest, nonce))

    def evidence_document(self, nonce_hex: str | None) -> dict[str, Any]:
        """Fresh evidence for a nonce; without one, evidence up to 30 s old."""
        nonce = bytes.fromhex(nonce_hex) if nonce_hex else b""
        if nonce:
            evidence = self._collect(nonce)
        else:
            with self._lock:
                cached = self._cached
                if cached is None or time.monotonic() - cached[0] > UNNONCED_CACHE_S:
                    cached = (time.monotonic(), self._collect(b""))
                    self._cached = cached
                evidence = cached[1]
        document: dict[str, Any] = {
            "tee": evidence.tee,
            "simulated": evidence.tee == "simulated",
            "evidence_format": evidence.format,
            "evidence": base64.b64encode(evidence.blob).decode(),
            "report_data": evidence.report_data.hex(),
            "nonce": nonce.hex(),
            "keyset": self.keyset.document(),
            "keyset_digest": self.keyset_digest,
            "measurements": evidence.measurements,
            "binding": "report_data = SHA-512('confidential-gateway/attestation/v1' || 0x00 || "
            "keyset_digest || nonce)",
        }
        if evidence.aux:
            document["aux"] = base64.b64encode(evidence.aux).decode()
        if evidence.extra.get("warning"):
            document["warning"] = evidence.extra["warning"]
        return document
