"""TEE evidence in the shapes Trustee's verifiers read, bound to the KBS runtime data.

The KBS binds its challenge nonce and our ephemeral public key through the runtime data
``{"tee-pubkey": ..., "nonce": ..., "additional-evidence": ...}``: its canonical JSON (sorted
keys, no whitespace), hashed with SHA-384, is what the evidence's report data must carry
(Trustee's attestation service, ``parse_runtime_data``; the TDX verifier pads it with zeros to
the 64 bytes of REPORTDATA, the sample verifier compares the 48 bytes as they are).

- Intel TDX: ``{"quote": base64, "cc_eventlog": base64 or null}`` (Trustee's TdxEvidence),
  the quote from configfs-tsm, the event log from the ACPI CCEL table when readable.
- The simulated TEE: Trustee's ``sample`` evidence ``{"svn", "report_data"}``, which a real
  Trustee accepts only when its policy trusts the sample attester, plus our labelled simulated
  document under ``simulated`` (its measurements; it proves nothing about hardware).
- AMD SEV-SNP: Trustee expects the report as the ``sev`` crate serialises it; not produced
  here yet. SNP pods use the ``cdh`` broker, where the guest components attest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from confidential_common.key_broker.base import KeyReleaseError
from confidential_common.tee.keys import canonical_json
from confidential_common.tee.providers import AttestationUnavailable, EvidenceProvider

CCEL_TABLE = Path("/sys/firmware/acpi/tables/data/CCEL")
SAMPLE_SVN = "1"


def runtime_data_digest(runtime_data: dict[str, Any]) -> bytes:
    return hashlib.sha384(canonical_json(runtime_data)).digest()


def kbs_tee(provider: EvidenceProvider) -> str:
    """The KBS ``tee`` word for a provider (kbs-types' names)."""
    if provider.tee == "tdx":
        return "tdx"
    if provider.tee == "simulated":
        return "sample"
    raise KeyReleaseError(
        f"the KBS client does not produce {provider.tee} evidence in Trustee's format yet; "
        "in an SEV-SNP Confidential Containers pod use key_broker kind 'cdh' (the guest "
        "components attest to the KBS)"
    )


def _event_log() -> str | None:
    try:
        return base64.b64encode(CCEL_TABLE.read_bytes()).decode()
    except OSError:
        return None


def kbs_evidence(provider: EvidenceProvider, digest: bytes) -> dict[str, Any]:
    """Evidence whose report data carries ``digest`` (48 bytes), in the provider's KBS shape."""
    tee = kbs_tee(provider)
    try:
        evidence = provider.collect(digest.ljust(64, b"\0"))
    except AttestationUnavailable as exc:
        raise KeyReleaseError(f"cannot produce TEE evidence for the key broker: {exc}") from None
    if tee == "tdx":
        return {"quote": base64.b64encode(evidence.blob).decode(), "cc_eventlog": _event_log()}
    return {
        "svn": SAMPLE_SVN,
        "report_data": base64.b64encode(digest).decode(),
        "simulated": json.loads(evidence.blob),
    }
