"""Evidence through the Confidential Containers Attestation Agent's REST API (provider ``aa``),
against a real test AA process (tests/support/aa_server.py) serving public quotes and reports."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from confidential_common.tee import attestation_agent
from confidential_common.tee.aa_evidence import CERT_GUIDS, AaEvidenceError, snp_report_bytes
from confidential_common.tee.attestation_agent import AttestationAgentProvider
from confidential_common.tee.keys import report_data_for
from confidential_common.tee.providers import AttestationUnavailable, select_provider
from confidential_common.tee.quotes import parse_snp_report, parse_tdx_quote
from gateway.attestation.snp_verify import verify_snp_report
from gateway.attestation.tdx_verify import verify_tdx_quote
from gateway.attestation.token import ResponseFacts
from gateway.attestation.verifier import VerificationError, VerificationPolicy, verify_evidence
from tests.support.aa_server import (
    aa_server_process,
    decode_runtime_data,
    snp_report_document,
    write_control,
)
from tests.support.kbs_process import ServerProcess
from tests.support.shared_data import shared_data

DATA = shared_data("attestation")
EXPECTED = json.loads((DATA / "expected.json").read_text())
TDX_VECTOR = next(v for v in EXPECTED["tdx"] if v["file"] == "tdx/dcap-qvl/tdx_quote")
SNP_VECTOR = next(v for v in EXPECTED["snp"] if v["file"] == "snp/virtee-sev/report_milan.hex")
TDX_TEMPLATE = (DATA / TDX_VECTOR["file"]).read_bytes()
SNP_TEMPLATE = bytes.fromhex((DATA / SNP_VECTOR["file"]).read_text().strip())
BINDING = report_data_for("ab" * 32, b"client nonce")


@pytest.fixture(scope="module")
def tdx_aa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    directory = tmp_path_factory.mktemp("aa-tdx")
    with aa_server_process("tdx", DATA / TDX_VECTOR["file"], directory) as server:
        yield server


@pytest.fixture(scope="module")
def snp_aa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    directory = tmp_path_factory.mktemp("aa-snp")
    vcek = DATA / SNP_VECTOR["vcek"]
    with aa_server_process("sev-snp", DATA / SNP_VECTOR["file"], directory, vcek=vcek) as server:
        yield server


@pytest.fixture
def tdx(tdx_aa: tuple[ServerProcess, Path]) -> Iterator[tuple[str, Path]]:
    """The TDX test AA's URL and control file, faithful again after each test."""
    server, control = tdx_aa
    yield server.url, control
    control.unlink(missing_ok=True)


def test_tdx_evidence_from_the_aa_carries_our_report_data(tdx: tuple[str, Path]) -> None:
    provider = AttestationAgentProvider(url=tdx[0])
    evidence = provider.collect(BINDING)
    assert provider.tee == evidence.tee == "tdx" and evidence.format == "tdx-quote"
    assert evidence.report_data == BINDING == parse_tdx_quote(evidence.blob).report_data
    assert evidence.measurements["mrtd"] == TDX_VECTOR["td_report"]["mr_td"]
    assert evidence.aux is None and "warning" not in evidence.extra


def test_the_aa_quote_is_the_hardware_quote_byte_for_byte(tdx: tuple[str, Path]) -> None:
    # Asked for the template's own report data, the AA answers the template unchanged: the
    # quote it hands over verifies against Intel's collateral as the kernel's quote does.
    own = parse_tdx_quote(TDX_TEMPLATE).report_data
    evidence = AttestationAgentProvider(url=tdx[0]).collect(own)
    assert evidence.blob == TDX_TEMPLATE
    at_now = TDX_VECTOR["dcap_qvl_0_7_0"]["at_upstream_now"]
    collateral = (DATA / TDX_VECTOR["collateral"]).read_text()
    verdict = verify_tdx_quote(evidence.blob, collateral, now=at_now["now"])
    assert verdict.status == at_now["status"]


@pytest.fixture
def snp(snp_aa: tuple[ServerProcess, Path]) -> Iterator[tuple[str, Path]]:
    server, control = snp_aa
    yield server.url, control
    control.unlink(missing_ok=True)


def _cert_table_entries(table: bytes) -> dict[str, bytes]:
    entries, at = {}, 0
    while table[at : at + 16] != bytes(16):
        offset, length = struct.unpack_from("<II", table, at + 16)
        entries[str(uuid.UUID(bytes=table[at : at + 16]))] = table[offset : offset + length]
        at += 24
    return entries


def test_snp_evidence_from_the_aa_carries_our_report_data_and_the_vcek(
    snp: tuple[str, Path],
) -> None:
    provider = AttestationAgentProvider(url=snp[0], expected_tee="sev-snp")
    evidence = provider.collect(BINDING)
    assert evidence.tee == "sev-snp" and evidence.format == "sev-snp-report"
    assert evidence.report_data == BINDING == parse_snp_report(evidence.blob).report_data
    assert evidence.measurements["measurement"] == SNP_VECTOR["fields"]["measurement"]
    assert evidence.aux is not None
    vcek = _cert_table_entries(evidence.aux)[CERT_GUIDS["VCEK"]]
    assert vcek == (DATA / SNP_VECTOR["vcek"]).read_bytes()


def test_the_rebuilt_snp_report_verifies_against_the_amd_chain(snp: tuple[str, Path]) -> None:
    # The sev crate's JSON drops reserved bytes; rebuilt as its write_bytes does, the report
    # is the firmware's byte for byte and its VCEK signature holds.
    own = parse_snp_report(SNP_TEMPLATE).report_data
    evidence = AttestationAgentProvider(url=snp[0]).collect(own)
    assert evidence.blob == SNP_TEMPLATE
    inside = datetime.datetime.fromisoformat(SNP_VECTOR["vcek_not_before"].replace("Z", "+00:00"))
    verify_snp_report(
        parse_snp_report(evidence.blob),
        vcek=(DATA / SNP_VECTOR["vcek"]).read_bytes(),
        ask_ark_pem=(DATA / SNP_VECTOR["ask_ark_chain"]).read_bytes(),
        now=inside + datetime.timedelta(days=1),
    )


@pytest.mark.parametrize("vector", EXPECTED["snp"], ids=lambda v: v["file"])
def test_the_sev_crate_form_round_trips_every_public_report(vector: dict[str, object]) -> None:
    raw = (DATA / str(vector["file"])).read_bytes()
    raw = bytes.fromhex(raw.decode().strip()) if str(vector["file"]).endswith(".hex") else raw
    assert snp_report_bytes(snp_report_document(raw)) == raw


def test_a_turin_v5_report_keeps_its_fmc_tcb_layout_and_mitigation_vectors() -> None:
    raw = bytearray(SNP_TEMPLATE)
    struct.pack_into("<I", raw, 0, 5)
    raw[0x188:0x18B] = bytes([0x1A, 0x02, 0x01])  # Turin: CPUID family 1Ah, model 02h
    for at in (0x38, 0x180, 0x1E0, 0x1F0):
        raw[at : at + 8] = bytes([1, 2, 3, 4, 0, 0, 0, 9])  # fmc, bootloader, tee, snp, ucode
    struct.pack_into("<QQ", raw, 0x1F8, 0x11, 0x22)
    document = snp_report_document(bytes(raw))
    turin_tcb = {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 9}
    assert document["current_tcb"] == turin_tcb
    assert snp_report_bytes(document) == bytes(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown"),
        ({"report_data": [0] * 63}, "'report_data' is not 64 bytes"),
        ({"policy": -1}, "'policy' is not a 64-bit"),
        ({"signature": {"r": [0] * 72}}, "signature"),
        ({"current_tcb": {"bootloader": 1}}, "TCB version"),
    ],
)
def test_a_report_that_is_not_the_sev_crate_form_is_refused(
    change: dict[str, object], message: str
) -> None:
    document = snp_report_document(SNP_TEMPLATE) | change
    with pytest.raises(AaEvidenceError, match=message):
        snp_report_bytes(document)


@pytest.mark.parametrize(
    ("misbehave", "message"),
    [
        ("oversized", "larger than"),
        ("not-json", "can use: the answer is not JSON"),
        ("wrong-shape", "'quote' is not a base64 string"),
        ("foreign-report-data", "does not carry our report data"),
        ("sample", "sample attester"),
        ("redirect", "redirect"),
    ],
)
def test_hostile_answers_are_refused(tdx: tuple[str, Path], misbehave: str, message: str) -> None:
    provider = AttestationAgentProvider(url=tdx[0])
    write_control(tdx[1], misbehave=misbehave)
    with pytest.raises(AttestationUnavailable, match=message):
        provider.collect(BINDING)


def test_an_aa_that_does_not_answer_in_time_is_refused(tdx: tuple[str, Path]) -> None:
    provider = AttestationAgentProvider(url=tdx[0], timeout_s=0.5)
    write_control(tdx[1], misbehave="slow")
    with pytest.raises(AttestationUnavailable, match="did not answer in time"):
        provider.collect(BINDING)


def test_the_rest_api_without_its_attestation_feature_says_what_to_enable(
    tdx: tuple[str, Path],
) -> None:
    write_control(tdx[1], features="resource")  # the kata agent's default
    with pytest.raises(AttestationUnavailable) as refused:
        AttestationAgentProvider(url=tdx[0])
    assert "Attestation Feature Not Enabled" in str(refused.value)
    assert "agent.guest_components_rest_api=attestation (or all)" in str(refused.value)


def test_an_aa_that_reads_runtime_data_as_text_is_refused(tdx: tuple[str, Path]) -> None:
    # guest-components before v0.21.0: our 86 base64 characters are the runtime data, more
    # than the attester's 64 bytes; it fails, and nothing pretends to be bound.
    write_control(tdx[1], legacy_runtime_data=True)
    with pytest.raises(AttestationUnavailable, match=r"HTTP 500 .*v0\.21\.0"):
        AttestationAgentProvider(url=tdx[0])


def test_no_rest_api_listening_says_what_to_enable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AttestationUnavailable, match=r"agent\.guest_components_rest_api"):
        AttestationAgentProvider(url=f"http://127.0.0.1:{port}")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.7:8006",
        "https://aa.example.com",
        "http://localhost:8006",  # a name is whatever the resolver says
        "http://127.0.0.1:8006/aa",
        "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock",
    ],
)
def test_only_a_loopback_origin_is_accepted(url: str) -> None:
    with pytest.raises(AttestationUnavailable, match="Attestation Agent URL"):
        AttestationAgentProvider(url=url)


def test_the_test_aa_decodes_runtime_data_as_api_server_rest_does() -> None:
    assert decode_runtime_data("aGVsbG8", "base64") == b"hello"
    assert decode_runtime_data("aGVsbG8", None) == b"aGVsbG8"  # no encoding: the text itself
    for bad in ("aGVsbG8=", "a+b/", "aGVsbG9"):  # padding, standard alphabet, trailing bits
        assert decode_runtime_data(bad, "base64") is None
    assert decode_runtime_data("aGVsbG8", "hex") is None


def test_the_test_aa_pads_short_runtime_data_and_refuses_long(tdx: tuple[str, Path]) -> None:
    short = base64.urlsafe_b64encode(b"hello").rstrip(b"=").decode()
    answer = httpx.get(
        f"{tdx[0]}/aa/evidence", params={"runtime_data": short, "encoding": "base64"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    quote = base64.b64decode(answer.json()["quote"])
    assert parse_tdx_quote(quote).report_data == b"hello".ljust(64, b"\0")
    long = base64.urlsafe_b64encode(bytes(65)).rstrip(b"=").decode()
    answer = httpx.get(f"{tdx[0]}/aa/evidence", params={"runtime_data": long, "encoding": "base64"})
    assert answer.status_code == 500


def test_select_provider_aa_uses_the_loopback_default(
    tdx: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attestation_agent, "DEFAULT_AA_URL", tdx[0])
    assert select_provider("aa", code_roots=[]).tee == "tdx"
    assert select_provider("aa", code_roots=[], aa_url=tdx[0]).tee == "tdx"


def test_a_gateway_configured_for_aa_issues_tokens_backed_by_the_aa_quote(
    tdx: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gateway.config import parse_config
    from gateway.server import build_attestation

    monkeypatch.setattr(attestation_agent, "DEFAULT_AA_URL", tdx[0])
    config = parse_config(
        {
            "listener": {"port": 0},
            "api_keys": [{"name": "k", "sha256": "0" * 64}],
            "models": [{"name": "m", "deployments": [{"kind": "local"}]}],
            "attestation": {"provider": "aa"},
            "run_dir": str(tmp_path / "run"),
        },
        source="test",
    )
    service = build_attestation(config, None)
    nonce = b"\x07" * 32
    document = service.evidence_document(nonce.hex())
    assert document["tee"] == "tdx" and document["simulated"] is False
    assert document["evidence_format"] == "tdx-quote" and "warning" not in document
    quote = parse_tdx_quote(base64.b64decode(document["evidence"]))
    assert quote.report_data == report_data_for(service.keyset_digest, nonce)
    assert document["measurements"] == quote.measurements()
    # A client's verifier accepts the binding and goes on to the quote's signature, which a
    # template with our report data spliced in cannot carry.
    policy = VerificationPolicy(
        allow_debug=True,
        tdx_min_tee_tcb_svn=None,
        tdx_collateral=(DATA / TDX_VECTOR["collateral"]).read_text(),
        now=lambda: float(TDX_VECTOR["dcap_qvl_0_7_0"]["at_upstream_now"]["now"]),
    )
    with pytest.raises(VerificationError) as refused:
        verify_evidence(document, nonce, policy)
    assert "the TDX quote did not verify" in str(refused.value)
    token = service.sign(
        ResponseFacts(
            jti="chatcmpl-aa",
            request_sha256="0" * 64,
            response_sha256="1" * 64,
            status=200,
            nonce=None,
            model={"name": "m"},
            pii={},
            upstream={"name": "m", "kind": "local", "in_guest": True},
        )
    )
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["tee"] == "tdx" and claims["keyset_digest"] == service.keyset_digest
    assert claims["measurements"]["mrtd"] == TDX_VECTOR["td_report"]["mr_td"]


def test_an_engine_with_attestation_aa_serves_the_aa_evidence(
    tdx: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from enclave_backend.cli import build_parser, settings_from_args
    from enclave_backend.remote_face import RemoteFace

    monkeypatch.setattr(attestation_agent, "DEFAULT_AA_URL", tdx[0])
    args = ["--model", "unused.gguf", "--host", "127.0.0.1", "--tls-port", "0"]
    settings = settings_from_args(build_parser().parse_args([*args, "--attestation", "aa"]))
    face = RemoteFace.create(settings)
    document = face.evidence_document("00" * 16)
    assert document["tee"] == "tdx"
    assert bytes.fromhex(document["report_data"]) == report_data_for(
        document["keyset_digest"], bytes(16)
    )
