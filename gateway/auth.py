"""Bearer API keys: only their SHA-256 is configured; every check is constant-time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from gateway.shared_state.memory import MemoryAuthFailureGuard


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401,
        message,
        type="invalid_request_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
    )


class APIKeyStore:
    def __init__(self, keys: Iterable[APIKeyConfig]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None) -> APIKeyConfig:
        """The key behind an ``Authorization: Bearer`` header, or a 401."""
        if not authorization:
            raise _unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("The Authorization header must be 'Bearer <key>'.")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: APIKeyConfig | None = None
        # Compare against every key, without an early exit, so timing says nothing.
        for stored, key in self._keys:
            if hmac.compare_digest(stored, digest):
                found = key
        if found is None or found.revoked:
            raise _unauthorized("Incorrect API key provided.")
        return found

    @staticmethod
    def authorize(key: APIKeyConfig, model: str, known: bool) -> None:
        """404 for unknown and for not-allowed models alike, as OpenAI does: no enumeration.

        The message does not echo the name: an unknown one is a client string that was
        never checked for personal data.
        """
        if not known or not key.allows(model):
            raise GatewayError(
                404,
                "The model you requested does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )


# The brute-force guard lives in gateway.shared_state (memory, or Redis for replicas).
AuthFailureGuard = MemoryAuthFailureGuard
