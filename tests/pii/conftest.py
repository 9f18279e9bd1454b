"""A capture upstream process and gateways in front of it, for the PII tests."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.auth import hash_key
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway


@dataclass
class CaptureUpstream:
    url: str
    record: Path
    process: subprocess.Popen[bytes]

    def requests(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def received_bytes(self) -> bytes:
        """Everything it received: bodies and headers, raw."""
        out = b""
        for request in self.requests():
            out += base64.b64decode(request["body"]) + json.dumps(request["headers"]).encode()
        return out


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaptureUpstream]:
    tmp = tmp_path_factory.mktemp("capture")
    port = free_port()
    record = tmp / "received.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.capture_upstream",
            "--port",
            str(port),
            "--record",
            str(record),
        ],
        stdout=(tmp / "capture.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/v1/models", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "capture upstream did not start"
            time.sleep(0.1)
    record.unlink(missing_ok=True)
    yield CaptureUpstream(url, record, process)
    process.terminate()
    process.wait(timeout=30)


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
