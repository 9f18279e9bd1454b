"""A real engine process with the packaged default model, shared by the engine tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MODEL = "SmolLM2-135M-Instruct.Q4_1"
SLOTS = 4
QUEUE = 4
CTX_PER_SLOT = 512


@dataclass
class RunningEngine:
    socket: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://engine",
            timeout=timeout,
        )

    def async_client(self, timeout: float = 120.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
            base_url="http://engine",
            timeout=timeout,
        )

    def health(self) -> dict:
        with self.client() as client:
            return client.get("/health").json()

    def wait_idle(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health["slots"]["busy"] == 0 and health["queue"]["depth"] == 0:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"engine did not become idle: {health}")
            time.sleep(0.05)


def start_engine(tmp: Path, *extra: str) -> RunningEngine:
    socket = tmp / "engine.sock"
    log_path = tmp / "engine.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "enclave_backend", "--socket", str(socket), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"engine exited: {log_path.read_text()}")
        if socket.exists():
            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as client:
                    if client.get("http://engine/health").status_code == 200:
                        break
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"engine did not start: {log_path.read_text()}")
        time.sleep(0.1)
    return RunningEngine(socket=socket, process=process, log_path=log_path)


def stop_engine(engine: RunningEngine) -> None:
    engine.process.terminate()
    try:
        engine.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        engine.process.kill()
        engine.process.wait()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(
        tmp_path_factory.mktemp("engine"),
        "--slots",
        str(SLOTS),
        "--queue",
        str(QUEUE),
        "--ctx-per-slot",
        str(CTX_PER_SLOT),
    )
    try:
        yield running
    finally:
        stop_engine(running)
