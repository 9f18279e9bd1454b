"""The shared_state section: TLS unless loopback, no password in the file, clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import SharedStateConfig


def test_defaults_are_one_process_in_memory_failing_closed() -> None:
    section = SharedStateConfig()
    assert section.backend == "memory" and section.on_unavailable == "fail_closed"
    assert section.key_prefix == "cg:" and section.local_share_replicas == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "redis://10.0.0.5:6379/0"}, "only allowed to a loopback host"),
        ({"url": "redis://:secret@127.0.0.1/0"}, "password_env"),
        ({"url": "http://127.0.0.1:6379"}, "redis:// or rediss://"),
        ({"url": "redis://127.0.0.1/0", "ca_file": "/ca.pem"}, "only used with a rediss://"),
        ({"local_share_replicas": 3}, "only used with on_unavailable: local_share"),
        ({"key_prefix": "cg prefix"}, "letters, digits"),
        ({"local_share_replicas": 0, "on_unavailable": "local_share"}, "greater than or equal"),
    ],
)
def test_unsafe_or_inconsistent_settings_are_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SharedStateConfig(backend="redis", **settings)  # type: ignore[arg-type]


def test_tls_anywhere_and_plaintext_only_when_asked_for() -> None:
    SharedStateConfig(backend="redis", url="rediss://redis.svc:6380/0", ca_file="/ca.pem")  # type: ignore[arg-type]
    SharedStateConfig(backend="redis", url="redis://10.0.0.5/0", allow_plaintext=True)
    SharedStateConfig(backend="redis", url="redis://localhost:6379/1")
