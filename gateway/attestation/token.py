"""The signed token on every response: a compact JWS with EAT-style claims.

Header ``{"alg": "ES256", "typ": "JWT", "kid": ...}``; the claims name the TEE and its
measurements, the key-set digest the evidence binds, SHA-256 digests of the exact request
bytes received and response bytes sent, the model and its weights digest, the PII policy
digest with per-type counts (never values), and where the upstream ran. Signed through
jwcrypto (``SigningKey.sign_compact``) over exactly the header and claims bytes built here.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from confidential_common.tee.keys import SIGNING_ALG, SigningKey

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


class TokenStore:
    """Recent tokens by completion id, in memory, for ``GET /v1/attestations/{id}``.

    Each entry belongs to the API key whose request caused it (``owner``, its digest): only
    that key reads it back. An id is stored once and never overwritten: ids are the
    gateway's own, and a second writer for one id would be a bug or an attack.
    """

    def __init__(self, *, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._tokens: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, completion_id: str, owner: str, token: str) -> bool:
        """Keep ``token``; False (and nothing changed) if the id is already taken."""
        with self._lock:
            entry = self._tokens.get(completion_id)
            if entry is not None and entry[0] >= time.monotonic():
                return False
            self._tokens[completion_id] = (time.monotonic() + self._ttl, owner, token)
            self._tokens.move_to_end(completion_id)
            while len(self._tokens) > self._max:
                self._tokens.popitem(last=False)
            return True

    def get(self, completion_id: str, owner: str) -> str | None:
        """The token for ``completion_id`` if ``owner`` caused it; else None, as for an
        unknown id (whether someone else's id exists is not for this caller to learn)."""
        with self._lock:
            entry = self._tokens.get(completion_id)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._tokens[completion_id]
                return None
            return entry[2] if hmac.compare_digest(entry[1], owner) else None
