"""compose.yaml is validated by parsing (no Docker engine runs here): every service, port,
volume, config file and cross-reference it names must exist and agree with the gateway's
own configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_expected_services_exist() -> None:
    assert set(SERVICES) == {
        "gateway",
        "engine-1",
        "engine-2",
        "otel-collector",
        "jaeger",
        "prometheus",
    }
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name


def test_builds_point_at_a_dockerfile_that_exists_and_pins_the_same_llama_build() -> None:
    pin = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("llama-cpp-python==")
    )
    for name, service in SERVICES.items():
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / build["context"]
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), name
        text = dockerfile.read_text()
        assert f"ARG LLAMA_CPP_PYTHON={pin.split('==')[1]}" in text
        for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
            for path in copied.split():
                assert (context / path).exists(), f"Dockerfile copies missing {path}"


def test_configs_and_volumes_are_declared_and_exist() -> None:
    declared_configs = COMPOSE.get("configs", {})
    for name, config in declared_configs.items():
        assert (ROOT / config["file"]).is_file(), name
    declared_volumes = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for config in service.get("configs", []):
            assert config["source"] in declared_configs, f"{name}: {config['source']}"
            assert config["target"].startswith("/"), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in declared_volumes, f"{name}: volume {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_ports_are_well_formed_and_dashboards_stay_on_loopback() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            parts = str(port).split(":")
            assert all(p.isdigit() for p in parts[-2:]), f"{name}: {port}"
            if name in {"jaeger", "prometheus"}:
                assert parts[0] == "127.0.0.1", f"{name} dashboard must bind loopback"
        for port in service.get("expose", []):
            assert str(port).isdigit(), f"{name}: {port}"
    assert "8443:8443" in SERVICES["gateway"]["ports"]


def mounted(service: str, target: str) -> Path:
    source = next(c["source"] for c in SERVICES[service]["configs"] if c["target"] == target)
    return ROOT / COMPOSE["configs"][source]["file"]


def test_the_gateway_config_is_valid_and_reaches_the_engine_services() -> None:
    command = SERVICES["gateway"]["command"]
    config_path = mounted("gateway", command[command.index("--config") + 1])
    config = load_config(config_path, env={"GATEWAY_API_KEY_SHA256": "a" * 64})
    remotes = [d for m in config.models for d in m.deployments]
    for deployment in remotes:
        assert deployment.kind == "remote" and deployment.attestation is not None
        host, port = re.match(r"https://([^:/]+):(\d+)/", deployment.base_url).groups()
        assert host in SERVICES, host
        engine_command = SERVICES[host]["command"]
        assert engine_command[engine_command.index("--tls-port") + 1] == port
        assert port in [str(p) for p in SERVICES[host]["expose"]]
    otlp = config.telemetry.otlp_endpoint or ""
    collector_host, collector_port = re.match(r"http://([^:/]+):(\d+)", otlp).groups()
    assert collector_host == "otel-collector"
    assert collector_port in [str(p) for p in SERVICES["otel-collector"]["expose"]]
    assert config.listener.host == "0.0.0.0" and not config.listener.plain_http


def test_collector_and_prometheus_configs_match_the_services() -> None:
    otel = yaml.safe_load(mounted("otel-collector", "/etc/otelcol/config.yaml").read_text())
    assert otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    exporter = otel["exporters"]["otlp/jaeger"]["endpoint"]
    assert exporter.split(":")[0] in SERVICES
    assert otel["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
    prometheus = yaml.safe_load(mounted("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
    gateway_config = load_config(
        ROOT / "config" / "compose-gateway.yaml", env={"GATEWAY_API_KEY_SHA256": "a" * 64}
    )
    assert target == f"gateway:{gateway_config.telemetry.metrics_port}"


@pytest.mark.parametrize("name", ["engine-1", "engine-2"])
def test_engine_commands_parse_with_the_engine_cli(name: str) -> None:
    from enclave_backend.cli import build_parser, settings_from_args

    command = [a.replace("${ATTESTATION:-auto}", "auto") for a in SERVICES[name]["command"]]
    assert command[0] == "engine"
    settings = settings_from_args(build_parser().parse_args(command[1:]))
    assert settings.tls_port == 9443 and settings.host == "0.0.0.0"


TRUSTEE = yaml.safe_load((ROOT / "compose.trustee.yaml").read_text())


def test_the_trustee_variant_adds_a_kbs_and_seals_both_engines() -> None:
    assert set(TRUSTEE["services"]) == {"kbs", "engine-1", "engine-2"}
    assert set(TRUSTEE["services"]) - {"kbs"} <= set(SERVICES)
    kbs = TRUSTEE["services"]["kbs"]
    assert kbs["image"].startswith("ghcr.io/confidential-containers/")
    for port in kbs["ports"]:
        assert port.startswith("127.0.0.1:"), port
    for volume in kbs["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (
                source in {"./config/trustee/tls", "./config/trustee/admin.pub"}
                or (ROOT / source).exists()
            ), source
        else:
            assert source in TRUSTEE["volumes"], source
    kbs_config = tomllib.loads((ROOT / "config" / "trustee" / "kbs-config.toml").read_text())
    assert kbs_config["http_server"]["insecure_http"] is False  # the engine needs https
    assert kbs_config["http_server"]["sockets"] == ["0.0.0.0:8080"]
    assert kbs["command"][-1] == "/etc/kbs/kbs-config.toml"


@pytest.mark.parametrize("name", ["engine-1", "engine-2"])
def test_the_trustee_engine_commands_parse_with_the_engine_cli(name: str) -> None:
    from enclave_backend.cli import build_parser, settings_from_args

    command = [
        a.replace("${ATTESTATION:-auto}", "tdx") for a in TRUSTEE["services"][name]["command"]
    ]
    settings = settings_from_args(build_parser().parse_args(command[1:]))
    assert settings.sealed_model is not None and settings.key_broker is not None
    assert settings.key_broker.kind == "kbs"
    assert settings.key_broker.url == "https://kbs:8080"
    assert settings.key_broker.ca_file is not None
    mounted = {v.split(":")[1] for v in TRUSTEE["services"][name]["volumes"]}
    assert str(settings.key_broker.ca_file) in mounted
    assert any(str(settings.sealed_model).startswith(m) for m in mounted)
    # The base file's engine keeps the same listener: only the weights change.
    base = [a.replace("${ATTESTATION:-auto}", "tdx") for a in SERVICES[name]["command"]]
    assert command[: len(base)] == base
