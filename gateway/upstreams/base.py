"""The one upstream interface: an OpenAI operation sent to something that speaks OpenAI's API.

Local engines (a Unix socket), remote engines and OpenAI-compatible providers (TLS) speak the
wire format over HTTP (``openai_http.OpenAIUpstream``); litellm calls a provider's own API.
The router never asks which kind it holds.

Boundary, in the style of httpx transports: ``complete`` takes the operation and the request
JSON and returns the response JSON. ``stream`` is an async context manager that yields parsed
chunk objects until the upstream's ``[DONE]``; leaving the context closes the upstream
response, which is how a client disconnect reaches the engine and frees its slot. Failures
raise ``UpstreamError``; ``retryable`` is true when the upstream never produced a response, so
another upstream may safely be tried.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, get_args

from gateway.config import KeyBrokerKind

# The OpenAI operations an upstream serves, named by their path below ``/v1``. The Responses
# API is served over ``chat/completions`` (the gateway translates), so no upstream needs it.
Operation = Literal["chat/completions", "completions", "embeddings"]
STREAMING_OPERATIONS: frozenset[Operation] = frozenset({"chat/completions", "completions"})

# The kind words of config, code and response token alike.
UpstreamKind = Literal["local", "remote", "attested-remote", "litellm"]


@dataclass(frozen=True)
class UpstreamDescription:
    """What an upstream is, said once: routing, the start-up summary and the token read it.

    ``in_guest``: prompts stay inside this confidential VM. ``attested``: the upstream's own
    TEE was verified (an attested remote engine; a local engine shares ours).
    """

    kind: UpstreamKind
    in_guest: bool
    attested: bool
    provider: str | None = None

    @property
    def confidential(self) -> bool:
        """Prompts stay inside verified confidential VMs (this one or an attested one)."""
        return self.in_guest or self.attested

    @property
    def scopes_cache_per_tenant(self) -> bool:
        """Our own engines hear who a request is for and scope their prompt cache by it."""
        return self.kind in {"local", "attested-remote"}


_HEX = re.compile(r"^[0-9a-fA-F]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class SealedWeights:
    """How sealed weights reached the engine: the encrypted file's SHA-256, the id of the key
    that opened it, and the broker that released that key."""

    sha256: str
    key_id: str
    key_broker: KeyBrokerKind

    def claim(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "key_id": self.key_id, "key_broker": self.key_broker}


@dataclass(frozen=True)
class Weights:
    """The weights an answer came from, as an engine's ``/health`` reports them.

    ``sha256`` is the plaintext GGUF's (decrypted in memory when ``sealed``).
    """

    sha256: str
    sealed: SealedWeights | None = None

    @classmethod
    def from_health(cls, document: Mapping[str, Any]) -> Weights | None:
        """``weights_sha256`` and ``sealed`` of an engine's ``/health``; None without a hash.

        Raises ``ValueError`` when either is malformed: a token must never carry a guess.
        """
        sha256, sealed = document.get("weights_sha256"), document.get("sealed")
        if sha256 is None:
            if sealed is not None:
                raise ValueError("/health reports sealed weights without weights_sha256")
            return None
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValueError(f"/health weights_sha256 is not a hex SHA-256: {sha256!r}")
        if sealed is None:
            return cls(sha256.lower())
        if not isinstance(sealed, Mapping):
            raise ValueError("/health sealed is neither null nor an object")
        digest, key_id, broker = (
            sealed.get("sha256"),
            sealed.get("key_id"),
            sealed.get("key_broker"),
        )
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"/health sealed.sha256 is not a hex SHA-256: {digest!r}")
        if not isinstance(key_id, str) or not _HEX.match(key_id):
            raise ValueError(f"/health sealed.key_id is not hex: {key_id!r}")
        if broker not in get_args(KeyBrokerKind):
            raise ValueError(f"/health sealed.key_broker is not a known broker: {broker!r}")
        facts = SealedWeights(digest.lower(), key_id.lower(), cast(KeyBrokerKind, broker))
        return cls(sha256.lower(), facts)

    def claim(self) -> dict[str, Any]:
        """The response token's weight facts, merged into its ``model`` claim:
        ``weights_sha256``, and ``sealed`` only for sealed weights (absent, not null, else)."""
        claim: dict[str, Any] = {"weights_sha256": self.sha256}
        if self.sealed is not None:
            claim["sealed"] = self.sealed.claim()
        return claim


@dataclass(frozen=True)
class Tenant:
    """Who a request is for, as a local engine schedules and caches it.

    ``id`` is an opaque per-key id (never the key or its name); engines schedule fairly
    across ids by ``weight`` and reuse cached prompt prefixes only within one id.
    """

    id: str
    weight: int = 1

    def headers(self) -> dict[str, str]:
        return {TENANT_HEADER: self.id, TENANT_WEIGHT_HEADER: str(self.weight)}


TENANT_HEADER = "x-gateway-tenant"
TENANT_WEIGHT_HEADER = "x-gateway-tenant-weight"


class Upstream(Protocol):
    """What the router holds. ``model`` is the id this upstream expects in requests.

    ``tenant`` is for upstreams that schedule per key (our engines); others ignore it.
    An operation the upstream cannot serve raises a client ``UpstreamError`` (400).
    """

    name: str
    model: str

    async def complete(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> dict[str, Any]: ...

    def stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    async def probe(self) -> bool: ...

    async def close(self) -> None: ...


class UpstreamError(Exception):
    """An upstream failed. ``status`` and ``body`` are set when it answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.retryable = retryable
        self.status = status
        self.body = body

    @property
    def health_signal(self) -> bool:
        """The failure says something about the upstream, not about this request.

        Unreachable, reset or cut: yes. An answer, even a 5xx, means the upstream
        is alive: overload (429/503) moves work elsewhere and an error one request provoked
        (500) is that request's; neither may take the upstream out for everyone else. 502
        and 504 are its own upstream failing, so they count.
        """
        if self.status is None:
            # A request that ran past its timeout may just be long: hung engines are the
            # watchdog's and the prober's to find, or one key could eject an upstream.
            return not self.timed_out
        return self.status in {502, 504}

    @property
    def client_error(self) -> bool:
        """The upstream rejected the request itself (4xx other than 408/429)."""
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in {408, 429}
        )


def unsupported_operation(name: str, operation: Operation) -> UpstreamError:
    """A request this upstream cannot serve: the client's to change, never a health signal."""
    message = f"This model does not serve /v1/{operation}."
    return UpstreamError(
        f"{name}: {message}",
        retryable=False,
        status=400,
        body={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "model",
                "code": "unsupported_operation",
            }
        },
    )
