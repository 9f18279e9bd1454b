"""A gateway as `make run` serves it (config/gateway.yaml: TLS, PII tokenization, the default
model at 2048 tokens per slot), for the real clients: SDKs, agent frameworks, frontends.

It runs in a scratch directory laid out like the repository after `make run`
(``.run/api-key``, ``.run/gateway-cert.pem``), so README snippets run there unchanged but
for the port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.auth import hash_key
from tests.gateway.conftest import RunningGateway, free_port, start_gateway, stop_gateway

ROOT = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"
KEY = "sk-clients-0123456789abcdef"


def default_config(run_dir: Path, port: int) -> dict:
    config = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    config["listener"]["port"] = port
    config["tls"]["cert_out"] = str(run_dir / "gateway-cert.pem")
    config["run_dir"] = str(run_dir)
    config["api_keys"] = [{"name": "local", "sha256": hash_key(KEY)}]
    config["models"][0]["deployments"][0]["slots"] = 2
    return config


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("served")
    run_dir = home / ".run"
    run_dir.mkdir()
    (run_dir / "api-key").write_text(KEY + "\n")
    running = start_gateway(home, default_config(run_dir, free_port()))
    try:
        yield running
    finally:
        stop_gateway(running)
