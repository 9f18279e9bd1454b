"""Where evidence comes from: the kernel's configfs-tsm interface, or a labelled simulation.

(In a Confidential Containers pod, where a container cannot reach configfs-tsm, the guest's
Attestation Agent collects it: ``attestation_agent``, provider ``aa``.)

configfs-tsm (Linux 6.7+) serves TDX and SEV-SNP guests alike: make a directory under
``/sys/kernel/config/tsm/report``, write 64 bytes of report data to ``inblob``, read the
quote or report from ``outblob``. The ``generation`` counter tells whether anyone else wrote
``inblob`` in between (then the outblob is not ours and we try again); ``provider`` names
the hardware. Each collection uses its own directory, removed afterwards.

``SimulatedProvider`` is for machines without a TEE. Its evidence is a JSON document signed
by a key generated in this process: it proves nothing about hardware, says so in its
``warning`` field, and every token it backs carries ``tee: "simulated"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from confidential_common.tee.keys import b64url, canonical_json
from confidential_common.tee.quotes import EvidenceFormatError, parse_snp_report, parse_tdx_quote

CONFIGFS_TSM = Path("/sys/kernel/config/tsm/report")
SIMULATED_WARNING = "SIMULATED EVIDENCE: no hardware TEE vouches for this key. Not for production."
_MAX_ATTEMPTS = 5


class AttestationUnavailable(Exception):
    """Evidence could not be produced (no TEE, or the kernel interface failed)."""


@dataclass(frozen=True)
class Evidence:
    tee: str  # "tdx" | "sev-snp" | "simulated"
    format: str  # "tdx-quote" | "sev-snp-report" | "simulated-v1"
    blob: bytes
    report_data: bytes
    measurements: dict[str, str]
    aux: bytes | None = None
    extra: dict[str, str] = field(default_factory=dict)


class EvidenceProvider(Protocol):
    tee: str

    def collect(self, report_data: bytes) -> Evidence: ...


class TsmFilesystem:
    """The file operations configfs-tsm needs; tests substitute a double of the kernel."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb", buffering=0) as handle:
            handle.write(data)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def exists(self, path: Path) -> bool:
        return path.exists()


def _evidence_from_blob(provider: str, blob: bytes, aux: bytes | None) -> Evidence:
    try:
        if provider == "tdx_guest":
            quote = parse_tdx_quote(blob)
            return Evidence("tdx", "tdx-quote", blob, quote.report_data, quote.measurements(), aux)
        if provider == "sev_guest":
            report = parse_snp_report(blob)
            return Evidence(
                "sev-snp", "sev-snp-report", blob, report.report_data, report.measurements(), aux
            )
    except EvidenceFormatError as exc:
        raise AttestationUnavailable(f"configfs-tsm returned malformed evidence: {exc}") from None
    raise AttestationUnavailable(f"configfs-tsm provider {provider!r} is not supported")


class ConfigfsTsmProvider:
    def __init__(
        self,
        *,
        base: Path = CONFIGFS_TSM,
        fs: TsmFilesystem | None = None,
        expected_tee: str | None = None,
    ) -> None:
        self._base = base
        self._fs = fs or TsmFilesystem()
        if not self._fs.exists(base):
            raise AttestationUnavailable(
                f"{base} does not exist: this machine is not a TDX or SEV-SNP guest with "
                "configfs-tsm (Linux 6.7+, configfs mounted)"
            )
        probe = self.collect(bytes(64))
        if expected_tee is not None and probe.tee != expected_tee:
            raise AttestationUnavailable(
                f"configured for {expected_tee} but the hardware provides {probe.tee}"
            )
        self.tee = probe.tee

    def collect(self, report_data: bytes) -> Evidence:
        if len(report_data) != 64:
            raise ValueError("report data must be 64 bytes")
        for _ in range(_MAX_ATTEMPTS):
            entry = self._base / f"report-{uuid.uuid4().hex}"
            try:
                self._fs.mkdir(entry)
            except OSError as exc:
                raise AttestationUnavailable(f"cannot create {entry}: {exc.strerror}") from None
            try:
                self._fs.write(entry / "inblob", report_data)
                provider = self._fs.read(entry / "provider").decode().strip()
                blob = self._fs.read(entry / "outblob")
                aux = (
                    self._fs.read(entry / "auxblob") if self._fs.exists(entry / "auxblob") else None
                )
                generation = int(self._fs.read(entry / "generation").decode().strip() or "0")
            except OSError as exc:
                raise AttestationUnavailable(
                    f"configfs-tsm report failed: {exc.strerror or exc}"
                ) from None
            finally:
                with contextlib.suppress(OSError):
                    self._fs.rmdir(entry)
            if generation != 1:
                continue  # someone else wrote inblob between our write and read: not our report
            evidence = _evidence_from_blob(provider, blob, aux or None)
            if evidence.report_data != report_data:
                raise AttestationUnavailable("the hardware report does not carry our report data")
            return evidence
        raise AttestationUnavailable("configfs-tsm kept changing under us; giving up")


def code_measurement(roots: list[Path]) -> str:
    """SHA-256 over the sorted (path, content digest) pairs of the Python sources served."""
    digest = hashlib.sha256()
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class SimulatedProvider:
    tee = "simulated"

    def __init__(self, measurement: str) -> None:
        self._platform_key = ed25519.Ed25519PrivateKey.generate()
        self._measurement = measurement

    def collect(self, report_data: bytes) -> Evidence:
        document = {
            "format": "simulated-v1",
            "tee": "simulated",
            "warning": SIMULATED_WARNING,
            "report_data": report_data.hex(),
            "measurements": {"code_sha256": self._measurement},
            "platform_key": b64url(self._platform_key.public_key().public_bytes_raw()),
        }
        signed = canonical_json(document)
        blob = json.dumps(
            {**document, "signature": b64url(self._platform_key.sign(signed))}, sort_keys=True
        ).encode()
        return Evidence(
            "simulated",
            "simulated-v1",
            blob,
            report_data,
            dict(document["measurements"]),  # type: ignore[arg-type]
            extra={"warning": SIMULATED_WARNING},
        )


def select_provider(
    kind: str, *, code_roots: list[Path], base: Path = CONFIGFS_TSM, aa_url: str | None = None
) -> EvidenceProvider:
    """The provider a config asks for; never falls back from hardware to simulation.

    ``aa``: the guest's Attestation Agent through its REST API (``attestation_agent``), for
    containers in a Confidential Containers pod, at ``aa_url`` (default its loopback address).
    """
    if kind == "simulated":
        return SimulatedProvider(code_measurement(code_roots))
    if kind == "aa":
        from confidential_common.tee import attestation_agent  # it builds on this module

        return attestation_agent.AttestationAgentProvider(
            url=aa_url or attestation_agent.DEFAULT_AA_URL
        )
    expected = {"tdx": "tdx", "sev-snp": "sev-snp", "auto": None}[kind]
    return ConfigfsTsmProvider(base=base, expected_tee=expected)
