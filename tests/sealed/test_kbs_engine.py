"""A sealed model whose key a KBS (the protocol-faithful test server) releases after attestation.

The engine runs with the simulated TEE, so the KBS sees Trustee's ``sample`` evidence with our
simulated document; the test server accepts it only when its policy says so, and then checks
the document's measurement against the policy's reference values, as a real policy checks a
TDX guest's mrtd.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from confidential_common.tee.keys import b64url_decode
from confidential_common.tee.providers import code_measurement
from enclave_backend.remote_face import CODE_ROOTS
from gateway.auth import hash_key
from tests.engine.conftest import start_engine, stop_engine
from tests.gateway.conftest import KEY, free_port, start_gateway, stop_gateway
from tests.sealed.conftest import SealedModel, run_engine
from tests.support.kbs_process import (
    cdh_server_process,
    kbs_server_process,
    make_tls_files,
    write_policy,
)

RESOURCE = "default/models/smollm2"
ENGINE_MEASUREMENT = code_measurement(CODE_ROOTS)


def kbs_args(model: SealedModel, url: str, *extra: str) -> list[str]:
    return [
        "--sealed-model",
        str(model.sealed),
        "--key-broker",
        "kbs",
        "--key-broker-url",
        url,
        "--key-resource",
        RESOURCE,
        "--attestation",
        "simulated",
        "--slots",
        "2",
        "--ctx-per-slot",
        "512",
        *extra,
    ]


def chat(engine_client: object, model: str) -> str:
    reply = engine_client.post(  # type: ignore[attr-defined]
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


def trusting_policy(tmp_path: Path, model: SealedModel) -> Path:
    """A KBS policy that releases the model's key to this engine's (simulated) measurement."""
    return write_policy(
        tmp_path,
        resources={RESOURCE: model.key},
        accept_sample=True,
        reference_values={"code_sha256": [ENGINE_MEASUREMENT]},
    )


def test_the_kbs_releases_the_key_to_the_expected_measurement(
    tmp_path: Path, sealed_model: SealedModel
) -> None:
    policy = trusting_policy(tmp_path, sealed_model)
    with kbs_server_process(policy) as kbs:
        engine = start_engine(tmp_path, *kbs_args(sealed_model, kbs.url))
        try:
            health = engine.health()
            assert health["weights_sha256"] == sealed_model.plaintext_sha256
            assert health["sealed"]["key_broker"] == "kbs"
            assert health["sealed"]["key_id"] == sealed_model.key_id
            with engine.client() as client:
                assert chat(client, health["model"])
        finally:
            stop_engine(engine)
        log = kbs.log()
    assert "/kbs/v0/auth" in log and "/kbs/v0/attest" in log and RESOURCE in log
    assert sealed_model.key.hex() not in log


def test_over_https_with_the_kbs_ca(tmp_path: Path, sealed_model: SealedModel) -> None:
    tls = make_tls_files(tmp_path)
    policy = write_policy(tmp_path, resources={RESOURCE: sealed_model.key}, accept_sample=True)
    with kbs_server_process(policy, tls=tls) as kbs:
        assert kbs.url.startswith("https://")
        untrusted = run_engine(tmp_path, *kbs_args(sealed_model, kbs.url))
        assert untrusted.returncode == 2
        assert "cannot reach the KBS" in untrusted.stderr
        engine = start_engine(
            tmp_path, *kbs_args(sealed_model, kbs.url, "--key-broker-ca-file", str(tls.ca_cert))
        )
        try:
            assert engine.health()["sealed"]["key_broker"] == "kbs"
        finally:
            stop_engine(engine)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"accept_sample": True, "reference_values": {"code_sha256": ["0" * 64]}},
            "the KBS refused this guest's attestation (HTTP 401)",
        ),
        ({"accept_sample": False}, "the KBS refused this guest's attestation (HTTP 401)"),
        (
            {"accept_sample": True, "allowed": {RESOURCE: {"code_sha256": ["0" * 64]}}},
            f"the KBS policy does not release {RESOURCE} to this guest (HTTP 403)",
        ),
    ],
    ids=["other-measurement", "sample-not-trusted", "resource-policy"],
)
def test_a_guest_the_policy_does_not_trust_gets_no_key_and_does_not_start(
    tmp_path: Path, sealed_model: SealedModel, policy: dict, message: str
) -> None:
    path = write_policy(tmp_path, resources={RESOURCE: sealed_model.key}, **policy)
    with kbs_server_process(path) as kbs:
        result = run_engine(tmp_path, *kbs_args(sealed_model, kbs.url))
    assert result.returncode == 2
    assert message in result.stderr
    assert "enclave-backend ready" not in result.stderr


def test_trustees_own_statuses_are_understood(tmp_path: Path, sealed_model: SealedModel) -> None:
    """Trustee's code answers a withheld resource 401 PolicyDeny, not its document's 403."""
    path = write_policy(
        tmp_path,
        resources={RESOURCE: sealed_model.key},
        accept_sample=True,
        allowed={RESOURCE: {"code_sha256": ["0" * 64]}},
    )
    with kbs_server_process(path, statuses="trustee") as kbs:
        result = run_engine(tmp_path, *kbs_args(sealed_model, kbs.url))
    assert result.returncode == 2
    assert f"the KBS policy does not release {RESOURCE} to this guest (HTTP 401)" in result.stderr


def test_a_missing_resource_stops_start_up(tmp_path: Path, sealed_model: SealedModel) -> None:
    path = write_policy(tmp_path, resources={"default/models/other": b"x"}, accept_sample=True)
    with kbs_server_process(path) as kbs:
        result = run_engine(tmp_path, *kbs_args(sealed_model, kbs.url))
    assert result.returncode == 2
    assert f"the KBS has no resource {RESOURCE} (HTTP 404)" in result.stderr


def test_an_unreachable_kbs_stops_start_up(tmp_path: Path, sealed_model: SealedModel) -> None:
    result = run_engine(tmp_path, *kbs_args(sealed_model, f"http://127.0.0.1:{free_port()}"))
    assert result.returncode == 2
    assert "cannot reach the KBS" in result.stderr


def test_the_cdh_broker(tmp_path: Path, sealed_model: SealedModel) -> None:
    with cdh_server_process({RESOURCE: sealed_model.key_file}, tmp_path) as cdh:
        args = [
            "--sealed-model",
            str(sealed_model.sealed),
            "--key-broker",
            "cdh",
            "--key-broker-url",
            cdh.url,
            "--key-resource",
            RESOURCE,
            "--slots",
            "2",
            "--ctx-per-slot",
            "512",
        ]
        engine = start_engine(tmp_path, *args)
        try:
            assert engine.health()["sealed"]["key_broker"] == "cdh"
        finally:
            stop_engine(engine)
        missing = run_engine(tmp_path, *[a if a != RESOURCE else "default/models/x" for a in args])
    assert missing.returncode == 2
    assert "the Confidential Data Hub did not release default/models/x: HTTP 404" in missing.stderr


def _claims(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def test_through_the_gateway_every_token_names_the_sealed_weights(
    tmp_path: Path, sealed_model: SealedModel
) -> None:
    policy = trusting_policy(tmp_path, sealed_model)
    with kbs_server_process(policy) as kbs:
        config = {
            "listener": {"host": "127.0.0.1", "port": free_port()},
            "tls": {"names": ["127.0.0.1"], "cert_out": str(tmp_path / "run" / "cert.pem")},
            "api_keys": [{"name": "k", "sha256": hash_key(KEY)}],
            "models": [
                {
                    "name": "sealed",
                    "deployments": [
                        {
                            "kind": "local",
                            "slots": 2,
                            "ctx_per_slot": 512,
                            "sealed": {
                                "path": str(sealed_model.sealed),
                                "key_broker": {"kind": "kbs", "url": kbs.url, "resource": RESOURCE},
                            },
                        }
                    ],
                }
            ],
            "attestation": {"provider": "simulated"},
            "pii": {"ner": "off"},
            "run_dir": str(tmp_path / "run"),
        }
        gateway = start_gateway(tmp_path, config)
        try:
            with gateway.client() as client:
                reply = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "sealed",
                        "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 6,
                    },
                )
            assert reply.status_code == 200, reply.text
            model = _claims(reply.headers["x-attestation-token"])["model"]
        finally:
            stop_gateway(gateway)
    assert model["weights_sha256"] == sealed_model.plaintext_sha256
    assert model["sealed"] == {
        "sha256": sealed_model.sealed_sha256,
        "key_id": sealed_model.key_id,
        "key_broker": "kbs",
    }
    summary = gateway.log_path.read_text()
    assert "sealed:" in summary and RESOURCE in summary
