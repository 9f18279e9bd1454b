"""The signed token on every response: a compact JWS with EAT-style claims.

Header ``{"alg": "ES256", "typ": "JWT", "kid": ...}``; the claims name the TEE and its
measurements, the key-set digest the evidence binds, SHA-256 digests of the exact request
bytes received and response bytes sent, the model and its weights digest, the PII policy
digest with per-type counts (never values), and where the upstream ran. Signed through
jwcrypto (``SigningKey.sign_compact``) over exactly the header and claims bytes built here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from confidential_common.tee.keys import SIGNING_ALG, SigningKey
from gateway.shared_state.memory import MemoryTokenStore

# A stream's token rides its usage chunk when the client asked for usage; otherwise this SSE
# comment line carries it (``: attestation_token <JWS>``), which every SSE parser skips.
STREAM_TOKEN_COMMENT = b": attestation_token "

EAT_PROFILE = "tag:confidential-gateway.dev,2026:response-token-v1"


@dataclass
class ResponseFacts:
    """What the gateway knows about one response when it signs it."""

    jti: str
    request_sha256: str | None
    response_sha256: str
    status: int
    nonce: str | None = None
    model: dict[str, Any] | None = None
    pii: dict[str, Any] | None = None
    upstream: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TokenIssuer:
    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        tee: str,
        measurements: dict[str, str],
        keyset_digest: str,
        ttl_s: int,
    ) -> None:
        self._key = key
        self._header = json.dumps(
            {"alg": SIGNING_ALG, "typ": "JWT", "kid": key.kid}, separators=(",", ":")
        )
        self._static = {
            "iss": issuer,
            "eat_profile": EAT_PROFILE,
            "tee": tee,
            "measurements": measurements,
            "keyset_digest": keyset_digest,
        }
        self._ttl = ttl_s

    def issue(self, facts: ResponseFacts) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            **self._static,
            "iat": now,
            "exp": now + self._ttl,
            "jti": facts.jti,
            "status": facts.status,
            "request_sha256": facts.request_sha256,
            "response_sha256": facts.response_sha256,
            "model": facts.model,
            "pii": facts.pii,
            "upstream": facts.upstream,
            **facts.extra,
        }
        if facts.nonce is not None:
            claims["eat_nonce"] = facts.nonce
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        return self._key.sign_compact(self._header, payload)


# Stored tokens live in gateway.shared_state (memory, or Redis for replicas).
TokenStore = MemoryTokenStore
