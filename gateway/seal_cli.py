"""``confidential-gateway seal-model IN.gguf OUT.sealed``: encrypt a model for a key broker.

A new key is generated unless ``--key-file`` names an existing one (to reseal a model under
the key a broker already holds). The key goes to ``--key-out`` (32 raw bytes, mode 0600:
the file to upload to the KBS, e.g. ``kbs-client config set-resource --path
REPO/TYPE/TAG --resource-file KEY``), or, without it, to stdout in hex, once. Nothing else
this command prints is secret: the hashes and key id go into tokens anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from confidential_common.sealed.format import (
    DEFAULT_CHUNK,
    MAX_CHUNK,
    MIN_CHUNK,
    SealedFileError,
    generate_key,
    parse_key,
    seal_file,
)

GGUF_MAGIC = b"GGUF"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    seal = commands.add_parser(
        "seal-model", help="encrypt a GGUF for a key broker (sealed model weights)"
    )
    seal.add_argument("source", type=Path, help="the plain GGUF")
    seal.add_argument("target", type=Path, help="the sealed file to write")
    seal.add_argument(
        "--key-file", type=Path, help="seal with this existing key (32 raw bytes or 64 hex)"
    )
    seal.add_argument(
        "--key-out", type=Path, help="write the new key here (raw, mode 0600) instead of stdout"
    )
    seal.add_argument(
        "--chunk-mib",
        type=int,
        default=DEFAULT_CHUNK >> 20,
        help="plaintext MiB per authenticated chunk (default: %(default)s)",
    )
    seal.set_defaults(func=run_seal)


def _fail(message: str) -> int:
    print(f"seal-model: {message}", file=sys.stderr)
    return 2


def _write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)


def run_seal(args: argparse.Namespace) -> int:
    source: Path = args.source
    target: Path = args.target
    chunk = args.chunk_mib << 20
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        return _fail(f"--chunk-mib must be within 1..{MAX_CHUNK >> 20}")
    try:
        with source.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                return _fail(f"{source} is not a GGUF file (it does not start with b'GGUF')")
    except OSError as exc:
        return _fail(f"cannot read {source}: {exc.strerror}")
    if target.exists() or target.resolve() == source.resolve():
        return _fail(f"{target} exists; choose a new file (nothing was overwritten)")
    if args.key_file is not None and args.key_out is not None:
        return _fail("--key-out is for a new key; with --key-file the key is already stored")
    if args.key_out is not None and args.key_out.exists():
        return _fail(f"{args.key_out} exists; a key file is never overwritten")
    if args.key_file is not None:
        try:
            key = parse_key(args.key_file.read_bytes())
        except OSError as exc:
            return _fail(f"cannot read --key-file {args.key_file}: {exc.strerror}")
        except ValueError as exc:
            return _fail(f"--key-file {args.key_file}: {exc}")
    else:
        key = generate_key()
    if args.key_out is not None:
        try:
            _write_key(args.key_out, key)
        except OSError as exc:
            return _fail(f"cannot write --key-out {args.key_out}: {exc.strerror}")
    try:
        result = seal_file(source, target, key, chunk_size=chunk)
    except (OSError, SealedFileError) as exc:
        if args.key_out is not None:
            args.key_out.unlink(missing_ok=True)
        return _fail(f"sealing failed, nothing written: {exc}")
    header = result.header
    print(f"sealed {source} -> {target}", file=sys.stderr)
    print(f"plaintext_sha256 {header.plaintext_sha256}")
    print(f"sealed_sha256 {result.sealed_sha256}")
    print(f"key_id {header.key_id}")
    print(f"chunks {header.chunks} x {header.chunk_size} bytes, {result.sealed_size} bytes sealed")
    if args.key_out is not None:
        print(
            f"key written to {args.key_out} (mode 0600): store it in the key broker",
            file=sys.stderr,
        )
    elif args.key_file is None:
        print(f"key {key.hex()}")
        print(
            "store this key in the key broker now; it is not kept anywhere else",
            file=sys.stderr,
        )
    return 0
