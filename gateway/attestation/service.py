"""The gateway's attestation state: its keys, its evidence, and the tokens it issues.

The key set and evidence are ``confidential_common.tee.evidence.EvidenceService`` (the
engine's remote face serves the same document); the gateway adds the token issuer, the token
store and the JWKS every response token is checked against.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from confidential_common.tee.evidence import EvidenceService
from confidential_common.tee.providers import EvidenceProvider
from gateway.attestation.token import ResponseFacts, TokenIssuer, TokenStore

log = logging.getLogger("gateway.attestation")
NONCE_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){8,64}$")
# X-Attestation-Nonce is echoed into the token; keep it to token-safe characters.
CLIENT_NONCE = re.compile(r"^[A-Za-z0-9_\-=.:+/]{8,128}$")


@dataclass(frozen=True)
class UpstreamFacts:
    """What the token says about where an answer was produced."""

    name: str
    kind: str  # "local" | "remote"
    in_guest: bool
    weights_sha256: str | None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AttestationService(EvidenceService):
    def __init__(
        self,
        provider: EvidenceProvider,
        *,
        tls_spki_sha256: str,
        issuer: str,
        token_ttl_s: int,
        store_ttl_s: float,
    ) -> None:
        super().__init__(provider, tls_spki_sha256=tls_spki_sha256)
        self._issuer = TokenIssuer(
            self.key,
            issuer=issuer,
            tee=self.tee,
            measurements=self.measurements,
            keyset_digest=self.keyset_digest,
            ttl_s=token_ttl_s,
        )
        self.tokens = TokenStore(ttl_s=store_ttl_s)

    def jwks(self) -> dict[str, Any]:
        return dict(self.key.jwks())

    def sign(self, facts: ResponseFacts, *, owner: str | None = None) -> str:
        """A token for ``facts``; kept for retrieval by ``owner`` (an API key's digest) only
        when there is one: unauthenticated traffic is never stored."""
        token = self._issuer.issue(facts)
        if owner is not None and not self.tokens.put(facts.jti, owner, token):
            log.error("completion id %s was issued twice; its first token is kept", facts.jti)
        return token


__all__ = ["AttestationService", "UpstreamFacts", "sha256_hex"]
