"""The engine loads a sealed model into memory only, and refuses any damaged or unkeyed one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from confidential_common.sealed.format import generate_key, seal_file
from enclave_backend.embedding_model import default_cache_dir, packaged_embedding_gguf
from tests.engine.conftest import start_engine, stop_engine
from tests.sealed.conftest import SealedModel, run_engine

SCAN_ROOTS = [Path("/tmp"), Path("/dev/shm"), Path("/var/tmp")]


def file_key_args(model: SealedModel, key_file: Path | None = None) -> list[str]:
    return [
        "--sealed-model",
        str(model.sealed),
        "--key-broker",
        "file",
        "--key-file",
        str(key_file or model.key_file),
        "--slots",
        "2",
        "--ctx-per-slot",
        "512",
    ]


def memfds(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:"):
            found.append(target)
    return found


def files_written_since(roots: Iterable[Path], since: float, skip: set[Path]) -> Iterable[Path]:
    for root in roots:
        for directory, _dirs, names in os.walk(root, onerror=lambda _e: None):
            for name in names:
                path = Path(directory) / name
                try:
                    status = path.lstat()
                except OSError:
                    continue
                if not path.is_file() or path.is_symlink() or path in skip:
                    continue
                if max(status.st_mtime, status.st_ctime) >= since:
                    yield path


def holds_any(path: Path, samples: list[bytes]) -> bool:
    overlap = max(len(s) for s in samples)
    tail = b""
    try:
        with path.open("rb") as handle:
            while block := handle.read(8 << 20):
                window = tail + block
                if any(sample in window for sample in samples):
                    return True
                tail = window[-overlap:]
    except OSError:
        return False
    return False


def test_a_sealed_model_serves_from_memory_and_leaves_nothing_on_disk(
    tmp_path: Path, sealed_model: SealedModel
) -> None:
    started = time.time() - 1
    engine = start_engine(tmp_path, *file_key_args(sealed_model))
    try:
        health = engine.health()
        assert health["weights_sha256"] == sealed_model.plaintext_sha256
        assert health["sealed"] == {
            "sha256": sealed_model.sealed_sha256,
            "key_id": sealed_model.key_id,
            "key_broker": "file",
        }
        with engine.client() as client:
            reply = client.post(
                "/v1/chat/completions",
                json={
                    "model": health["model"],
                    "messages": [{"role": "user", "content": "Say hi"}],
                    "max_tokens": 8,
                },
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        assert memfds(engine.process.pid) == ["/memfd:sealed-model (deleted)"]
        assert "DEVELOPMENT KEY FILE" in engine.log_path.read_text()
    finally:
        pid = engine.process.pid
        stop_engine(engine)
    assert not Path(f"/proc/{pid}").exists()  # the memfd went with the process
    skip = {sealed_model.plain}
    leaks = [
        path
        for path in files_written_since([*SCAN_ROOTS, tmp_path], started, skip)
        if holds_any(path, sealed_model.samples())
    ]
    assert leaks == []


def test_a_wrong_key_stops_start_up_with_one_clear_line(
    tmp_path: Path, sealed_model: SealedModel
) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(generate_key())
    result = run_engine(tmp_path, *file_key_args(sealed_model, wrong))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1
    assert f"sealed with (key id {sealed_model.key_id})" in errors[0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:-1], "truncated"),
        (lambda data: data[:4096] + bytes([data[4096] ^ 1]) + data[4097:], "failed authentication"),
        (lambda data: data + b"\0", "after its last chunk"),
        (lambda data: b"GGUF" + data[4:], "not a sealed model file"),
    ],
)
def test_a_damaged_sealed_file_stops_start_up(
    tmp_path: Path, sealed_model: SealedModel, damage: object, message: str
) -> None:
    damaged = tmp_path / "damaged.sealed"
    damaged.write_bytes(damage(sealed_model.sealed.read_bytes()))  # type: ignore[operator]
    args = file_key_args(sealed_model)
    args[1] = str(damaged)
    result = run_engine(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "enclave-backend ready" not in result.stderr


def test_a_missing_key_file_is_a_clear_error(tmp_path: Path, sealed_model: SealedModel) -> None:
    result = run_engine(tmp_path, *file_key_args(sealed_model, tmp_path / "nope.key"))
    assert result.returncode == 2
    assert "the model key was not released: cannot read the key file" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--requantize", "q8_0"], "--requantize cannot be used with --sealed-model"),
        (["--model", "/x.gguf"], "give --sealed-model or --model, not both"),
        (["--key-resource", "a/b/c"], "--key-resource do not apply to --key-broker file"),
    ],
)
def test_flags_that_do_not_fit_a_sealed_model_are_refused(
    tmp_path: Path, sealed_model: SealedModel, extra: list[str], message: str
) -> None:
    result = run_engine(tmp_path, *file_key_args(sealed_model), *extra)
    assert result.returncode != 0
    assert message in result.stderr


def test_key_broker_flags_without_a_sealed_model_are_refused(tmp_path: Path) -> None:
    result = run_engine(tmp_path, "--key-broker", "kbs")
    assert result.returncode != 0
    assert "only apply with --sealed-model" in result.stderr


def test_a_sealed_embedding_model_reports_its_facts(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "key").write_bytes(key)
    result = seal_file(packaged_embedding_gguf(default_cache_dir()), tmp_path / "e.sealed", key)
    engine = start_engine(
        tmp_path,
        "--embedding",
        "--sealed-model",
        str(tmp_path / "e.sealed"),
        "--key-broker",
        "file",
        "--key-file",
        str(tmp_path / "key"),
    )
    try:
        health = engine.health()
        assert health["weights_sha256"] == result.header.plaintext_sha256
        assert health["sealed"]["sha256"] == result.sealed_sha256
        with engine.client() as client:
            reply = client.post("/v1/embeddings", json={"model": health["model"], "input": "hello"})
        assert reply.status_code == 200
        assert len(reply.json()["data"][0]["embedding"]) == 384
    finally:
        stop_engine(engine)
