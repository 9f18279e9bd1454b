"""Convert weights once to a quantization that batches faster, cached on disk.

The converted file is named after the source file's SHA-256 and the target type, written to
a temporary name and renamed into place, so a crash never leaves a half-written model that
a later start would trust.
"""

from __future__ import annotations

import os
from pathlib import Path

import llama_cpp

from enclave_backend.model_file import ModelFileError, check_gguf

TARGET_TYPES = {
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
}


def requantized_path(source: Path, source_sha256: str, target: str, cache_dir: Path) -> Path:
    return cache_dir / f"{source.stem}.{source_sha256[:16]}.{target}.gguf"


def requantize(
    source: Path, source_sha256: str, target: str, cache_dir: Path, *, threads: int
) -> Path:
    """Return the converted file, creating it on first use."""
    if target not in TARGET_TYPES:
        raise ModelFileError(
            f"unknown requantize target {target!r}; use one of {sorted(TARGET_TYPES)}"
        )
    out = requantized_path(source, source_sha256, target, cache_dir)
    if out.exists():
        return check_gguf(out)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp-{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = TARGET_TYPES[target]
    params.allow_requantize = True
    try:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise ModelFileError(f"converting {source.name} to {target} failed (code {rc})")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return check_gguf(out)
