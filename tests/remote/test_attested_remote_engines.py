"""Gateway + remote engines on loopback over attested TLS, as separate processes.

Two engines serve the model: load spreads over both, and when one is killed traffic goes on
through the other. A third engine's evidence carries an unexpected measurement: the gateway
refuses it and never sends it a prompt.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from confidential_common.tee.providers import code_measurement
from gateway.auth import hash_key
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RemoteEngine:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def health(self) -> dict:
        return httpx.get(self.url + "/health", verify=False, timeout=5).json()


def start_engine(tmp: Path, name: str) -> RemoteEngine:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "enclave_backend",
            "--host",
            "127.0.0.1",
            "--tls-port",
            str(port),
            "--attestation",
            "simulated",
            "--slots",
            "2",
            "--ctx-per-slot",
            "512",
            "--model-name",
            "smollm2",
            "--threads",
            "1",
        ],
        stdout=(tmp / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    engine = RemoteEngine(port, process)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (tmp / f"{name}.log").read_text()
        try:
            engine.health()
            return engine
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "remote engine did not start"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningGateway, list[RemoteEngine]]]:
    tmp = tmp_path_factory.mktemp("remote")
    engines = [start_engine(tmp, f"engine-{i}") for i in range(3)]
    # What the engine process runs: its own package and the one it shares with the gateway.
    measurement = code_measurement([ROOT / "enclave_backend", ROOT / "confidential_common"])

    def attested(engine: RemoteEngine, expected: str) -> dict:
        return {
            "kind": "remote",
            "base_url": engine.url + "/v1",
            "model": "smollm2",
            "attestation": {
                "allow_simulated": True,
                "expected_measurements": {"code_sha256": expected},
            },
        }

    config = {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [{"name": "full", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "smollm2",
                "deployments": [
                    attested(engines[0], measurement),
                    attested(engines[1], measurement),
                ],
            },
            {"name": "rogue", "deployments": [attested(engines[2], "00" * 32)]},
        ],
        "routing": {"probe_interval_s": 0.5, "failure_threshold": 1, "cooldown_s": 1},
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "off"},
        "run_dir": str(tmp / "run"),
    }
    # "rogue" never becomes ready (that is the point): wait for the main model only.
    gateway = start_gateway(tmp, config, ready_models=["smollm2"])
    try:
        yield gateway, engines
    finally:
        stop_gateway(gateway)
        for engine in engines:
            if engine.process.poll() is None:
                engine.process.terminate()
                engine.process.wait(timeout=30)


def served_by(response: httpx.Response) -> str:
    claims = json.loads(
        base64.urlsafe_b64decode(response.headers["x-attestation-token"].split(".")[1] + "==")
    )
    upstream = claims["upstream"]
    assert upstream["attested"] is True and upstream["kind"] == "attested-remote"
    return str(upstream["name"])


def ask(gateway: RunningGateway, model: str = "smollm2") -> httpx.Response:
    with gateway.client() as client:
        return client.post(
            "/v1/chat/completions",
            json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
        )


def test_load_spreads_over_both_attested_engines(
    cluster: tuple[RunningGateway, list[RemoteEngine]],
) -> None:
    gateway, engines = cluster
    names = set()
    for _ in range(6):
        response = ask(gateway)
        assert response.status_code == 200, response.text
        names.add(served_by(response))
    assert names == {"smollm2/attested-0", "smollm2/attested-1"}
    assert all(engines[i].health()["requests"]["completed"] > 0 for i in (0, 1))


def test_a_remote_with_an_unexpected_measurement_gets_no_prompt(
    cluster: tuple[RunningGateway, list[RemoteEngine]],
) -> None:
    gateway, engines = cluster
    response = ask(gateway, "rogue")
    assert response.status_code == 503
    assert engines[2].health()["requests"]["completed"] == 0
    assert engines[2].health()["decode_steps"] == 0
    log = gateway.log_path.read_text()
    assert "remote engine rogue/attested-0 refused" in log
    assert "measurement code_sha256 is not the expected value" in log
    with gateway.client() as client:
        assert client.get("/ready").json()["models"]["rogue"] is False


def test_traffic_continues_when_one_engine_is_killed(
    cluster: tuple[RunningGateway, list[RemoteEngine]],
) -> None:
    gateway, engines = cluster
    engines[0].process.send_signal(signal.SIGKILL)
    engines[0].process.wait(timeout=30)
    for _ in range(6):
        response = ask(gateway)
        assert response.status_code == 200, response.text
        assert served_by(response) == "smollm2/attested-1"
