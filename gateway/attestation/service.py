"""The gateway's attestation state: its keys, its evidence, and the tokens it issues.

The key set and evidence are ``confidential_common.tee.evidence.EvidenceService`` (the
engine's remote face serves the same document); the gateway adds the token issuer, the token
store and the JWKS every response token is checked against.

Tokens are kept through a ``TokenKeeper`` (``gateway.shared_state``: this process's memory,
or Redis shared by replicas). ``sign`` stays synchronous, so it starts the write and
``flush`` waits for it: the lifecycle flushes before a response ends, so a client that
fetches a token it was just given finds it on any replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from confidential_common.tee.evidence import EvidenceService
from confidential_common.tee.providers import EvidenceProvider
from gateway.attestation.token import ResponseFacts, TokenIssuer
from gateway.shared_state.base import TokenKeeper
from gateway.shared_state.memory import MemoryTokenStore

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
        tokens: TokenKeeper | None = None,
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
        self.tokens: TokenKeeper = tokens or MemoryTokenStore(ttl_s=store_ttl_s)
        self._writes: dict[str, asyncio.Future[None]] = {}

    def jwks(self) -> dict[str, Any]:
        return dict(self.key.jwks())

    def sign(self, facts: ResponseFacts, *, owner: str | None = None) -> str:
        """A token for ``facts``; kept for retrieval by ``owner`` (an API key's digest) only
        when there is one: unauthenticated traffic is never stored."""
        token = self._issuer.issue(facts)
        if owner is not None:
            self._keep(facts.jti, owner, token)
        return token

    def _keep(self, completion_id: str, owner: str, token: str) -> None:
        write = self._write(completion_id, owner, token)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tools, tests): the write runs to its end here
            asyncio.run(write)
            return
        task = asyncio.ensure_future(write)
        self._writes[completion_id] = task
        task.add_done_callback(lambda _: self._writes.pop(completion_id, None))

    async def _write(self, completion_id: str, owner: str, token: str) -> None:
        if not await self.tokens.put(completion_id, owner, token):
            log.error("completion id %s was issued twice; its first token is kept", completion_id)

    async def flush(self, completion_id: str) -> None:
        """Wait until the token signed for ``completion_id`` (if any) has been stored."""
        write = self._writes.get(completion_id)
        if write is not None:
            await asyncio.shield(write)

    async def stored(self, completion_id: str, owner: str) -> str | None:
        """The token kept for ``completion_id`` if ``owner`` caused it, else None."""
        await self.flush(completion_id)
        return await self.tokens.get(completion_id, owner)


__all__ = ["AttestationService", "UpstreamFacts", "sha256_hex"]
