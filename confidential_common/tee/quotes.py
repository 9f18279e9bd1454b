"""Parse hardware evidence: Intel TDX quotes (v4, v5) and AMD SEV-SNP attestation reports.

Parsing only; signatures are checked in ``tdx_verify`` and ``snp_verify``. Offsets follow
Intel's DCAP quote library and AMD's SEV-SNP ABI (table 21 of spec 56860):

TDX: a 48-byte header; v4 puts the TD report at 48, v5 puts a 6-byte body descriptor there
(type, size) and the report at 54. TD1.0 bodies are 584 bytes, TD1.5 bodies 648. The
signature-data length follows the body; bytes after the signature data are not signed and
are ignored (some real quotes carry padding or text there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TDX_TEE_TYPE = 0x81
HEADER_SIZE = 48
TD10_SIZE = 584
TD15_SIZE = 648
SNP_REPORT_SIZE = 0x4A0
SNP_SIGNED_SIZE = 0x2A0


class EvidenceFormatError(ValueError):
    """The bytes are not a well-formed quote or report."""


def _hex(data: bytes) -> str:
    return data.hex()


@dataclass(frozen=True)
class TdxQuote:
    version: int
    att_key_type: int
    tee_type: int
    qe_vendor_id: str
    body_type: int | None
    body_offset: int
    body_size: int
    signed_region_end: int
    sig_data_len: int
    quote_data_end: int
    tee_tcb_svn: str
    mr_seam: str
    mr_signer_seam: str
    seam_attributes: str
    td_attributes: str
    xfam: str
    mr_td: str
    mr_config_id: str
    mr_owner: str
    mr_owner_config: str
    rtmr0: str
    rtmr1: str
    rtmr2: str
    rtmr3: str
    report_data: bytes
    tee_tcb_svn2: str | None = None
    mr_servicetd: str | None = None

    def measurements(self) -> dict[str, str]:
        return {
            "mrtd": self.mr_td,
            "rtmr0": self.rtmr0,
            "rtmr1": self.rtmr1,
            "rtmr2": self.rtmr2,
            "rtmr3": self.rtmr3,
            "mr_seam": self.mr_seam,
            "td_attributes": self.td_attributes,
            "xfam": self.xfam,
        }


def parse_tdx_quote(quote: bytes) -> TdxQuote:
    if len(quote) < HEADER_SIZE + TD10_SIZE + 4:
        raise EvidenceFormatError(f"a TDX quote is at least {HEADER_SIZE + TD10_SIZE + 4} bytes")
    version, att_key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TDX_TEE_TYPE:
        raise EvidenceFormatError(f"not a TDX quote (tee_type {tee_type:#x}, expected 0x81)")
    qe_vendor_id = quote[12:28]
    body_type: int | None = None
    if version == 4:
        body_offset, body_size = HEADER_SIZE, TD10_SIZE
    elif version == 5:
        body_type, body_size = struct.unpack_from("<HI", quote, HEADER_SIZE)
        body_offset = HEADER_SIZE + 6
        expected = {2: TD10_SIZE, 3: TD15_SIZE}.get(body_type)
        if expected is None or body_size != expected:
            raise EvidenceFormatError(
                f"unsupported TDX v5 body (type {body_type}, size {body_size})"
            )
    else:
        raise EvidenceFormatError(f"unsupported TDX quote version {version}")
    signed_end = body_offset + body_size
    if len(quote) < signed_end + 4:
        raise EvidenceFormatError("TDX quote is truncated before its signature data")
    (sig_len,) = struct.unpack_from("<I", quote, signed_end)
    data_end = signed_end + 4 + sig_len
    if data_end > len(quote):
        raise EvidenceFormatError("TDX quote is shorter than its signature-data length says")
    b = quote[body_offset:signed_end]
    extra: dict[str, str | None] = {"tee_tcb_svn2": None, "mr_servicetd": None}
    if body_size == TD15_SIZE:
        extra = {"tee_tcb_svn2": _hex(b[584:600]), "mr_servicetd": _hex(b[600:648])}
    return TdxQuote(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_vendor_id=_hex(qe_vendor_id),
        body_type=body_type,
        body_offset=body_offset,
        body_size=body_size,
        signed_region_end=signed_end,
        sig_data_len=sig_len,
        quote_data_end=data_end,
        tee_tcb_svn=_hex(b[0:16]),
        mr_seam=_hex(b[16:64]),
        mr_signer_seam=_hex(b[64:112]),
        seam_attributes=_hex(b[112:120]),
        td_attributes=_hex(b[120:128]),
        xfam=_hex(b[128:136]),
        mr_td=_hex(b[136:184]),
        mr_config_id=_hex(b[184:232]),
        mr_owner=_hex(b[232:280]),
        mr_owner_config=_hex(b[280:328]),
        rtmr0=_hex(b[328:376]),
        rtmr1=_hex(b[376:424]),
        rtmr2=_hex(b[424:472]),
        rtmr3=_hex(b[472:520]),
        report_data=b[520:584],
        **extra,
    )


@dataclass(frozen=True)
class SnpReport:
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    sig_algo: int
    current_tcb: int
    platform_info: int
    report_data: bytes
    measurement: str
    host_data: str
    id_key_digest: str
    report_id: str
    reported_tcb: int
    chip_id: str
    committed_tcb: int
    launch_tcb: int
    signature_r: int
    signature_s: int
    signed_bytes: bytes
    cpuid_fam_id: int | None = None  # report version 3 and later

    @property
    def debug_allowed(self) -> bool:
        return bool(self.policy & (1 << 19))

    @property
    def smt_allowed(self) -> bool:
        return bool(self.policy & (1 << 16))

    def measurements(self) -> dict[str, str]:
        return {
            "measurement": self.measurement,
            "host_data": self.host_data,
            "policy": f"{self.policy:#x}",
            "chip_id": self.chip_id,
            "reported_tcb": f"{self.reported_tcb:#018x}",
        }


def parse_snp_report(report: bytes) -> SnpReport:
    if len(report) < SNP_REPORT_SIZE:
        raise EvidenceFormatError(
            f"an SEV-SNP report is {SNP_REPORT_SIZE} bytes, got {len(report)}"
        )
    report = report[:SNP_REPORT_SIZE]
    version, guest_svn, policy = struct.unpack_from("<IIQ", report, 0x00)
    vmpl, sig_algo = struct.unpack_from("<II", report, 0x30)
    (current_tcb, platform_info) = struct.unpack_from("<QQ", report, 0x38)
    (reported_tcb,) = struct.unpack_from("<Q", report, 0x180)
    (committed_tcb,) = struct.unpack_from("<Q", report, 0x1E0)
    (launch_tcb,) = struct.unpack_from("<Q", report, 0x1F0)
    if version < 2:
        raise EvidenceFormatError(f"unsupported SEV-SNP report version {version}")
    return SnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        vmpl=vmpl,
        sig_algo=sig_algo,
        current_tcb=current_tcb,
        platform_info=platform_info,
        report_data=report[0x50:0x90],
        measurement=_hex(report[0x90:0xC0]),
        host_data=_hex(report[0xC0:0xE0]),
        id_key_digest=_hex(report[0xE0:0x110]),
        report_id=_hex(report[0x140:0x160]),
        reported_tcb=reported_tcb,
        chip_id=_hex(report[0x1A0:0x1E0]),
        committed_tcb=committed_tcb,
        launch_tcb=launch_tcb,
        signature_r=int.from_bytes(report[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(report[0x2E8:0x330], "little"),
        signed_bytes=report[:SNP_SIGNED_SIZE],
        cpuid_fam_id=report[0x188] if version >= 3 else None,
    )
