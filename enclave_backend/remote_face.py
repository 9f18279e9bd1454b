"""The engine's face for gateways on other machines: TLS with an in-guest key, and evidence.

The TLS key pair is generated in memory at start-up (the private key never touches the
disk), and ``/v1/attestation?nonce=`` returns the guest's evidence binding that key's
SubjectPublicKeyInfo, produced by the same provider code as the gateway's
(``confidential_common.tee``). A gateway sends a prompt only after verifying that evidence
and pinning this key.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import confidential_common
from confidential_common.tee.evidence import EvidenceService
from confidential_common.tee.providers import AttestationUnavailable, select_provider
from confidential_common.tls import TLSIdentity, TLSSetupError, generated_identity

if TYPE_CHECKING:
    from enclave_backend.settings import EngineSettings

# The code this process runs: the engine and the package it shares with the gateway.
CODE_ROOTS = [
    Path(__file__).resolve().parent,
    Path(confidential_common.__file__).resolve().parent,
]


class RemoteFaceError(Exception):
    pass


@dataclass
class RemoteFace:
    identity: TLSIdentity
    attestation: EvidenceService

    @classmethod
    def create(cls, settings: EngineSettings) -> RemoteFace:
        cert_out = Path(tempfile.gettempdir()) / f"enclave-backend-{settings.tls_port}-cert.pem"
        try:
            identity = generated_identity(list(settings.tls_names), cert_out)
        except TLSSetupError as exc:
            raise RemoteFaceError(str(exc)) from None
        try:
            provider = select_provider(settings.attestation, code_roots=CODE_ROOTS)
            attestation = EvidenceService(provider, tls_spki_sha256=identity.spki_sha256)
        except AttestationUnavailable as exc:
            raise RemoteFaceError(f"attestation ({settings.attestation}): {exc}") from None
        return cls(identity, attestation)

    def evidence_document(self, nonce_hex: str | None) -> dict[str, Any]:
        return self.attestation.evidence_document(nonce_hex)
