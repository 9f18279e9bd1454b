"""Bearer API keys: only their SHA-256 is configured; every check is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError


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


class AuthFailureGuard:
    """Refuses an address for a while after too many failed authentications (brute force).

    A sliding window per client address: more than ``max_failures`` failures within
    ``window_s`` answer 429 with ``Retry-After`` until the window has room again. The table is
    bounded so that spraying addresses cannot exhaust memory.
    """

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._max_clients = max_clients
        self._now = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        now = self._now()
        entries = self._failures.get(client)
        if entries is None:
            return deque()
        while entries and entries[0] <= now - self._window:
            entries.popleft()
        return entries

    def check(self, client: str) -> None:
        entries = self._recent(client)
        if len(entries) >= self._max:
            retry = max(1, math.ceil(entries[0] + self._window - self._now()))
            raise GatewayError(
                429,
                "Too many failed authentication attempts from this address; "
                f"try again in {retry}s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry)},
            )

    def failed(self, client: str) -> None:
        entries = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        entries.append(self._now())
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
