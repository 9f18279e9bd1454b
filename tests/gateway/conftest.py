"""A real gateway process (TLS, real engine child) shared by the gateway tests."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.auth import hash_key

MODEL = "smollm2"
KEY = "sk-test-full-0123456789"
LIMITED_KEY = "sk-test-limited-0123456789"
NARROW_KEY = "sk-test-narrow-0123456789"
REVOKED_KEY = "sk-test-revoked-0123456789"
LIMITED_RPM = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningGateway:
    url: str
    cert: Path
    run_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, key: str | None = KEY, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.cert)),
            headers=headers,
            timeout=timeout,
        )

    def tls_context(self) -> ssl.SSLContext:
        """Trust exactly the certificate the gateway wrote, as a client is told to."""
        return ssl.create_default_context(cafile=str(self.cert))

    def engine_socket(self) -> Path:
        return self.run_dir / "engines" / f"{MODEL}-0-0.sock"

    def engine_health(self) -> dict:
        transport = httpx.HTTPTransport(uds=str(self.engine_socket()))
        with httpx.Client(transport=transport, base_url="http://engine", timeout=10) as client:
            return client.get("/health").json()

    def engine_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        return [p for p in pids if b"enclave_backend" in Path(f"/proc/{p}/cmdline").read_bytes()]

    def wait_engine_idle(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.engine_health()
                if health["slots"]["busy"] == 0 and health["queue"]["depth"] == 0:
                    return health
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("engine did not become idle")
            time.sleep(0.05)


def gateway_config(tmp: Path, port: int, dead_port: int) -> dict:
    return {
        "listener": {
            "host": "127.0.0.1",
            "port": port,
            "max_body_bytes": 65536,
            "body_timeout_s": 2,
        },
        "tls": {"names": ["localhost", "127.0.0.1"], "cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [
            {"name": "full", "sha256": hash_key(KEY)},
            {
                "name": "limited",
                "sha256": hash_key(LIMITED_KEY),
                "requests_per_minute": LIMITED_RPM,
            },
            {"name": "narrow", "sha256": hash_key(NARROW_KEY), "models": ["dead"]},
            {"name": "revoked", "sha256": hash_key(REVOKED_KEY), "revoked": True},
        ],
        "models": [
            {"name": MODEL, "deployments": [{"kind": "local", "slots": 2, "ctx_per_slot": 512}]},
            {
                "name": "flaky",
                "deployments": [
                    {"kind": "remote", "base_url": f"http://127.0.0.1:{dead_port}/v1", "model": "x"}
                ],
                "fallback": MODEL,
            },
            {
                "name": "dead",
                "deployments": [{"kind": "remote", "base_url": f"http://127.0.0.1:{dead_port}/v1"}],
            },
        ],
        "routing": {"retries": 1, "failure_threshold": 2, "cooldown_s": 30, "probe_interval_s": 1},
        "engines": {"restart_backoff_initial_s": 0.2},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / "run"),
    }


def echo_gateway_config(tmp: Path, upstream_url: str, **listener: object) -> dict:
    """A gateway in front of one remote upstream (the capture double at ``upstream_url``)
    as model "echo": for tests of the gateway itself, with no engine to start."""
    return {
        "listener": {"host": "127.0.0.1", "port": free_port(), **listener},
        "tls": {"names": ["localhost", "127.0.0.1"], "cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [{"name": "k", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "echo",
                "deployments": [
                    {"kind": "remote", "base_url": upstream_url + "/v1", "model": "echo"}
                ],
            }
        ],
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "off"},
        "run_dir": str(tmp / "run"),
    }


def start_gateway(
    tmp: Path, config: dict, ready_models: list[str] | None = None, key: str = KEY
) -> RunningGateway:
    """Start a gateway process and wait until it is ready: every model, or ``ready_models``
    (seen through ``key``, which must be allowed to use them)."""
    config_path = tmp / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp / "gateway.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config_path)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    cert = Path(config["tls"]["cert_out"])
    url = f"https://127.0.0.1:{config['listener']['port']}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{log_path.read_text()}")
        if cert.exists():
            try:
                context = ssl.create_default_context(cafile=str(cert))
                # The per-model view needs a key; whether all is ready does not.
                headers = {"Authorization": f"Bearer {key}"} if ready_models else {}
                ready = httpx.get(url + "/ready", verify=context, timeout=2, headers=headers).json()
                models = ready.get("models") or {}
                if ready_models and all(models.get(m) for m in ready_models):
                    break
                if not ready_models and ready["ready"]:
                    break
            except (httpx.TransportError, OSError, ValueError, KeyError):
                pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gateway did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return RunningGateway(url, cert, Path(config["run_dir"]), process, log_path)


def stop_gateway(gateway: RunningGateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    running = start_gateway(tmp, gateway_config(tmp, free_port(), free_port()))
    try:
        yield running
    finally:
        stop_gateway(running)
