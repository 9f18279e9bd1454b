"""Open a sealed model in memory: key from the broker, decrypted into a memfd, verified.

The plaintext never touches a disk: it is decrypted straight into an anonymous memory file
(``memfd_create``, close-on-exec), authenticated chunk by chunk and hashed as it goes. Only
when the SHA-256 of the whole plaintext equals the one the (authenticated) header names is the
memfd sealed against any change and handed to llama.cpp, by its ``/proc/self/fd`` path. Any
failure closes the memfd first, so no partial model is ever loaded. The memfd lives as long
as this process and the model's mapping; nothing remains after exit.

The sealed file is hashed in the same read, on a second thread (hashlib releases the GIL),
so the token can name the exact file the weights came from.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confidential_common.sealed.format import SealedFileError, SealedReader

MEMFD_NAME = "sealed-model"
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
# Sealed-file chunks waiting for the hashing thread: bounds the memory a fast decrypt holds.
_HASH_BACKLOG = 2


class SealedModelError(Exception):
    """The sealed model cannot be opened: the key was refused, or the file is not intact."""


@dataclass(frozen=True)
class SealedFacts:
    """What tokens and /health say of a sealed model (public facts only)."""

    sha256: str  # the sealed file as stored
    key_id: str
    key_broker: str  # "kbs" | "cdh" | "file"

    def document(self) -> dict[str, str]:
        return {"sha256": self.sha256, "key_id": self.key_id, "key_broker": self.key_broker}


@dataclass
class UnsealedModel:
    fd: int
    size: int
    plaintext_sha256: str
    facts: SealedFacts

    @property
    def path(self) -> Path:
        """A path llama.cpp can open, valid in this process while ``fd`` is open."""
        return Path(f"/proc/self/fd/{self.fd}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _OrderedHasher:
    """SHA-256 of a byte stream, updated on one worker thread in submission order."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._digest = hashlib.sha256()
        self._pool = pool
        self._pending: collections.deque[Future[None]] = collections.deque()

    def feed(self, data: bytes) -> None:
        self._pending.append(self._pool.submit(self._digest.update, data))
        while len(self._pending) > _HASH_BACKLOG:
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        while self._pending:
            self._pending.popleft().result()
        return self._digest.hexdigest()


def unseal_into_memory(path: Path, key: bytes, *, key_broker: str) -> UnsealedModel:
    """Decrypt and verify ``path`` into a sealed memfd; raises SealedModelError."""
    try:
        reader = SealedReader(path, key)
    except OSError as exc:
        raise SealedModelError(f"cannot read the sealed model {path}: {exc.strerror}") from None
    except SealedFileError as exc:
        raise SealedModelError(f"sealed model {path}: {exc}") from None
    with reader:
        header = reader.header
        if header.plaintext_size == 0:
            raise SealedModelError(f"sealed model {path} holds an empty file, not a model")
        memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if header.plaintext_size > memory_bytes:
            raise SealedModelError(
                f"sealed model {path} is {header.plaintext_size >> 20} MiB decrypted, more than "
                f"this machine's {memory_bytes >> 20} MiB of memory (it is decrypted into memory)"
            )
        fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, header.plaintext_size)
            plain = hashlib.sha256()
            with ThreadPoolExecutor(1, thread_name_prefix="sealed-hash") as pool:
                sealed_hash = _OrderedHasher(pool)
                with mmap.mmap(fd, header.plaintext_size) as memory:
                    view = memoryview(memory)
                    try:
                        for chunk in reader.decrypt(
                            lambda offset, length: view[offset : offset + length],
                            hash_sealed=sealed_hash.feed,
                        ):
                            plain.update(chunk)
                            chunk.release()
                    finally:
                        view.release()
                sealed_sha256 = sealed_hash.hexdigest()
            if plain.hexdigest() != header.plaintext_sha256:
                raise SealedFileError(
                    "the decrypted weights do not have the SHA-256 the sealed header names"
                )
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        except SealedFileError as exc:
            os.close(fd)
            raise SealedModelError(f"sealed model {path}: {exc}") from None
        except OSError as exc:  # ftruncate or mmap of the memfd: out of memory
            os.close(fd)
            raise SealedModelError(
                f"sealed model {path}: {exc.strerror or exc} while decrypting its "
                f"{header.plaintext_size >> 20} MiB into memory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
    return UnsealedModel(
        fd,
        header.plaintext_size,
        header.plaintext_sha256,
        SealedFacts(sealed_sha256, header.key_id, key_broker),
    )
