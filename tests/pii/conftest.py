"""Gateways in front of the capture upstream, for the PII tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import hash_key
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway


def pii_gateway_config(tmp: Path, capture: CaptureUpstream, **pii: object) -> dict:
    def route(name: str, mode: str, **extra: object) -> dict:
        return {
            "name": name,
            "deployments": [{"kind": "remote", "base_url": capture.url + "/v1", "model": name}],
            "pii": {"mode": mode, **extra},
        }

    return {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [{"name": "full", "sha256": hash_key(KEY)}],
        "models": [
            route("capture", "tokenize"),
            route("capture-redact", "redact"),
            route("capture-block", "block"),
            route("capture-introduced", "tokenize", redact_introduced=True),
        ],
        "pii": {"ner": "on", **pii},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / "run"),
    }


@pytest.fixture(scope="session")
def pii_gateway(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("pii-gateway")
    running = start_gateway(tmp, pii_gateway_config(tmp, capture))
    try:
        yield running
    finally:
        stop_gateway(running)
