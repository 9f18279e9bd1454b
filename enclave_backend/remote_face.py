"""The engine's face for gateways on other machines: TLS with an in-guest key, and evidence.

The TLS key pair is generated in memory at start-up (the private key never touches the
disk), and ``/v1/attestation?nonce=`` returns the guest's evidence binding that key's
SubjectPublicKeyInfo, produced by the same provider code as the gateway's. A gateway sends a
prompt only after verifying that evidence and pinning this key.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.attestation.providers import AttestationUnavailable, select_provider
from gateway.attestation.service import AttestationService
from gateway.config import TLSConfig
from gateway.tls import TLSIdentity, TLSSetupError, load_identity

if TYPE_CHECKING:
    from enclave_backend.server import EngineSettings

CODE_ROOTS = [Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "gateway"]


class RemoteFaceError(Exception):
    pass


@dataclass
class RemoteFace:
    identity: TLSIdentity
    attestation: AttestationService

    @classmethod
    def create(cls, settings: EngineSettings) -> RemoteFace:
        cert_out = Path(tempfile.gettempdir()) / f"enclave-backend-{settings.tls_port}-cert.pem"
        try:
            identity = load_identity(TLSConfig(names=list(settings.tls_names), cert_out=cert_out))
        except TLSSetupError as exc:
            raise RemoteFaceError(str(exc)) from None
        try:
            provider = select_provider(settings.attestation, code_roots=CODE_ROOTS)
            attestation = AttestationService(
                provider,
                tls_spki_sha256=identity.spki_sha256,
                issuer="enclave-backend",
                token_ttl_s=600,
                store_ttl_s=1,
            )
        except AttestationUnavailable as exc:
            raise RemoteFaceError(f"attestation ({settings.attestation}): {exc}") from None
        return cls(identity, attestation)

    def evidence_document(self, nonce_hex: str | None) -> dict[str, Any]:
        return self.attestation.evidence_document(nonce_hex)
