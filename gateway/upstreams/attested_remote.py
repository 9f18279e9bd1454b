"""A remote engine in another confidential VM, trusted through its evidence, not through a CA.

Before any prompt goes out, the gateway fetches ``/v1/attestation`` with a fresh nonce (the
only request made without a pinned key, and it carries nothing but the nonce), verifies the
evidence with the configured policy (hardware checks, measurement allow-list), and checks that
the evidence binds the SubjectPublicKeyInfo of the certificate that very connection
presented. That certificate then becomes the only trust anchor of every later connection, so
TLS itself refuses a peer without the attested key. Until verification succeeds the upstream
is not ready and the router never picks it; a failure is logged in one clear line.
Verification is repeated every ``reattest_s`` and whenever a connection fails (a restarted
engine has a new key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.attestation.tdx_verify import load_collateral
from gateway.attestation.verifier import (
    VerificationError,
    VerificationPolicy,
    spki_sha256_of_der_certificate,
    verify_evidence,
)
from gateway.config import ModelConfig, RemoteAttestationConfig, RemoteDeployment
from gateway.upstreams.base import Operation, Tenant, UpstreamDescription, UpstreamError
from gateway.upstreams.openai_http import OpenAIUpstream
from gateway.upstreams.router import Member

if TYPE_CHECKING:
    from gateway.upstreams.topology import BuildContext, BuiltMember

log = logging.getLogger("gateway.attested_remote")


def policy_from_config(config: RemoteAttestationConfig) -> VerificationPolicy:
    return VerificationPolicy(
        allow_simulated=config.allow_simulated,
        allow_debug=config.allow_debug,
        tdx_collateral=load_collateral(config.tdx_collateral) if config.tdx_collateral else None,
        snp_vcek=config.snp_vcek.read_bytes() if config.snp_vcek else None,
        snp_ask_ark=config.snp_chain.read_bytes() if config.snp_chain else None,
        snp_ark_sha256=config.snp_ark_sha256,
        expected_measurements=dict(config.expected_measurements),
    )


def pinned_context(certificate_der: bytes) -> ssl.SSLContext:
    """Trust exactly this certificate (the names in it do not matter: the key does)."""
    pem = x509.load_der_x509_certificate(certificate_der).public_bytes(serialization.Encoding.PEM)
    context = ssl.create_default_context(cadata=pem.decode("ascii"))
    context.check_hostname = False
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class AttestedRemoteUpstream:
    """An ``OpenAIUpstream`` that exists only while the remote's evidence checks out."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        config: RemoteAttestationConfig,
        timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.name = name
        self.model = model
        self._base_url = base_url
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._config = config
        self._policy = policy_from_config(config)
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._inner: OpenAIUpstream | None = None
        self._pinned: ssl.SSLContext | None = None
        self._verified_at = 0.0
        self._lock = asyncio.Lock()
        self._maintainer: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def verified(self) -> bool:
        return self._inner is not None

    async def attest(self) -> bool:
        """Verify the remote now; on success pin its key, on failure take it out."""
        async with self._lock:
            nonce = secrets.token_bytes(32)
            try:
                async with httpx.AsyncClient(
                    verify=False, timeout=self._connect_timeout * 2
                ) as probe:
                    response = await probe.get(f"{self._origin}/v1/attestation?nonce={nonce.hex()}")
                    der = _peer_certificate(response)
                if response.status_code != 200:
                    raise VerificationError(
                        f"attestation endpoint answered HTTP {response.status_code}"
                    )
                document = response.json()
                verified = await asyncio.to_thread(verify_evidence, document, nonce, self._policy)
                if spki_sha256_of_der_certificate(der) != verified.keyset.tls_spki_sha256:
                    raise VerificationError(
                        "the evidence does not bind the key this connection used"
                    )
            except (VerificationError, httpx.HTTPError, ValueError, KeyError) as exc:
                if self._inner is not None or self.last_error != str(exc):
                    log.error(
                        "remote engine %s refused: %s; no prompt will be sent to it", self.name, exc
                    )
                self.last_error = str(exc)
                await self._drop()
                return False
            previous = self._inner
            self._pinned = pinned_context(der)
            self._inner = OpenAIUpstream(
                self.name,
                base_url=self._base_url,
                model=self.model,
                verify=self._pinned,
                timeout_s=self._timeout,
                connect_timeout_s=self._connect_timeout,
                # An attested engine is one of ours: it scopes its cache per tenant too.
                forward_tenant=True,
            )
            self._verified_at = time.monotonic()
            if previous is None or self.last_error is not None:
                log.info("remote engine %s verified (%s); key pinned", self.name, verified.tee)
            self.last_error = None
            if previous is not None:
                await previous.close()
            return True

    async def _drop(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()

    def start(self, interval_s: float) -> None:
        self._maintainer = asyncio.create_task(
            self._maintain(interval_s), name=f"attest-{self.name}"
        )

    async def _maintain(self, interval_s: float) -> None:
        while True:
            due = (
                not self.verified or time.monotonic() - self._verified_at > self._config.reattest_s
            )
            if due:
                await self.attest()
            await asyncio.sleep(interval_s)

    def _require(self) -> OpenAIUpstream:
        if self._inner is None:
            raise UpstreamError(f"{self.name}: not attested", retryable=True)
        return self._inner

    async def complete(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> dict[str, Any]:
        try:
            return await self._require().complete(
                operation, body, request_id=request_id, tenant=tenant
            )
        except UpstreamError as exc:
            if exc.retryable and exc.status is None:
                await self._drop()  # connection-level failure: the key may have changed
            raise

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        inner = self._require()
        try:
            async with inner.stream(
                operation, body, request_id=request_id, tenant=tenant
            ) as events:
                yield events
        except UpstreamError as exc:
            if exc.retryable and exc.status is None:
                await self._drop()
            raise

    async def probe(self) -> bool:
        return await self.attest()

    async def health(self) -> dict[str, Any] | None:
        """The engine's ``/health`` over the pinned connection; None if unverified or down."""
        inner = self._inner
        if inner is None or self._pinned is None:
            return None
        try:
            async with httpx.AsyncClient(
                verify=self._pinned, timeout=self._connect_timeout
            ) as client:
                response = await client.get(f"{self._origin}/health")
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    async def close(self) -> None:
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self._drop()


def _peer_certificate(response: httpx.Response) -> bytes:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    if not der:
        raise VerificationError("the remote engine presented no TLS certificate")
    return bytes(der)


DESCRIPTION = UpstreamDescription("attested-remote", in_guest=False, attested=True)


def build(
    context: BuildContext, model: ModelConfig, index: int, deployment: RemoteDeployment
) -> list[BuiltMember]:
    """An engine in another confidential VM: used only while its evidence checks out."""
    from gateway.upstreams.topology import BuiltMember

    assert deployment.attestation is not None  # the config's kind says so
    remote = AttestedRemoteUpstream(
        f"{model.name}/attested-{index}",
        base_url=deployment.base_url,
        model=deployment.model or model.name,
        config=deployment.attestation,
        timeout_s=deployment.timeout_s,
        connect_timeout_s=context.config.routing.connect_timeout_s,
    )
    context.attested.append(remote)
    served = deployment.model or model.name
    member = Member(remote, DESCRIPTION, is_ready=lambda: remote.verified)
    return [BuiltMember(member, lambda: f"attested remote {deployment.base_url} (model {served})")]
