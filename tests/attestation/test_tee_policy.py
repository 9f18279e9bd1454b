"""Debug guests and old TCBs are refused on parsed fields, before and apart from signatures."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from typing import Any

import pytest

from confidential_common.tee.keys import KeySet, SigningKey
from confidential_common.tee.quotes import parse_snp_report, parse_tdx_quote
from gateway.attestation.snp_verify import SnpVerificationError, verify_snp_report
from gateway.attestation.tee_policy import (
    DEFAULT_SNP_MIN_TCB,
    DEFAULT_TDX_MIN_TEE_TCB_SVN,
    SNP_DEBUG_MESSAGE,
    TDX_DEBUG_MESSAGE,
    SnpTcb,
    TeePolicyError,
    check_snp_report,
    check_tdx_quote,
    parse_snp_tcb,
    parse_tdx_svn,
)
from gateway.attestation.verifier import VerificationError, VerificationPolicy, verify_evidence
from tests.support.shared_data import shared_data

DATA = shared_data("attestation")
EXPECTED = json.loads((DATA / "expected.json").read_text())
SNP = {v["file"]: v for v in EXPECTED["snp"]}
TDX = {v["file"]: v for v in EXPECTED["tdx"] if v.get("td_report")}
DEBUG_SNP = "snp/go-sev-guest/attestation.bin"  # policy 0xb0000: a real debug guest
PLAIN_SNP = "snp/virtee-sev/report_milan.hex"  # policy 0x30000
SPR_TDX = "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"  # TEE_TCB_SVN 03 00 04
DCAP_TDX = "tdx/dcap-qvl/tdx_quote"  # TEE_TCB_SVN 06 01 03, UpToDate


def vector(name: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return bytes.fromhex(raw.decode().strip()) if name.endswith((".hex", ".txt")) else raw


def document(blob: bytes, evidence_format: str) -> dict[str, Any]:
    """An attestation document around real evidence (whose REPORTDATA binds no key set of ours)."""
    keyset = KeySet(SigningKey().jwk, "ab" * 32)
    return {
        "keyset": keyset.document(),
        "evidence": base64.b64encode(blob).decode(),
        "evidence_format": evidence_format,
    }


def snp_policy(name: str, **overrides: Any) -> VerificationPolicy:
    v = SNP[name]
    inside = datetime.datetime.fromisoformat(v["vcek_not_before"].replace("Z", "+00:00"))
    return VerificationPolicy(
        snp_vcek=(DATA / v["vcek"]).read_bytes(),
        snp_ask_ark=(DATA / v["ask_ark_chain"]).read_bytes(),
        now=lambda: (inside + datetime.timedelta(days=1)).timestamp(),
        **overrides,
    )


def with_policy_bit(raw: bytes, bit: int) -> bytes:
    out = bytearray(raw)
    policy = int.from_bytes(out[0x08:0x10], "little") | (1 << bit)
    out[0x08:0x10] = policy.to_bytes(8, "little")
    return bytes(out)


def test_the_real_debug_report_is_refused_for_being_a_debug_guest() -> None:
    raw = vector(DEBUG_SNP)
    assert parse_snp_report(raw).debug_allowed
    with pytest.raises(VerificationError, match=r"guest policy allows debugging \(DEBUG bit set\)"):
        verify_evidence(document(raw, "sev-snp-report"), b"\x00" * 32, snp_policy(DEBUG_SNP))


def test_allow_debug_lets_the_debug_report_through_to_the_next_check() -> None:
    raw = vector(DEBUG_SNP)
    with pytest.raises(VerificationError, match="does not bind") as info:
        verify_evidence(
            document(raw, "sev-snp-report"), b"\x00" * 32, snp_policy(DEBUG_SNP, allow_debug=True)
        )
    assert "debug" not in str(info.value)


def test_a_debug_bit_set_in_a_real_report_is_refused_for_debug_not_for_its_signature() -> None:
    raw = vector(PLAIN_SNP)
    forged = with_policy_bit(raw, 19)
    policy = snp_policy(PLAIN_SNP)
    # On its own the signature check catches the flipped bit too ...
    with pytest.raises(SnpVerificationError, match="signature"):
        verify_snp_report(
            parse_snp_report(forged),
            vcek=policy.snp_vcek or b"",
            ask_ark_pem=policy.snp_ask_ark or b"",
            now=datetime.datetime.fromtimestamp(policy.now(), datetime.UTC),
        )
    # ... but the verifier refuses it first, with the policy's own reason.
    with pytest.raises(VerificationError) as info:
        verify_evidence(document(forged, "sev-snp-report"), b"\x00" * 32, policy)
    assert str(info.value) == SNP_DEBUG_MESSAGE


def test_policy_check_on_parsed_snp_fields() -> None:
    report = parse_snp_report(vector(PLAIN_SNP))
    check_snp_report(report, allow_debug=False, min_tcb=DEFAULT_SNP_MIN_TCB)
    debug = dataclasses.replace(report, policy=report.policy | 1 << 19)
    with pytest.raises(TeePolicyError, match="memory is readable by the host"):
        check_snp_report(debug, allow_debug=False, min_tcb=None)
    check_snp_report(debug, allow_debug=True, min_tcb=None)
    smt_only = dataclasses.replace(report, policy=1 << 16 | 1 << 17)
    check_snp_report(smt_only, allow_debug=False, min_tcb=None)


def test_the_public_snp_reports_meet_the_default_tcb_floor() -> None:
    for name in SNP:
        report = parse_snp_report(vector(name))
        check_snp_report(report, allow_debug=True, min_tcb=DEFAULT_SNP_MIN_TCB)
    assert SnpTcb.of_report(parse_snp_report(vector(DEBUG_SNP))) == DEFAULT_SNP_MIN_TCB
    assert SnpTcb.of_report(parse_snp_report(vector(PLAIN_SNP))) == SnpTcb(3, 0, 8, 0x73)


@pytest.mark.parametrize(
    ("reported_tcb", "low"),
    [
        (0x4405000000000001, "bootloader 1 < 2"),
        (0x4404000000000002, "snp 4 < 5"),
        (0x4305000000000002, "microcode 67 < 68"),
    ],
)
def test_a_reported_tcb_below_the_floor_is_refused(reported_tcb: int, low: str) -> None:
    report = dataclasses.replace(parse_snp_report(vector(PLAIN_SNP)), reported_tcb=reported_tcb)
    with pytest.raises(TeePolicyError, match=low):
        check_snp_report(report, allow_debug=False, min_tcb=DEFAULT_SNP_MIN_TCB)
    check_snp_report(report, allow_debug=False, min_tcb=None)


def test_a_real_report_below_a_raised_floor_is_refused_even_with_its_measurement_pinned() -> None:
    raw = vector(PLAIN_SNP)
    policy = snp_policy(
        PLAIN_SNP,
        snp_min_tcb=SnpTcb(bootloader=4, tee=0, snp=8, microcode=0x73),
        expected_measurements={"measurement": SNP[PLAIN_SNP]["fields"]["measurement"]},
    )
    with pytest.raises(VerificationError, match=r"below the minimum TCB \(bootloader 3 < 4\)"):
        verify_evidence(document(raw, "sev-snp-report"), b"\x00" * 32, policy)


def test_turin_tcb_layout_and_floor() -> None:
    tcb = SnpTcb.decode(0x3000000000050201, turin=True)
    assert tcb == SnpTcb(bootloader=2, tee=5, snp=0, microcode=0x30, fmc=1)
    turin = dataclasses.replace(
        parse_snp_report(vector(PLAIN_SNP)), version=3, cpuid_fam_id=0x1A, reported_tcb=0x10000001
    )
    # A Milan/Genoa floor does not apply to Turin's numbering; a Turin floor does.
    check_snp_report(turin, allow_debug=False, min_tcb=DEFAULT_SNP_MIN_TCB)
    with pytest.raises(TeePolicyError, match="microcode 0 < 48"):
        check_snp_report(turin, allow_debug=False, min_tcb=tcb)


def test_policy_check_on_parsed_tdx_fields() -> None:
    quote = parse_tdx_quote(vector(DCAP_TDX))
    check_tdx_quote(quote, allow_debug=False, min_tee_tcb_svn=DEFAULT_TDX_MIN_TEE_TCB_SVN)
    debug = dataclasses.replace(quote, td_attributes="0100001000000000")
    with pytest.raises(TeePolicyError) as info:
        check_tdx_quote(debug, allow_debug=False, min_tee_tcb_svn=None)
    assert str(info.value) == TDX_DEBUG_MESSAGE
    check_tdx_quote(debug, allow_debug=True, min_tee_tcb_svn=None)


def test_a_tdx_debug_bit_set_in_a_real_quote_is_refused_before_collateral_or_signature() -> None:
    quote = parse_tdx_quote(vector(DCAP_TDX))
    forged = bytearray(vector(DCAP_TDX))
    forged[quote.body_offset + 120] |= 0x01  # TD_ATTRIBUTES bit 0: TUD.DEBUG
    policy = VerificationPolicy()  # no collateral at all: the policy check comes first
    with pytest.raises(VerificationError, match=r"TD attributes allow debugging"):
        verify_evidence(document(bytes(forged), "tdx-quote"), b"\x00" * 32, policy)


def test_the_real_quotes_are_not_debug_tds() -> None:
    for name in TDX:
        check_tdx_quote(parse_tdx_quote(vector(name)), allow_debug=False, min_tee_tcb_svn=None)


def test_a_real_tdx_quote_below_the_default_floor_is_refused() -> None:
    spr = parse_tdx_quote(vector(SPR_TDX))
    with pytest.raises(TeePolicyError, match=r"byte 0: 3 < 6, byte 1: 0 < 1"):
        check_tdx_quote(spr, allow_debug=False, min_tee_tcb_svn=DEFAULT_TDX_MIN_TEE_TCB_SVN)
    policy = VerificationPolicy(expected_measurements={"mrtd": spr.mr_td})
    with pytest.raises(VerificationError, match="TEE_TCB_SVN 03000400"):
        verify_evidence(document(vector(SPR_TDX), "tdx-quote"), b"\x00" * 32, policy)
    check_tdx_quote(spr, allow_debug=False, min_tee_tcb_svn=None)


def test_the_default_tdx_floor_is_met_by_the_quotes_intel_rates_up_to_date() -> None:
    for name in (
        DCAP_TDX,
        "tdx/dcap-qvl/near_quote_hex.txt",
        "tdx/go-tdx-guest/quote_v5_sample.dat",
    ):
        quote = parse_tdx_quote(vector(name))
        check_tdx_quote(quote, allow_debug=False, min_tee_tcb_svn=DEFAULT_TDX_MIN_TEE_TCB_SVN)


def test_floors_from_the_command_line() -> None:
    assert parse_snp_tcb("0x4405000000000002") == DEFAULT_SNP_MIN_TCB
    assert parse_snp_tcb("none") is None
    assert parse_snp_tcb("turin:0x3000000000050201") == SnpTcb(2, 5, 0, 0x30, fmc=1)
    assert parse_tdx_svn("06010300000000000000000000000000") == DEFAULT_TDX_MIN_TEE_TCB_SVN
    assert parse_tdx_svn("NONE") is None
    with pytest.raises(ValueError, match="16 bytes"):
        parse_tdx_svn("0601")


def test_the_verify_cli_refuses_debug_guests_unless_told_and_takes_tcb_floors() -> None:
    from gateway.attestation.verify_cli import policy_from_args
    from gateway.cli import build_parser

    base = ["verify", "--url", "https://gw:8443"]
    default = policy_from_args(build_parser().parse_args(base))
    assert default.allow_debug is False
    assert default.snp_min_tcb == DEFAULT_SNP_MIN_TCB
    assert default.tdx_min_tee_tcb_svn == DEFAULT_TDX_MIN_TEE_TCB_SVN
    floors = ["--snp-min-tcb", "0x7308000000000003", "--tdx-min-tee-tcb-svn", "none"]
    dev = policy_from_args(build_parser().parse_args([*base, "--allow-debug", *floors]))
    assert dev.allow_debug is True
    assert dev.snp_min_tcb == SnpTcb(3, 0, 8, 0x73)
    assert dev.tdx_min_tee_tcb_svn is None
    with pytest.raises(SystemExit, match="bad TCB floor"):
        policy_from_args(build_parser().parse_args([*base, "--tdx-min-tee-tcb-svn", "06"]))
