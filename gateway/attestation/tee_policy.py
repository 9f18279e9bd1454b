"""What a genuine report must also say before it is trusted: not a debug guest, a recent TCB.

A correctly signed report can still describe a guest the host can read (SEV-SNP guest policy
bit 19 DEBUG; TDX TD attribute bit 0 TUD.DEBUG) or firmware with known holes. Neither is part
of the launch measurement, so pinning measurements does not exclude them; these checks do,
on parsed fields, before any signature is checked.

Default TCB floors are the oldest values among the public reports and quotes we test with
(``../shared/data/attestation``), not a statement about which firmware is safe today: raise
them to your fleet's level.

- SEV-SNP (Milan/Genoa layout): bootloader 2, tee 0, snp 5, microcode 0x44, the
  ``reported_tcb`` 0x4405000000000002 of go-sev-guest's Milan report (2022). Turin (family 1Ah)
  numbers its components differently and we hold no public Turin report, so a Turin report is
  only held to a floor that names its ``fmc`` component.
- TDX: TEE_TCB_SVN 06 01 03 00.. (each byte is compared on its own), the lowest among the
  public quotes Intel's collateral rates UpToDate (dcap-qvl ``tdx_quote``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from confidential_common.tee.quotes import SnpReport, TdxQuote

SNP_POLICY_DEBUG = 1 << 19
TDX_ATTRIBUTE_DEBUG = 1 << 0
TURIN_FAMILY = 0x1A

SNP_DEBUG_MESSAGE = (
    "guest policy allows debugging (DEBUG bit set); a debug guest's memory is readable by the "
    "host. Pass allow_debug / --allow-debug only for development."
)
TDX_DEBUG_MESSAGE = (
    "TD attributes allow debugging (TUD.DEBUG bit set); a debug TD's memory and CPU state are "
    "readable by the host. Pass allow_debug / --allow-debug only for development."
)


class TeePolicyError(Exception):
    """Genuine or not, this evidence describes a guest the policy does not accept."""


@dataclass(frozen=True)
class SnpTcb:
    """The security patch levels in an SEV-SNP TCB_VERSION."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None  # Turin only

    @classmethod
    def decode(cls, value: int, *, turin: bool = False) -> SnpTcb:
        b = value.to_bytes(8, "little")
        if turin:
            return cls(bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    @classmethod
    def of_report(cls, report: SnpReport) -> SnpTcb:
        return cls.decode(report.reported_tcb, turin=report.cpuid_fam_id == TURIN_FAMILY)

    def below(self, floor: SnpTcb) -> list[str]:
        """The components of this TCB that are lower than ``floor``'s."""
        out = []
        for f in fields(self):
            mine, least = getattr(self, f.name), getattr(floor, f.name)
            if least is not None and (mine is None or mine < least):
                out.append(f"{f.name} {mine} < {least}")
        return out


DEFAULT_SNP_MIN_TCB = SnpTcb.decode(0x4405000000000002)
DEFAULT_TDX_MIN_TEE_TCB_SVN = bytes.fromhex("06010300000000000000000000000000")


def check_snp_report(report: SnpReport, *, allow_debug: bool, min_tcb: SnpTcb | None) -> None:
    """Raise TeePolicyError for a debug guest or a reported TCB below ``min_tcb``."""
    if report.policy & SNP_POLICY_DEBUG and not allow_debug:
        raise TeePolicyError(SNP_DEBUG_MESSAGE)
    if min_tcb is None:
        return
    tcb = SnpTcb.of_report(report)
    if tcb.fmc is not None and min_tcb.fmc is None:
        return  # a Milan/Genoa floor says nothing about Turin's numbering (see module doc)
    low = tcb.below(min_tcb)
    if low:
        raise TeePolicyError(
            f"the report's reported_tcb {report.reported_tcb:#018x} is below the minimum TCB "
            f"({', '.join(low)}); the platform runs firmware older than the policy accepts"
        )


def check_tdx_quote(quote: TdxQuote, *, allow_debug: bool, min_tee_tcb_svn: bytes | None) -> None:
    """Raise TeePolicyError for a debug TD or a TEE_TCB_SVN below ``min_tee_tcb_svn``."""
    attributes = int.from_bytes(bytes.fromhex(quote.td_attributes), "little")
    if attributes & TDX_ATTRIBUTE_DEBUG and not allow_debug:
        raise TeePolicyError(TDX_DEBUG_MESSAGE)
    if min_tee_tcb_svn is None:
        return
    svn = bytes.fromhex(quote.tee_tcb_svn)
    low = [
        f"byte {i}: {have} < {least}"
        for i, (have, least) in enumerate(zip(svn, min_tee_tcb_svn, strict=False))
        if have < least
    ]
    if low:
        raise TeePolicyError(
            f"the quote's TEE_TCB_SVN {quote.tee_tcb_svn} is below the minimum "
            f"{min_tee_tcb_svn.hex()} ({', '.join(low)}); the TDX module is older than the "
            "policy accepts"
        )


def parse_snp_tcb(text: str) -> SnpTcb | None:
    """A floor from the command line: ``none``, or a raw TCB_VERSION (``0x4405000000000002``;
    ``turin:0x...`` for Turin's layout)."""
    if text.lower() == "none":
        return None
    layout, _, raw = text.rpartition(":")
    return SnpTcb.decode(int(raw, 16), turin=layout.lower() == "turin")


def parse_tdx_svn(text: str) -> bytes | None:
    """A floor from the command line: ``none`` or TEE_TCB_SVN as 32 hex digits."""
    if text.lower() == "none":
        return None
    value = bytes.fromhex(text)
    if len(value) != 16:
        raise ValueError("TEE_TCB_SVN is 16 bytes (32 hex digits)")
    return value
