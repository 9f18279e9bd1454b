"""Read the evidence Confidential Containers' Attestation Agent answers, back into raw bytes.

What the AA's ``get_evidence`` returns is its primary attester's evidence as compact JSON
(guest-components ``attestation-agent/attester``, read at v0.21.0):

- Intel TDX (``tdx/mod.rs``): ``{"cc_eventlog": base64 or null, "quote": base64}``; the quote
  is what configfs-tsm produced, so it parses and verifies like ours.
- AMD SEV-SNP (``snp/mod.rs``): ``{"attestation_report": {...}, "cert_chain": [...] or
  null}``, the report as the ``sev`` crate (6.x, also 7.x) serialises its parsed
  ``AttestationReport``: named fields, byte arrays as JSON lists of numbers, reserved bytes
  dropped. ``snp_report_bytes`` writes the 1184-byte report back the way the crate's own
  ``write_bytes`` does before it checks the VCEK signature (reserved bytes are zero, as the
  firmware leaves them), and ``cert_table`` rebuilds configfs-tsm's ``auxblob`` layout (the
  GHCB certificate table) from ``cert_chain``.
- The ``sample`` attester (no TEE: ``{"svn", "report_data"}``) is refused: it is not hardware.

Anything else (another attester, a newer field this module does not know) is refused with what
was found: a report rebuilt without a field would only fail verification later, far from here.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any

SNP_REPORT_SIZE = 0x4A0
_CERT_ENTRY_SIZE = 24
CERT_GUIDS = {
    "ARK": "c0b406a4-a803-4952-9743-3fb6014cd0ae",
    "ASK": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    "VCEK": "63da758d-e664-4564-adc5-f4b93be8accd",
    "VLEK": "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
    "CRL": "92f81bc3-5811-4d3d-97ff-d19f88dc67ea",
}
_TCB_FIELDS = {"fmc", "bootloader", "tee", "snp", "microcode"}
# The sev crate's AttestationReport fields; the optional ones exist only in some versions.
_REPORT_FIELDS = {
    "version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "sig_algo",
    "current_tcb", "plat_info", "key_info", "report_data", "measurement", "host_data",
    "id_key_digest", "author_key_digest", "report_id", "report_id_ma", "reported_tcb",
    "cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "chip_id", "committed_tcb", "current",
    "committed", "launch_tcb", "launch_mit_vector", "current_mit_vector", "signature",
}  # fmt: skip
_OPTIONAL_FIELDS = {
    "cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "launch_mit_vector", "current_mit_vector",
}  # fmt: skip


class AaEvidenceError(ValueError):
    """The Attestation Agent's answer is not evidence this module can read."""


@dataclass(frozen=True)
class AaEvidence:
    tee: str  # "tdx" | "sev-snp"
    blob: bytes  # the TDX quote or the SEV-SNP report, raw
    aux: bytes | None  # SEV-SNP: the certificate table, as configfs-tsm's auxblob


def decode_aa_evidence(body: bytes) -> AaEvidence:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AaEvidenceError("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise AaEvidenceError(f"the answer is JSON {type(document).__name__}, not an object")
    if "quote" in document:
        return _tdx(document)
    if "attestation_report" in document:
        return _snp(document)
    if {"svn", "report_data"} <= document.keys():
        raise AaEvidenceError(
            "the Attestation Agent runs its sample attester (no TEE hardware found in this "
            "guest); that is not hardware evidence. Outside a TEE use provider 'simulated'"
        )
    keys = ", ".join(sorted(map(str, document))[:8])
    raise AaEvidenceError(
        f"unknown evidence shape (keys: {keys or 'none'}); this provider reads the AA's tdx and "
        "snp attesters"
    )


def _tdx(document: dict[str, Any]) -> AaEvidence:
    quote = document["quote"]
    if not isinstance(quote, str):
        raise AaEvidenceError("TDX evidence: 'quote' is not a base64 string")
    try:
        blob = base64.b64decode(quote, validate=True)
    except binascii.Error:
        raise AaEvidenceError("TDX evidence: 'quote' is not valid base64") from None
    # cc_eventlog (CCEL, plus the AA's own log) is not carried: our verifiers read the RTMRs.
    return AaEvidence("tdx", blob, None)


def _snp(document: dict[str, Any]) -> AaEvidence:
    report = document["attestation_report"]
    if not isinstance(report, dict):
        raise AaEvidenceError("SNP evidence: 'attestation_report' is not an object")
    chain = document.get("cert_chain")
    if chain is not None and not isinstance(chain, list):
        raise AaEvidenceError("SNP evidence: 'cert_chain' is neither a list nor null")
    return AaEvidence("sev-snp", snp_report_bytes(report), cert_table(chain) if chain else None)


def _int(report: dict[str, Any], name: str, size: int) -> int:
    value = report.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise AaEvidenceError(f"SNP report field {name!r} is not a {8 * size}-bit unsigned number")
    return value


def _bytes(value: object, length: int, name: str) -> bytes:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value)
    ):
        raise AaEvidenceError(f"SNP report field {name!r} is not {length} bytes")
    return bytes(value)


def _tcb(value: object, name: str) -> bytes:
    """A TcbVersion in its 8 bytes: Turin's layout when it has an FMC SVN, else Milan/Genoa's."""
    if not isinstance(value, dict) or not _TCB_FIELDS - {"fmc"} <= set(value) <= _TCB_FIELDS:
        raise AaEvidenceError(f"SNP report field {name!r} is not a TCB version")
    part = {k: _int(value, k, 1) for k in _TCB_FIELDS - {"fmc"}}
    if value.get("fmc") is None:
        return bytes([part["bootloader"], part["tee"], 0, 0, 0, 0, part["snp"], part["microcode"]])
    fmc = _int(value, "fmc", 1)
    return bytes([fmc, part["bootloader"], part["tee"], part["snp"], 0, 0, 0, part["microcode"]])


def _version(value: object, name: str) -> bytes:
    if not isinstance(value, dict) or set(value) != {"major", "minor", "build"}:
        raise AaEvidenceError(f"SNP report field {name!r} is not a firmware version")
    return bytes([_int(value, "build", 1), _int(value, "minor", 1), _int(value, "major", 1)])


def _optional(report: dict[str, Any], name: str, size: int) -> int:
    return 0 if report.get(name) is None else _int(report, name, size)


def snp_report_bytes(report: dict[str, Any]) -> bytes:
    """The raw SEV-SNP attestation report (AMD SEV-SNP ABI, table 22) from the sev crate's
    serialised form."""
    unknown = set(report) - _REPORT_FIELDS
    missing = _REPORT_FIELDS - _OPTIONAL_FIELDS - set(report)
    if unknown or missing:
        raise AaEvidenceError(
            "SNP report fields differ from the sev crate's AttestationReport "
            f"(unknown: {sorted(unknown)[:5]}, missing: {sorted(missing)[:5]})"
        )
    version = _int(report, "version", 4)
    if version < 2:
        raise AaEvidenceError(f"unsupported SEV-SNP report version {version}")
    signature = report["signature"]
    if not isinstance(signature, dict) or set(signature) != {"r", "s"}:
        raise AaEvidenceError("SNP report field 'signature' is not {r, s}")
    out = bytearray(SNP_REPORT_SIZE)
    struct.pack_into(
        "<IIQ", out, 0x00, version, _int(report, "guest_svn", 4), _int(report, "policy", 8)
    )
    out[0x10:0x20] = _bytes(report["family_id"], 16, "family_id")
    out[0x20:0x30] = _bytes(report["image_id"], 16, "image_id")
    struct.pack_into("<II", out, 0x30, _int(report, "vmpl", 4), _int(report, "sig_algo", 4))
    out[0x38:0x40] = _tcb(report["current_tcb"], "current_tcb")
    struct.pack_into("<QI", out, 0x40, _int(report, "plat_info", 8), _int(report, "key_info", 4))
    for offset, name, length in (
        (0x50, "report_data", 64),
        (0x90, "measurement", 48),
        (0xC0, "host_data", 32),
        (0xE0, "id_key_digest", 48),
        (0x110, "author_key_digest", 48),
        (0x140, "report_id", 32),
        (0x160, "report_id_ma", 32),
        (0x1A0, "chip_id", 64),
    ):
        out[offset : offset + length] = _bytes(report[name], length, name)
    out[0x180:0x188] = _tcb(report["reported_tcb"], "reported_tcb")
    if version >= 3:  # the CPUID family, model and stepping came with version 3
        out[0x188] = _optional(report, "cpuid_fam_id", 1)
        out[0x189] = _optional(report, "cpuid_mod_id", 1)
        out[0x18A] = _optional(report, "cpuid_step", 1)
    out[0x1E0:0x1E8] = _tcb(report["committed_tcb"], "committed_tcb")
    out[0x1E8:0x1EB] = _version(report["current"], "current")
    out[0x1EC:0x1EF] = _version(report["committed"], "committed")
    out[0x1F0:0x1F8] = _tcb(report["launch_tcb"], "launch_tcb")
    if version >= 5:  # the mitigation vectors came with version 5
        struct.pack_into(
            "<QQ",
            out,
            0x1F8,
            _optional(report, "launch_mit_vector", 8),
            _optional(report, "current_mit_vector", 8),
        )
    out[0x2A0:0x2E8] = _bytes(signature["r"], 72, "signature.r")
    out[0x2E8:0x330] = _bytes(signature["s"], 72, "signature.s")
    return bytes(out)


def _cert_guid(cert_type: object) -> bytes:
    if isinstance(cert_type, str) and cert_type in CERT_GUIDS:
        return uuid.UUID(CERT_GUIDS[cert_type]).bytes
    if isinstance(cert_type, dict) and set(cert_type) == {"OTHER"}:
        try:
            return uuid.UUID(str(cert_type["OTHER"])).bytes
        except ValueError:
            pass
    raise AaEvidenceError(f"SNP cert_chain: unknown certificate type {str(cert_type)[:60]!r}")


def cert_table(chain: list[Any]) -> bytes:
    """The GHCB certificate table (GUID, offset, length; a zero entry; then the certificates),
    the layout configfs-tsm's ``auxblob`` and the SNP extended-report ioctl use."""
    entries = [e for e in chain if not (isinstance(e, dict) and e.get("cert_type") == "Empty")]
    header, data = bytearray(), bytearray()
    offset = _CERT_ENTRY_SIZE * (len(entries) + 1)
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"cert_type", "data"}:
            raise AaEvidenceError("SNP cert_chain entries are {cert_type, data}")
        raw = entry["data"]
        if not isinstance(raw, list):
            raise AaEvidenceError("SNP cert_chain: a certificate's data is not a byte list")
        certificate = _bytes(raw, len(raw), "cert_chain.data")
        header += _cert_guid(entry["cert_type"]) + struct.pack("<II", offset, len(certificate))
        data += certificate
        offset += len(certificate)
    return bytes(header + bytes(_CERT_ENTRY_SIZE) + data)
