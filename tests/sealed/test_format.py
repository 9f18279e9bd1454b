"""The sealed file format: round trip, and every way a file can be damaged or misused."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from confidential_common.sealed.format import (
    MAGIC,
    MIN_CHUNK,
    TAG_BYTES,
    SealedFileError,
    SealedReader,
    WrongKeyError,
    generate_key,
    key_id,
    parse_key,
    seal_file,
)
from enclave_backend.sealed_weights import SealedModelError, unseal_into_memory

CHUNK = MIN_CHUNK


def _plain(tmp_path: Path, size: int, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(b"GGUF" + os.urandom(max(0, size - 4)) if size >= 4 else b"GGUF"[:size])
    return path


def _decrypt(path: Path, key: bytes) -> bytes:
    with SealedReader(path, key) as reader:
        out = bytearray(reader.header.plaintext_size)
        view = memoryview(out)
        for _ in reader.decrypt(lambda o, n: view[o : o + n]):
            pass
        view.release()
        assert hashlib.sha256(out).hexdigest() == reader.header.plaintext_sha256
    return bytes(out)


@pytest.mark.parametrize("size", [1, 4, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_round_trip_at_chunk_boundaries(tmp_path: Path, size: int) -> None:
    source = _plain(tmp_path, size)
    key = generate_key()
    result = seal_file(source, tmp_path / "model.sealed", key, chunk_size=CHUNK)
    sealed = (tmp_path / "model.sealed").read_bytes()
    assert result.sealed_size == len(sealed)
    assert result.sealed_sha256 == hashlib.sha256(sealed).hexdigest()
    assert result.header.plaintext_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert result.header.key_id == key_id(key)
    assert _decrypt(tmp_path / "model.sealed", key) == source.read_bytes()


def test_the_ciphertext_carries_no_plaintext(tmp_path: Path) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + b"the same secret weights " * 4000)
    seal_file(source, tmp_path / "model.sealed", generate_key(), chunk_size=CHUNK)
    assert b"secret weights" not in (tmp_path / "model.sealed").read_bytes()


def test_sealing_twice_gives_different_files(tmp_path: Path) -> None:
    source = _plain(tmp_path, 2 * CHUNK)
    key = generate_key()
    seal_file(source, tmp_path / "a.sealed", key, chunk_size=CHUNK)
    seal_file(source, tmp_path / "b.sealed", key, chunk_size=CHUNK)
    assert (tmp_path / "a.sealed").read_bytes() != (tmp_path / "b.sealed").read_bytes()


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    source = _plain(tmp_path, 3 * CHUNK + 100)
    key = generate_key()
    seal_file(source, tmp_path / "model.sealed", key, chunk_size=CHUNK)
    return tmp_path / "model.sealed", key, source.read_bytes()


def _header_end(data: bytes) -> int:
    (length,) = struct.unpack(">I", data[8:12])
    return 12 + length


def _chunk_span(data: bytes, index: int) -> tuple[int, int]:
    start = _header_end(data) + index * (CHUNK + TAG_BYTES)
    return start, start + CHUNK + TAG_BYTES


def test_a_flipped_bit_in_any_chunk_is_refused(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    original = path.read_bytes()
    for index in range(4):
        start, _ = _chunk_span(original, index)
        damaged = bytearray(original)
        damaged[start + 5] ^= 0x01
        path.write_bytes(damaged)
        with pytest.raises(SealedFileError, match=f"chunk {index} failed authentication"):
            _decrypt(path, key)


def test_a_flipped_tag_bit_is_refused(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0x80
    path.write_bytes(damaged)
    with pytest.raises(SealedFileError, match="chunk 3 failed authentication"):
        _decrypt(path, key)


def test_reordered_chunks_are_refused(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    data = path.read_bytes()
    a0, a1 = _chunk_span(data, 0)
    b0, b1 = _chunk_span(data, 1)
    path.write_bytes(data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:])
    with pytest.raises(SealedFileError, match="chunk 0 failed authentication"):
        _decrypt(path, key)


def test_a_chunk_spliced_from_another_file_with_the_same_key_is_refused(
    tmp_path: Path, sealed: tuple[Path, bytes, bytes]
) -> None:
    path, key, _ = sealed
    other_source = _plain(tmp_path, 3 * CHUNK + 100, "other.gguf")
    seal_file(other_source, tmp_path / "other.sealed", key, chunk_size=CHUNK)
    data, other = path.read_bytes(), (tmp_path / "other.sealed").read_bytes()
    start, end = _chunk_span(data, 1)
    path.write_bytes(data[:start] + other[start:end] + data[end:])
    with pytest.raises(SealedFileError, match="chunk 1 failed authentication"):
        _decrypt(path, key)


def test_truncation_is_refused_before_decryption(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    data = path.read_bytes()
    for cut in (1, TAG_BYTES, CHUNK + TAG_BYTES, len(data) - _header_end(data)):
        path.write_bytes(data[:-cut])
        with pytest.raises(SealedFileError, match="truncated"):
            SealedReader(path, key)


def test_dropping_the_last_chunk_and_fixing_the_size_is_refused(
    sealed: tuple[Path, bytes, bytes],
) -> None:
    """A header rewritten to promise fewer chunks no longer matches what every chunk binds."""
    path, key, _ = sealed
    data = path.read_bytes()
    end = _header_end(data)
    header = json.loads(data[12:end])
    header["plaintext_size"] = 3 * CHUNK
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    start, _ = _chunk_span(data, 3)
    path.write_bytes(MAGIC + struct.pack(">I", len(body)) + body + data[end:start])
    with pytest.raises(SealedFileError, match="failed authentication"):
        _decrypt(path, key)


def test_trailing_bytes_are_refused(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(SealedFileError, match="bytes after its last chunk"):
        SealedReader(path, key)


def test_a_wrong_key_is_named_as_such(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    with pytest.raises(WrongKeyError, match=f"sealed with \\(key id {key_id(key)}\\)"):
        SealedReader(path, generate_key())


def test_a_forged_key_id_still_fails_on_the_data(sealed: tuple[Path, bytes, bytes]) -> None:
    """The key id only explains failures; authentication does not depend on it."""
    path, _key, _ = sealed
    data = path.read_bytes()
    end = _header_end(data)
    header = json.loads(data[12:end])
    wrong = generate_key()
    header["key_id"] = key_id(wrong)
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(MAGIC + struct.pack(">I", len(body)) + body + data[end:])
    with pytest.raises(SealedFileError, match="chunk 0 failed authentication"):
        _decrypt(path, wrong)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h.update(version=2), "version 2 is not supported"),
        (lambda h: h.update(cipher="AES-128-CBC"), "unknown cipher"),
        (lambda h: h.update(chunk_size=1), "chunk size 1 is outside"),
        (lambda h: h.update(plaintext_size="7"), "plaintext_size"),
        (lambda h: h.pop("salt"), "salt"),
    ],
)
def test_malformed_headers_are_refused(
    sealed: tuple[Path, bytes, bytes], edit: object, message: str
) -> None:
    path, key, _ = sealed
    data = path.read_bytes()
    end = _header_end(data)
    header = json.loads(data[12:end])
    edit(header)  # type: ignore[operator]
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(MAGIC + struct.pack(">I", len(body)) + body + data[end:])
    with pytest.raises(SealedFileError, match=message):
        SealedReader(path, key)


def test_not_a_sealed_file(tmp_path: Path) -> None:
    path = _plain(tmp_path, 100)
    with pytest.raises(SealedFileError, match="not a sealed model file"):
        SealedReader(path, generate_key())


def test_key_material_forms() -> None:
    key = generate_key()
    assert parse_key(key) == key
    assert parse_key(key.hex().encode() + b"\n") == key
    with pytest.raises(ValueError, match="32 raw bytes or 64 hex"):
        parse_key(b"short")
    with pytest.raises(ValueError, match="32 raw bytes or 64 hex"):
        parse_key(b"z" * 64)


def test_unsealing_into_memory_verifies_and_seals_the_memfd(
    sealed: tuple[Path, bytes, bytes],
) -> None:
    path, key, plaintext = sealed
    model = unseal_into_memory(path, key, key_broker="file")
    try:
        assert model.path.read_bytes() == plaintext
        assert model.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
        assert model.facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert model.facts.key_id == key_id(key)
        assert os.readlink(f"/proc/self/fd/{model.fd}").startswith("/memfd:sealed-model")
        with pytest.raises(PermissionError):  # F_SEAL_WRITE: nobody changes it after the check
            os.write(model.fd, b"x")
    finally:
        fd = model.fd
        model.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_tampered_file_leaves_no_memfd_open(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    damaged = bytearray(path.read_bytes())
    damaged[-40] ^= 0x01
    path.write_bytes(damaged)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(SealedModelError, match="chunk 3 failed authentication"):
        unseal_into_memory(path, key, key_broker="file")
    leaked = [
        fd
        for fd in set(os.listdir("/proc/self/fd")) - before
        if "memfd" in os.readlink(f"/proc/self/fd/{fd}")
    ]
    assert leaked == []


def test_sealing_streams_with_bounded_memory(tmp_path: Path) -> None:
    """64 MiB in 1 MiB chunks: Python allocations stay a few chunks, not the file."""
    source = tmp_path / "big.gguf"
    with source.open("wb") as handle:
        handle.write(b"GGUF")
        handle.truncate(64 << 20)
    key = generate_key()
    tracemalloc.start()
    try:
        seal_file(source, tmp_path / "big.sealed", key, chunk_size=1 << 20)
        _, sealing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with SealedReader(tmp_path / "big.sealed", key) as reader:
            buffer = memoryview(bytearray(1 << 20))
            digest = hashlib.sha256()
            for chunk in reader.decrypt(lambda _o, n: buffer[:n]):
                digest.update(chunk)
        _, opening_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == reader.header.plaintext_sha256
    assert sealing_peak < 8 << 20
    assert opening_peak < 8 << 20


def _with_header_body(path: Path, body: bytes) -> None:
    data = path.read_bytes()
    path.write_bytes(MAGIC + struct.pack(">I", len(body)) + body + data[_header_end(data) :])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"chunk_size":' + b"1" * 5000 + b"}", "not valid JSON"),  # past int's digit limit
        (b"[" * 30000, "not valid JSON"),  # deeper than the parser recurses
        ('{"format":"caf\u00e9"}'.encode(), "not ASCII JSON"),
        (b'{"version":"' + b"9" * 60000 + b'"}', "format is not"),
    ],
)
def test_hostile_headers_are_refused_with_a_short_message(
    sealed: tuple[Path, bytes, bytes], body: bytes, message: str
) -> None:
    path, key, _ = sealed
    _with_header_body(path, body)
    with pytest.raises(SealedFileError, match=message) as caught:
        SealedReader(path, key)
    assert len(str(caught.value)) < 200


def test_an_unsupported_version_is_named_briefly(sealed: tuple[Path, bytes, bytes]) -> None:
    path, key, _ = sealed
    data = path.read_bytes()
    header = json.loads(data[12 : _header_end(data)])
    header["version"] = "9" * 60000
    _with_header_body(path, json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(SealedFileError, match="version other is not supported") as caught:
        SealedReader(path, key)
    assert len(str(caught.value)) < 200


def test_a_source_that_changes_between_the_passes_is_not_sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confidential_common.sealed import format as sealed_format

    source = _plain(tmp_path, 2 * CHUNK)
    size = source.stat().st_size
    monkeypatch.setattr(sealed_format, "_hash_file", lambda _path, _chunk: ("0" * 64, size))
    with pytest.raises(SealedFileError, match="changed while it was being sealed"):
        seal_file(source, tmp_path / "model.sealed", generate_key(), chunk_size=CHUNK)
    assert not (tmp_path / "model.sealed").exists()
    assert list(tmp_path.glob(".*partial")) == []


def test_a_model_larger_than_memory_is_refused_before_any_allocation(tmp_path: Path) -> None:
    """A header promising more than RAM (on a sparse file of the matching length) gets a
    clear refusal, not an out-of-memory kill or an OSError."""
    from confidential_common.sealed.format import Header

    key = generate_key()
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    header = Header(64 << 20, 2 * memory, "0" * 64, key_id(key), os.urandom(32))
    path = tmp_path / "huge.sealed"
    try:
        with path.open("wb") as handle:
            handle.write(header.encode())
            handle.truncate(header.sealed_size())  # sparse: nothing is written
        with pytest.raises(SealedModelError, match="more than this machine's"):
            unseal_into_memory(path, key, key_broker="file")
    finally:
        path.unlink(missing_ok=True)  # never leave a sparse giant for a later scan
