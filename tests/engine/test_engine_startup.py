"""The engine refuses bad start-up input with a clear message and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave_backend", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_model_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    result = run_engine("--model", str(tmp_path / "nope.gguf"), "--socket", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    result = run_engine("--model", str(bogus), "--socket", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "not a GGUF file" in result.stderr


def test_corrupt_gguf_is_refused_not_crashed(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    result = run_engine("--model", str(corrupt), "--socket", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "could not load" in result.stderr


def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    result = run_engine("--host", "0.0.0.0", "--port", "8099")
    assert result.returncode != 0
    assert "not a loopback address" in result.stderr
