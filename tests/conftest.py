"""Fixtures shared by every test package: the capture upstream process."""

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

from tests.gateway.conftest import free_port


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
