"""The GGUF an engine loads: a plain file, the packaged default, or a sealed model in memory.

Both engine kinds (chat and embedding) resolve their weights here, so a sealed model works
the same for either, and ``/health`` (hence the gateway's tokens) reports the same facts:
the plaintext SHA-256 and, for a sealed model, the sealed file's hash, key id and broker.

A sealed model's key is fetched on a background thread started as soon as the command line
is read (``KeyFetch``), so the broker's round trip (attestation included) overlaps the
engine's imports instead of adding to them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confidential_common.key_broker.base import KeyBroker, KeyReleaseError
from confidential_common.key_broker.cdh import DEFAULT_CDH_URL, CdhKeyBroker
from confidential_common.key_broker.file import FileKeyBroker
from confidential_common.sealed.format import parse_key
from confidential_common.tee.providers import AttestationUnavailable, select_provider
from enclave_backend.model_file import ModelFileError, check_gguf, sha256_file
from enclave_backend.remote_face import CODE_ROOTS
from enclave_backend.sealed_weights import SealedFacts, SealedModelError, unseal_into_memory
from enclave_backend.settings import EngineSettings, KeyBrokerSettings

log = logging.getLogger("enclave_backend")
SEALED_SUFFIXES = (".sealed", ".gguf")


@dataclass
class Weights:
    path: Path  # what llama.cpp opens
    sha256: str  # of the plaintext GGUF
    name: str  # the default model id: the file's stem
    sealed: SealedFacts | None = None
    _unsealed_close: Callable[[], None] | None = None

    def close(self) -> None:
        """Drop the in-memory plaintext of a sealed model (the model must be freed first)."""
        if self._unsealed_close is not None:
            self._unsealed_close()
            self._unsealed_close = None

    def health(self) -> dict[str, Any]:
        return {
            "weights_sha256": self.sha256,
            "sealed": self.sealed.document() if self.sealed else None,
        }

    def describe(self) -> str:
        if self.sealed is None:
            return f"weights={self.path.name} sha256={self.sha256[:16]}..."
        return (
            f"weights=sealed:{self.name} sha256={self.sha256[:16]}... "
            f"key_id={self.sealed.key_id} key_broker={self.sealed.key_broker}"
        )


def key_broker(settings: KeyBrokerSettings, attestation: str) -> KeyBroker:
    """The broker client the settings name; raises SealedModelError on a bad combination."""
    try:
        if settings.kind == "file":
            if settings.key_file is None:
                raise ValueError("--key-broker file needs --key-file")
            return FileKeyBroker(settings.key_file)
        if settings.resource is None:
            raise ValueError(f"--key-broker {settings.kind} needs --key-resource")
        if settings.kind == "cdh":
            return CdhKeyBroker(settings.resource, url=settings.url or DEFAULT_CDH_URL)
        if settings.kind == "kbs":
            from confidential_common.key_broker.kbs import KbsKeyBroker

            if settings.url is None:
                raise ValueError("--key-broker kbs needs --key-broker-url")
            try:
                provider = select_provider(attestation, code_roots=CODE_ROOTS)
            except AttestationUnavailable as exc:
                raise KeyReleaseError(
                    f"a KBS releases keys only to an attested guest, and attestation "
                    f"({attestation}) is unavailable: {exc}"
                ) from None
            return KbsKeyBroker(
                settings.url, settings.resource, provider=provider, ca_file=settings.ca_file
            )
    except (ValueError, KeyReleaseError) as exc:
        raise SealedModelError(str(exc)) from None
    raise SealedModelError(f"unknown key broker {settings.kind!r} (kbs, cdh or file)")


class KeyFetch:
    """A sealed model's key, fetched by ``broker`` on a daemon thread from construction on."""

    def __init__(self, broker: KeyBroker) -> None:
        self.broker = broker
        self._result: Future[bytes] = Future()
        threading.Thread(target=self._run, name="key-fetch", daemon=True).start()

    @classmethod
    def start(cls, settings: EngineSettings) -> KeyFetch | None:
        """Start fetching the key the settings' sealed model needs; None for a plain model."""
        if settings.sealed_model is None or settings.key_broker is None:
            return None
        return cls(key_broker(settings.key_broker, settings.attestation))

    def _run(self) -> None:
        started = time.monotonic()
        try:
            log.info("fetching the model key from %s", self.broker.describe())
            material = self.broker.fetch()
        except BaseException as exc:  # handed to whoever waits for the key
            self._result.set_exception(exc)
            return
        log.info(
            "model key released by the %s broker in %.2fs",
            self.broker.kind,
            time.monotonic() - started,
        )
        self._result.set_result(material)

    def key(self) -> bytes:
        """The master key once released; raises SealedModelError."""
        try:
            material = self._result.result()
        except KeyReleaseError as exc:
            raise SealedModelError(f"the model key was not released: {exc}") from None
        try:
            return parse_key(material)
        except ValueError as exc:
            raise SealedModelError(
                f"the key from the {self.broker.kind} broker is unusable: {exc}"
            ) from None


def sealed_name(path: Path) -> str:
    name = path.name
    for suffix in SEALED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name or path.name


def open_sealed(path: Path, fetch: KeyFetch) -> Weights:
    """Unseal ``path`` with the key ``fetch`` brings; raises SealedModelError."""
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        raise SealedModelError(f"sealed model {path} does not exist or is not a file")
    unsealed = unseal_into_memory(resolved, fetch.key(), key_broker=fetch.broker.kind)
    try:
        check_gguf(unsealed.path)
    except ModelFileError:
        unsealed.close()
        raise SealedModelError(
            f"sealed model {path} decrypts to a file that is not a GGUF"
        ) from None
    return Weights(
        unsealed.path, unsealed.plaintext_sha256, sealed_name(path), unsealed.facts, unsealed.close
    )


def plain(path: Path) -> Weights:
    checked = check_gguf(path)
    return Weights(checked, sha256_file(checked), checked.stem)


def resolve_weights(
    settings: EngineSettings, packaged: Callable[[], Path], key: KeyFetch | None = None
) -> Weights:
    """The settings' weights: sealed (with ``key``, else a fetch started now), by path, or
    ``packaged()``; raises ModelFileError or SealedModelError."""
    if settings.sealed_model is not None:
        fetch = key or KeyFetch.start(settings)
        if fetch is None:
            raise SealedModelError("a sealed model needs a key broker (--key-broker)")
        return open_sealed(settings.sealed_model, fetch)
    if settings.model_path is not None:
        return plain(settings.model_path.expanduser().resolve())
    return plain(packaged())
