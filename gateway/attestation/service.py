"""The gateway's attestation state: its keys, its evidence, and the tokens it issues.

Built once at start-up: a signing key generated in memory, the key set (that key plus the TLS
certificate's SPKI digest), an evidence provider, and a first piece of evidence collected
right away so a broken TEE stops start-up rather than the first client.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from gateway.attestation.keys import KeySet, SigningKey, report_data_for
from gateway.attestation.providers import AttestationUnavailable, Evidence, EvidenceProvider
from gateway.attestation.token import ResponseFacts, TokenIssuer, TokenStore

log = logging.getLogger("gateway.attestation")
NONCE_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){8,64}$")
# X-Attestation-Nonce is echoed into the token; keep it to token-safe characters.
CLIENT_NONCE = re.compile(r"^[A-Za-z0-9_\-=.:+/]{8,128}$")
UNNONCED_CACHE_S = 30.0


@dataclass(frozen=True)
class UpstreamFacts:
    """What the token says about where an answer was produced."""

    name: str
    kind: str  # "local" | "remote"
    in_guest: bool
    weights_sha256: str | None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AttestationService:
    def __init__(
        self,
        provider: EvidenceProvider,
        *,
        tls_spki_sha256: str,
        issuer: str,
        token_ttl_s: int,
        store_ttl_s: float,
    ) -> None:
        self._provider = provider
        self.key = SigningKey()
        self.keyset = KeySet(self.key.jwk, tls_spki_sha256)
        self.keyset_digest = self.keyset.digest
        self.tee = provider.tee
        first = self._collect(b"")
        self.measurements = first.measurements
        self._cached: tuple[float, Evidence] | None = (time.monotonic(), first)
        self._lock = threading.Lock()
        self._issuer = TokenIssuer(
            self.key,
            issuer=issuer,
            tee=self.tee,
            measurements=self.measurements,
            keyset_digest=self.keyset_digest,
            ttl_s=token_ttl_s,
        )
        self.tokens = TokenStore(ttl_s=store_ttl_s)

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

    def jwks(self) -> dict[str, Any]:
        return dict(self.key.jwks())

    def sign(self, facts: ResponseFacts, *, owner: str | None = None) -> str:
        """A token for ``facts``; kept for retrieval by ``owner`` (an API key's digest) only
        when there is one: unauthenticated traffic is never stored."""
        token = self._issuer.issue(facts)
        if owner is not None and not self.tokens.put(facts.jti, owner, token):
            log.error("completion id %s was issued twice; its first token is kept", facts.jti)
        return token


__all__ = ["AttestationService", "AttestationUnavailable", "UpstreamFacts", "sha256_hex"]
