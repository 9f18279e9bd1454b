"""Real public TDX quotes and SEV-SNP reports: parsed field by field, verified, and tampered."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from confidential_common.tee.quotes import (
    EvidenceFormatError,
    parse_snp_report,
    parse_tdx_quote,
)
from gateway.attestation.snp_verify import SnpVerificationError, verify_snp_report
from gateway.attestation.tdx_verify import TdxVerificationError, verify_tdx_quote
from tests.support.shared_data import shared_data

DATA = shared_data("attestation")
EXPECTED = json.loads((DATA / "expected.json").read_text())


def load_vector(name: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return (
        bytes.fromhex(raw.decode().strip())
        if name.endswith(".txt") or name.endswith(".hex")
        else raw
    )


TDX = [v for v in EXPECTED["tdx"] if v["header"]["tee_type"] == "0x81"]
SGX = [v for v in EXPECTED["tdx"] if v["header"]["tee_type"] != "0x81"]


@pytest.mark.parametrize("vector", TDX, ids=lambda v: v["file"])
def test_tdx_quote_fields_match_the_expected_decoding(vector: dict[str, Any]) -> None:
    quote = parse_tdx_quote(load_vector(vector["file"]))
    assert quote.version == vector["quote_version"]
    assert quote.body_type == vector["body_type"]
    assert quote.body_offset == vector["body_offset"]
    assert quote.body_size == vector["body_size"]
    assert quote.signed_region_end == vector["signed_region_end"]
    assert quote.sig_data_len == vector["sig_data_len"]
    assert quote.quote_data_end == vector["quote_data_end"]
    assert quote.qe_vendor_id == vector["header"]["qe_vendor_id"]
    report = vector["td_report"]
    for name in (
        "tee_tcb_svn",
        "mr_seam",
        "mr_signer_seam",
        "seam_attributes",
        "td_attributes",
        "xfam",
        "mr_td",
        "mr_config_id",
        "mr_owner",
        "mr_owner_config",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
    ):
        assert getattr(quote, name) == report[name], name
    assert quote.report_data.hex() == report["report_data"]
    for name in ("tee_tcb_svn2", "mr_servicetd"):
        if name in report:
            assert getattr(quote, name) == report[name]


@pytest.mark.parametrize("vector", SGX, ids=lambda v: v["file"])
def test_sgx_quote_is_not_mistaken_for_tdx(vector: dict[str, Any]) -> None:
    with pytest.raises(EvidenceFormatError, match="not a TDX quote"):
        parse_tdx_quote(load_vector(vector["file"]))


def test_truncated_quote_is_refused() -> None:
    raw = load_vector(TDX[0]["file"])
    with pytest.raises(EvidenceFormatError):
        parse_tdx_quote(raw[:700])


def dcap_cases() -> list[tuple[dict[str, Any], str]]:
    out = []
    for vector in EXPECTED["tdx"]:
        if vector["header"]["tee_type"] != "0x81" or not vector.get("collateral"):
            continue
        out.append((vector, vector["collateral"]))
    return out


@pytest.mark.parametrize(("vector", "collateral"), dcap_cases(), ids=lambda v: str(v)[:40])
def test_tdx_quotes_verify_as_upstream_says_and_fail_when_tampered(
    vector: dict[str, Any], collateral: str
) -> None:
    quote = load_vector(vector["file"])
    collateral_json = (DATA / collateral).read_text()
    at_now = vector["dcap_qvl_0_7_0"]["at_upstream_now"]
    accept_all = frozenset(
        {
            "UpToDate",
            "OutOfDate",
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded",
        }
    )
    if at_now["ok"]:
        verdict = verify_tdx_quote(
            quote, collateral_json, now=at_now["now"], accepted_statuses=accept_all
        )
        assert verdict.status == at_now["status"]
        assert verdict.advisory_ids == at_now["advisory_ids"]
        tampered = bytearray(quote)
        tampered[vector["body_offset"] + 520] ^= 0x01  # one bit of REPORTDATA
        with pytest.raises(TdxVerificationError):
            verify_tdx_quote(bytes(tampered), collateral_json, now=at_now["now"])
    else:
        with pytest.raises(TdxVerificationError, match=at_now["error"].split(": ")[-1][:20]):
            verify_tdx_quote(
                quote, collateral_json, now=at_now["now"], accepted_statuses=accept_all
            )
    after = vector["dcap_qvl_0_7_0"].get("after_window")
    if after:
        with pytest.raises(TdxVerificationError):
            verify_tdx_quote(quote, collateral_json, now=after["now"], accepted_statuses=accept_all)


def snp_blob(vector: dict[str, Any]) -> bytes:
    return load_vector(vector["file"])


@pytest.mark.parametrize("vector", EXPECTED["snp"], ids=lambda v: v["file"])
def test_snp_report_fields_match_the_expected_decoding(vector: dict[str, Any]) -> None:
    report = parse_snp_report(snp_blob(vector))
    fields = vector["fields"]
    assert report.version == fields["version"]
    assert report.guest_svn == fields["guest_svn"]
    assert hex(report.policy) == fields["policy"]
    assert report.vmpl == fields["vmpl"]
    assert report.sig_algo == fields["sig_algo"]
    assert f"{report.current_tcb:#018x}" == fields["current_tcb"]
    assert f"{report.reported_tcb:#018x}" == fields["reported_tcb"]
    assert report.report_data.hex() == fields["report_data"]
    assert report.measurement == fields["measurement"]
    assert report.host_data == fields["host_data"]
    assert report.chip_id == fields["chip_id"]
    assert report.report_id == fields["report_id"]
    assert report.debug_allowed == vector["policy_debug_allowed"]
    assert report.smt_allowed == vector["policy_smt_allowed"]


@pytest.mark.parametrize("vector", EXPECTED["snp"], ids=lambda v: v["file"])
def test_snp_reports_verify_against_the_amd_chain_and_fail_when_tampered(
    vector: dict[str, Any],
) -> None:
    vcek = (DATA / vector["vcek"]).read_bytes()
    chain = (DATA / vector["ask_ark_chain"]).read_bytes()
    inside = datetime.datetime.fromisoformat(vector["vcek_not_before"].replace("Z", "+00:00"))
    now = inside + datetime.timedelta(days=1)
    raw = snp_blob(vector)
    verify_snp_report(parse_snp_report(raw), vcek=vcek, ask_ark_pem=chain, now=now)
    tampered = bytearray(raw)
    tampered[0x90] ^= 0x01  # one bit of MEASUREMENT
    with pytest.raises(SnpVerificationError):
        verify_snp_report(parse_snp_report(bytes(tampered)), vcek=vcek, ask_ark_pem=chain, now=now)
    with pytest.raises(SnpVerificationError, match="not valid at"):
        verify_snp_report(
            parse_snp_report(raw),
            vcek=vcek,
            ask_ark_pem=chain,
            now=datetime.datetime(2060, 1, 1, tzinfo=datetime.UTC),
        )
    with pytest.raises(SnpVerificationError, match="pinned"):
        verify_snp_report(
            parse_snp_report(raw),
            vcek=vcek,
            ask_ark_pem=chain,
            now=now,
            expected_ark_sha256="00" * 32,
        )
