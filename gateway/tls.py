"""The listener's TLS identity, as ``tls:`` in the gateway's config asks for it: the
operator's files when both are set, else a key generated in memory at start-up
(``confidential_common.tls`` makes either)."""

from __future__ import annotations

from confidential_common.tls import (
    TLSIdentity,
    TLSSetupError,
    generated_identity,
    identity_from_files,
)
from gateway.config import TLSConfig


def load_identity(config: TLSConfig) -> TLSIdentity:
    if config.cert_file is None or config.key_file is None:
        return generated_identity(config.names, config.cert_out)
    try:
        return identity_from_files(config.cert_file, config.key_file)
    except TLSSetupError as exc:
        raise TLSSetupError(f"tls.cert_file / tls.key_file: {exc}") from None
