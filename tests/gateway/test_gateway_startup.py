"""Start-up: bad configuration stops the gateway with a message naming the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.gateway.conftest import RunningGateway


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invalid_config_names_the_key_path(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api_keys": [{"name": "k", "sha256": "0" * 64}],
                "models": [{"name": "m", "deployments": [{"kind": "local", "slots": -1}]}],
            }
        )
    )
    result = serve(config)
    assert result.returncode == 2
    assert "models[0].deployments[0].slots" in result.stderr


def test_plain_http_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listener": {"host": "0.0.0.0", "plain_http": True},
                "api_keys": [{"name": "k", "sha256": "0" * 64}],
                "models": [{"name": "m", "deployments": [{"kind": "local"}]}],
            }
        )
    )
    result = serve(config)
    assert result.returncode == 2
    assert "plain_http is only allowed on a loopback address" in result.stderr


def test_engine_that_cannot_start_stops_the_gateway_clearly(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listener": {"port": 0},
                "tls": {"cert_out": str(tmp_path / "cert.pem")},
                "api_keys": [{"name": "k", "sha256": "0" * 64}],
                "models": [
                    {
                        "name": "m",
                        "deployments": [
                            {"kind": "local", "model_path": str(tmp_path / "missing.gguf")}
                        ],
                    }
                ],
                "attestation": {"provider": "simulated"},
                "run_dir": str(tmp_path / "run"),
            }
        )
    )
    result = serve(config)
    assert result.returncode == 2
    assert "missing.gguf does not exist" in result.stderr


def test_hardware_attestation_without_a_tee_refuses_to_start(tmp_path: Path) -> None:
    for provider in ("auto", "tdx", "sev-snp"):
        config = tmp_path / f"{provider}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "listener": {"port": 0},
                    "tls": {"cert_out": str(tmp_path / "cert.pem")},
                    "api_keys": [{"name": "k", "sha256": "0" * 64}],
                    "models": [{"name": "m", "deployments": [{"kind": "local"}]}],
                    "attestation": {
                        "provider": provider,
                        "configfs_path": str(tmp_path / "no-tsm"),
                    },
                    "run_dir": str(tmp_path / "run"),
                }
            )
        )
        result = serve(config)
        assert result.returncode == 2, result.stderr
        assert "not a TDX or SEV-SNP guest" in result.stderr
        assert "simulated" not in result.stdout


def test_tls_private_key_is_never_written(gateway: RunningGateway) -> None:
    files = [p for p in gateway.run_dir.rglob("*") if p.is_file()]
    assert gateway.cert in files
    for path in files:
        if path.suffix == ".sock":
            continue
        assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_engines_stop_with_the_gateway_even_when_it_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import time

    from tests.gateway.conftest import free_port, gateway_config, start_gateway

    for sig in (signal.SIGTERM, signal.SIGKILL):
        run = tmp_path / sig.name
        run.mkdir()
        gateway = start_gateway(run, gateway_config(run, free_port(), free_port()))
        [engine_pid] = gateway.engine_pids()
        os.kill(gateway.process.pid, sig)
        gateway.process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{engine_pid}").exists():
            status = Path(f"/proc/{engine_pid}/status").read_text()
            if "State:\tZ" in status:
                break
            assert time.monotonic() < deadline, f"engine survived the gateway's {sig.name}"
            time.sleep(0.1)
