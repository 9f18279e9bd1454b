"""A sealed copy of the default model, unique to this run so a scan can look for its bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from confidential_common.sealed.format import generate_key, key_id, seal_file
from enclave_backend.model_file import packaged_model_path

# Random bytes appended to the GGUF (llama.cpp ignores what follows the tensor data): no
# other file anywhere holds them, so finding any 64 of them on a disk means a plaintext leak.
MARKER_BYTES = 1 << 20


@dataclass(frozen=True)
class SealedModel:
    plain: Path  # kept outside every scanned directory
    sealed: Path
    key: bytes
    key_file: Path
    plaintext_sha256: str
    sealed_sha256: str
    marker: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    def samples(self, count: int = 8, width: int = 64) -> list[bytes]:
        step = len(self.marker) // count
        return [self.marker[i * step : i * step + width] for i in range(count)]


@pytest.fixture(scope="session")
def sealed_model(tmp_path_factory: pytest.TempPathFactory) -> SealedModel:
    home = tmp_path_factory.mktemp("sealed-model")
    plain = home / "plain" / "model.gguf"
    plain.parent.mkdir()
    shutil.copyfile(packaged_model_path(), plain)
    marker = os.urandom(MARKER_BYTES)
    with plain.open("ab") as handle:
        handle.write(marker)
    key = generate_key()
    key_file = home / "model.key"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    sealed = home / "smollm2.gguf.sealed"
    result = seal_file(plain, sealed, key)
    return SealedModel(
        plain=plain,
        sealed=sealed,
        key=key,
        key_file=key_file,
        plaintext_sha256=hashlib.sha256(plain.read_bytes()).hexdigest(),
        sealed_sha256=result.sealed_sha256,
        marker=marker,
    )


def run_engine(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an engine that is expected to refuse to start; its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "enclave_backend", "--socket", str(tmp_path / "s"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
