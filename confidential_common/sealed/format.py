"""The sealed model file: a GGUF encrypted in authenticated chunks, streamed both ways.

Layout (all integers big-endian)::

    magic      8 bytes   b"\\x89CGSEAL\\n"
    length     4 bytes   length of the header
    header     JSON      canonical (sorted keys, no spaces), UTF-8
    chunk 0 .. n-1       ciphertext || 16-byte GCM tag; every chunk holds chunk_size
                         plaintext bytes but the last, which holds the rest (an empty
                         model is one empty final chunk)

The header names the format version, cipher, chunk size, plaintext size and SHA-256, the
key id, and a random 32-byte salt. Each file is encrypted with its own key,
``HKDF-SHA256(master key, salt, info = "confidential-gateway/sealed-model/v1" || SHA-256(
magic || length || header))``, so two files never share a (key, nonce) pair. Chunk ``i``
is sealed with nonce ``i`` (11 bytes) || final flag (1 byte) and additional data
SHA-256(header bytes) || ``i`` (8 bytes) || final flag: a chunk moved to another place,
taken from another file, or a file cut after any chunk (the last chunk left is then not
marked final) fails authentication — the STREAM construction of Hoang, Reyhanitabar,
Rogaway and Vizár. The header itself is authenticated through every chunk, and the file's
exact length follows from the header, so truncation is reported before any decryption.

The key id is a hash of the master key, so a wrong key is told apart from a damaged file
without trying it on the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"\x89CGSEAL\n"
FORMAT = "confidential-gateway-sealed-model"
VERSION = 1
CIPHER = "AES-256-GCM"
KDF = "HKDF-SHA256"
KEY_BYTES = 32
TAG_BYTES = 16
DEFAULT_CHUNK = 4 << 20
MIN_CHUNK = 4 << 10
MAX_CHUNK = 64 << 20
MAX_HEADER = 64 << 10
_KEY_ID_LABEL = b"confidential-gateway/sealed-model/key-id\x00"
_FILE_KEY_INFO = b"confidential-gateway/sealed-model/v1"
_PREFIX = struct.Struct(">8sI")


class SealedFileError(Exception):
    """The sealed file is not one we can open: malformed, truncated, tampered or not ours."""


class WrongKeyError(SealedFileError):
    """The key given is not the key this file was sealed with."""


def key_id(key: bytes) -> str:
    """A public name for a master key: the first 16 bytes of a labelled SHA-256, in hex."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:32]


def generate_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def parse_key(material: bytes) -> bytes:
    """A master key from what a broker or file holds: 32 raw bytes, or 64 hex characters."""
    if len(material) == KEY_BYTES:
        return material
    text = material.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise ValueError(
        f"a model key is {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex characters; "
        f"got {len(material)} bytes that are neither"
    )


@dataclass(frozen=True)
class Header:
    chunk_size: int
    plaintext_size: int
    plaintext_sha256: str
    key_id: str
    salt: bytes

    @property
    def chunks(self) -> int:
        return max(1, -(-self.plaintext_size // self.chunk_size))

    def chunk_length(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``."""
        if index < self.chunks - 1:
            return self.chunk_size
        return self.plaintext_size - (self.chunks - 1) * self.chunk_size

    def encode(self) -> bytes:
        """The magic, the length and the header: the file's first bytes."""
        document = {
            "format": FORMAT,
            "version": VERSION,
            "cipher": CIPHER,
            "kdf": KDF,
            "chunk_size": self.chunk_size,
            "plaintext_size": self.plaintext_size,
            "plaintext_sha256": self.plaintext_sha256,
            "key_id": self.key_id,
            "salt": self.salt.hex(),
        }
        body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        return _PREFIX.pack(MAGIC, len(body)) + body

    def sealed_size(self) -> int:
        return len(self.encode()) + self.plaintext_size + self.chunks * TAG_BYTES


def _field(document: dict[str, object], name: str, kind: type) -> object:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SealedFileError(f"the sealed header's {name!r} is missing or not a {kind.__name__}")
    return value


def _hex(value: object, name: str, length: int) -> str:
    if not isinstance(value, str) or len(value) != length:
        raise SealedFileError(f"the sealed header's {name!r} is not {length} hex characters")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise SealedFileError(f"the sealed header's {name!r} is not hex") from None
    return value


def read_header(handle: BinaryIO) -> tuple[Header, bytes]:
    """Read and check the header; returns it and its exact bytes (magic and length too)."""
    prefix = handle.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size or not prefix.startswith(MAGIC):
        raise SealedFileError("not a sealed model file (it does not start with the sealed magic)")
    _, length = _PREFIX.unpack(prefix)
    if length > MAX_HEADER:
        raise SealedFileError(f"the sealed header claims {length} bytes; at most {MAX_HEADER}")
    body = handle.read(length)
    if len(body) != length:
        raise SealedFileError("the sealed file is truncated inside its header")
    if not body.isascii():
        raise SealedFileError("the sealed header is not ASCII JSON")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, deep nesting
        raise SealedFileError("the sealed header is not valid JSON") from None
    if not isinstance(document, dict):
        raise SealedFileError("the sealed header is not a JSON object")
    if document.get("format") != FORMAT:
        raise SealedFileError(f"the sealed header's format is not {FORMAT!r}")
    if document.get("version") != VERSION:
        version = document.get("version")
        named = repr(version) if isinstance(version, int) and 0 <= version < 1000 else "other"
        raise SealedFileError(
            f"sealed format version {named} is not supported (this build reads version {VERSION})"
        )
    if document.get("cipher") != CIPHER or document.get("kdf") != KDF:
        raise SealedFileError(f"the sealed file uses an unknown cipher or KDF; expected {CIPHER}")
    chunk_size = _field(document, "chunk_size", int)
    plaintext_size = _field(document, "plaintext_size", int)
    assert isinstance(chunk_size, int) and isinstance(plaintext_size, int)
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise SealedFileError(f"chunk size {chunk_size} is outside {MIN_CHUNK}..{MAX_CHUNK}")
    if plaintext_size < 0:
        raise SealedFileError("the sealed header's plaintext_size is negative")
    header = Header(
        chunk_size=chunk_size,
        plaintext_size=plaintext_size,
        plaintext_sha256=_hex(document.get("plaintext_sha256"), "plaintext_sha256", 64),
        key_id=_hex(document.get("key_id"), "key_id", 32),
        salt=bytes.fromhex(_hex(document.get("salt"), "salt", 64)),
    )
    encoded = prefix + body
    if header.encode() != encoded:
        raise SealedFileError("the sealed header is not in canonical form")
    return header, encoded


class _ChunkCipher:
    """The per-file AEAD, with the nonce and additional data of each chunk."""

    def __init__(self, key: bytes, header: Header, header_bytes: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a model key is {KEY_BYTES} bytes")
        digest = hashlib.sha256(header_bytes).digest()
        file_key = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=header.salt,
            info=_FILE_KEY_INFO + digest,
        ).derive(key)
        self._aead = AESGCM(file_key)
        self._digest = digest
        self._last = header.chunks - 1

    def nonce_and_aad(self, index: int) -> tuple[bytes, bytes]:
        final = b"\x01" if index == self._last else b"\x00"
        return index.to_bytes(11, "big") + final, self._digest + index.to_bytes(8, "big") + final

    def seal(self, index: int, plaintext: bytes) -> bytes:
        nonce, aad = self.nonce_and_aad(index)
        return self._aead.encrypt(nonce, plaintext, aad)

    def open_into(self, index: int, sealed: bytes, out: memoryview) -> None:
        nonce, aad = self.nonce_and_aad(index)
        try:
            self._aead.decrypt_into(nonce, sealed, aad, out)
        except InvalidTag:
            raise SealedFileError(
                f"chunk {index} failed authentication: the sealed file was modified, "
                "reordered or spliced"
            ) from None


def _read_exact(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise SealedFileError("the sealed file ended early (truncated)")
    return data


@dataclass(frozen=True)
class SealResult:
    header: Header
    sealed_sha256: str
    sealed_size: int


def _hash_file(path: Path, chunk: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def seal_file(
    source: Path,
    target: Path,
    key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> SealResult:
    """Encrypt ``source`` into ``target`` (written beside it, then renamed into place).

    Two passes over the source, one chunk in memory at a time: the plaintext hash goes in
    the header, which every chunk's additional data binds.
    """
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk size must be within {MIN_CHUNK}..{MAX_CHUNK} bytes")
    plaintext_sha256, size = _hash_file(source, chunk_size)
    header = Header(chunk_size, size, plaintext_sha256, key_id(key), os.urandom(32))
    header_bytes = header.encode()
    cipher = _ChunkCipher(key, header, header_bytes)
    partial = target.with_name(f".{target.name}.partial")
    sealed_digest = hashlib.sha256(header_bytes)
    second_pass = hashlib.sha256()
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
            out.write(header_bytes)
            for index in range(header.chunks):
                plaintext = handle.read(header.chunk_length(index))
                if len(plaintext) != header.chunk_length(index):
                    raise SealedFileError(f"{source} changed while it was being sealed")
                second_pass.update(plaintext)
                sealed = cipher.seal(index, plaintext)
                sealed_digest.update(sealed)
                out.write(sealed)
                if progress is not None:
                    progress(len(plaintext))
            if handle.read(1) or second_pass.hexdigest() != plaintext_sha256:
                raise SealedFileError(f"{source} changed while it was being sealed")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return SealResult(header, sealed_digest.hexdigest(), header.sealed_size())


class SealedReader:
    """Opens a sealed file with a master key: header, length and key id are checked here,
    each chunk as ``decrypt`` reaches it. The caller checks the plaintext SHA-256 against
    ``header.plaintext_sha256`` after the last chunk and uses nothing before that.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        self._path = path
        self._handle = path.open("rb")
        try:
            self.header, self._header_bytes = read_header(self._handle)
            actual = os.fstat(self._handle.fileno()).st_size
            expected = self.header.sealed_size()
            if actual < expected:
                raise SealedFileError(
                    f"the sealed file is truncated: {actual} bytes, its header promises {expected}"
                )
            if actual > expected:
                raise SealedFileError(
                    f"the sealed file has {actual - expected} bytes after its last chunk"
                )
            if key_id(key) != self.header.key_id:
                raise WrongKeyError(
                    f"the key released (key id {key_id(key)}) is not the key this file was "
                    f"sealed with (key id {self.header.key_id})"
                )
            self._cipher = _ChunkCipher(key, self.header, self._header_bytes)
        except BaseException:
            self._handle.close()
            raise

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def decrypt(
        self,
        target: Callable[[int, int], memoryview],
        *,
        hash_sealed: Callable[[bytes], object] | None = None,
    ) -> Iterator[memoryview]:
        """Decrypt chunk by chunk, yielding each chunk's plaintext once it is authenticated.

        ``target(offset, length)`` gives the writable view a chunk is decrypted into (a slice
        of one large buffer, or one reused chunk-sized buffer). ``hash_sealed`` receives the
        file's bytes in order, header first, so the caller hashes the sealed file in the same
        read. A failure raises SealedFileError; what was written so far must be discarded.
        """
        if hash_sealed is not None:
            hash_sealed(self._header_bytes)
        offset = 0
        for index in range(self.header.chunks):
            length = self.header.chunk_length(index)
            sealed = _read_exact(self._handle, length + TAG_BYTES)
            if hash_sealed is not None:
                hash_sealed(sealed)
            view = target(offset, length)
            if len(view) != length:
                raise ValueError("the target view must be exactly the chunk's length")
            try:
                self._cipher.open_into(index, sealed, view)
            except BaseException:
                view.release()  # the caller's buffer must be free to be discarded
                raise
            yield view
            offset += length
