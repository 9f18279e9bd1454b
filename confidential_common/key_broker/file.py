"""A key read from a file: for development only, and every log line and token says so."""

from __future__ import annotations

import logging
from pathlib import Path

from confidential_common.key_broker.base import KeyReleaseError

log = logging.getLogger("key_broker")
DEVELOPMENT_WARNING = (
    "DEVELOPMENT KEY FILE: the model key was read from disk, not released by a key broker "
    "after attestation. Anyone who can read that file can read the model. Not for production."
)


class FileKeyBroker:
    kind = "file"

    def __init__(self, path: Path) -> None:
        self._path = path

    def describe(self) -> str:
        return f"key file {self._path} ({DEVELOPMENT_WARNING})"

    def fetch(self) -> bytes:
        log.warning(DEVELOPMENT_WARNING)
        try:
            return self._path.read_bytes()
        except OSError as exc:
            raise KeyReleaseError(
                f"cannot read the key file {self._path}: {exc.strerror or exc}"
            ) from None
