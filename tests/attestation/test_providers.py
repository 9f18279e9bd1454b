"""The configfs-tsm provider against a double of the kernel's report interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from confidential_common.tee.keys import report_data_for
from confidential_common.tee.providers import (
    AttestationUnavailable,
    ConfigfsTsmProvider,
    SimulatedProvider,
    TsmFilesystem,
    select_provider,
)
from tests.attestation.test_vectors import EXPECTED, load_vector

TDX_TEMPLATE = load_vector("tdx/dcap-qvl/tdx_quote")
SNP_TEMPLATE = load_vector("snp/go-sev-guest/attestation.bin")


class FakeTsmKernel(TsmFilesystem):
    """Behaves like configfs-tsm: a new directory gets the report files; reading ``outblob``
    produces evidence carrying what was last written to ``inblob``; ``generation`` counts
    writes to ``inblob``. ``interference`` simulates another process writing in between."""

    def __init__(self, root: Path, provider: str, interference: int = 0) -> None:
        self.root = root
        self.provider = provider
        self.interference = interference
        self.entries: dict[Path, dict[str, object]] = {}
        self.fail_outblob = False
        root.mkdir(parents=True, exist_ok=True)

    def mkdir(self, path: Path) -> None:
        path.mkdir()
        self.entries[path] = {"inblob": b"", "generation": 0}

    def rmdir(self, path: Path) -> None:
        path.rmdir()
        del self.entries[path]

    def write(self, path: Path, data: bytes) -> None:
        entry = self.entries[path.parent]
        assert path.name == "inblob"
        entry["inblob"] = data
        entry["generation"] = int(entry["generation"]) + 1  # type: ignore[call-overload]
        if self.interference:
            self.interference -= 1
            entry["generation"] = int(entry["generation"]) + 1  # type: ignore[call-overload]

    def read(self, path: Path) -> bytes:
        entry = self.entries[path.parent]
        if path.name == "provider":
            return self.provider.encode() + b"\n"
        if path.name == "generation":
            return f"{entry['generation']}\n".encode()
        if path.name == "outblob":
            if self.fail_outblob:
                raise OSError(5, "Input/output error")
            data = entry["inblob"]
            assert isinstance(data, bytes)
            if self.provider == "tdx_guest":
                return TDX_TEMPLATE[: 48 + 520] + data + TDX_TEMPLATE[48 + 584 :]
            return SNP_TEMPLATE[:0x50] + data + SNP_TEMPLATE[0x90:]
        raise FileNotFoundError(path)

    def exists(self, path: Path) -> bool:
        return path == self.root or (path.parent in self.entries and path.name != "auxblob")


def test_tdx_evidence_through_configfs_tsm_carries_our_report_data(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", "tdx_guest")
    provider = ConfigfsTsmProvider(base=kernel.root, fs=kernel, expected_tee="tdx")
    data = report_data_for("ab" * 32, b"nonce")
    evidence = provider.collect(data)
    assert provider.tee == evidence.tee == "tdx"
    assert evidence.report_data == data
    assert evidence.measurements["mrtd"] == EXPECTED["tdx"][0]["td_report"]["mr_td"]
    assert kernel.entries == {}  # every report directory was removed


def test_snp_evidence_through_configfs_tsm(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", "sev_guest")
    provider = ConfigfsTsmProvider(base=kernel.root, fs=kernel, expected_tee=None)
    evidence = provider.collect(bytes(range(64)))
    assert evidence.tee == "sev-snp" and evidence.report_data == bytes(range(64))
    assert evidence.measurements["measurement"] == EXPECTED["snp"][0]["fields"]["measurement"]


def test_a_concurrent_writer_is_detected_by_generation_and_retried(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", "tdx_guest")
    provider = ConfigfsTsmProvider(base=kernel.root, fs=kernel)
    kernel.interference = 2
    evidence = provider.collect(b"\x07" * 64)
    assert evidence.report_data == b"\x07" * 64
    kernel.interference = 100
    with pytest.raises(AttestationUnavailable, match="kept changing"):
        provider.collect(b"\x07" * 64)


def test_hardware_that_differs_from_the_config_refuses(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", "sev_guest")
    with pytest.raises(AttestationUnavailable, match="configured for tdx"):
        ConfigfsTsmProvider(base=kernel.root, fs=kernel, expected_tee="tdx")


def test_kernel_failure_is_a_clear_error(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", "tdx_guest")
    provider = ConfigfsTsmProvider(base=kernel.root, fs=kernel)
    kernel.fail_outblob = True
    with pytest.raises(AttestationUnavailable, match="configfs-tsm report failed"):
        provider.collect(bytes(64))


def test_no_tee_never_falls_back_to_simulation(tmp_path: Path) -> None:
    for kind in ("auto", "tdx", "sev-snp"):
        with pytest.raises(AttestationUnavailable, match="not a TDX or SEV-SNP guest"):
            select_provider(kind, code_roots=[], base=tmp_path / "absent")
    assert isinstance(select_provider("simulated", code_roots=[]), SimulatedProvider)
