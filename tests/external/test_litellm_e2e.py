"""External providers through litellm: a real OpenAI-compatible server process on loopback.

The provider is the capture upstream (it records every byte and echoes), reached through
litellm's ``openai/<model>`` with ``api_base``; the client is the official OpenAI SDK.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.auth import hash_key
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway
from tests.pii.test_pii_e2e import PLANTED, PROMPT, assert_nothing_leaked

NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}
PROVIDER_KEY = "sk-provider-test-000000000000"


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def external_config(tmp: Path, capture: CaptureUpstream) -> dict:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [{"name": "full", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "ext",
                "deployments": [
                    {
                        "kind": "litellm",
                        "model": "openai/capture-model",
                        "api_base": capture.url + "/v1",
                        "api_key_env": "TEST_PROVIDER_KEY",
                    }
                ],
            },
            {
                "name": "local-small",
                "fallback": "ext",
                "deployments": [{"kind": "local", "slots": 1, "queue": 0, "ctx_per_slot": 512}],
            },
            {
                "name": "ext-dead",
                "fallback": "local-small",
                "deployments": [
                    {"kind": "litellm", "model": "openai/nobody", "api_base": dead, "timeout_s": 5}
                ],
            },
        ],
        "routing": {"retries": 0},
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "on"},
        "run_dir": str(tmp / "run"),
    }


@pytest.fixture(scope="module")
def external_gateway(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("external")
    os.environ["TEST_PROVIDER_KEY"] = PROVIDER_KEY
    try:
        running = start_gateway(tmp, external_config(tmp, capture))
    finally:
        del os.environ["TEST_PROVIDER_KEY"]
    try:
        yield running
    finally:
        stop_gateway(running)


def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(verify=gateway.tls_context()),
    )


def test_provider_sees_only_placeholders_and_client_gets_its_values_back(
    external_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    before = len(capture.requests())
    client = sdk(external_gateway)
    messages = [
        {"role": "system", "content": f"Assist {PLANTED['name']}."},
        {"role": "user", "content": PROMPT},
    ]
    result = client.chat.completions.create(model="ext", messages=messages)
    assert result.choices[0].message.content == PROMPT
    assert result.model == "ext"
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="ext",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        if c.choices
    ]
    assert "".join(pieces) == PROMPT
    received = capture.requests()[before:]
    assert len(received) == 2
    assert all(r["headers"].get("authorization") == f"Bearer {PROVIDER_KEY}" for r in received)
    assert_nothing_leaked(capture)


def test_token_records_an_external_upstream_and_its_provider(
    external_gateway: RunningGateway,
) -> None:
    with external_gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "ext", "messages": [{"role": "user", "content": "hello there"}]},
        )
    assert response.status_code == 200
    upstream = claims_of(response.headers["x-attestation-token"])["upstream"]
    assert upstream == {
        "name": "ext/openai-0",
        "kind": "litellm",
        "in_guest": False,
        "attested": False,
        "provider": "openai",
    }


def test_provider_errors_map_to_openai_errors(external_gateway: RunningGateway) -> None:
    with external_gateway.client() as client:
        rejected = client.post(
            "/v1/chat/completions",
            json={
                "model": "ext",
                "messages": [{"role": "user", "content": "please-reject this one"}],
            },
        )
    assert rejected.status_code == 400
    error = rejected.json()["error"]
    assert error["code"] == "provider_rejected" and set(error) == {
        "message",
        "type",
        "param",
        "code",
    }


def test_saturated_local_engine_falls_back_to_the_external_provider(
    external_gateway: RunningGateway, capture: CaptureUpstream
) -> None:
    with (
        external_gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "local-small",
                "stream": True,
                "messages": [{"role": "user", "content": "Count to a thousand."}],
                **NEVER_ENDING,
            },
        ) as busy,
    ):
        lines = busy.iter_lines()
        for _ in range(4):
            next(lines)  # the only slot is now generating
        response = client.post(
            "/v1/chat/completions",
            json={"model": "local-small", "messages": [{"role": "user", "content": "echo me"}]},
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo me"
    assert claims_of(response.headers["x-attestation-token"])["upstream"]["kind"] == "litellm"


def wait_local_small_idle(gateway: RunningGateway) -> None:
    transport = httpx.HTTPTransport(uds=str(gateway.run_dir / "engines" / "local-small-0-0.sock"))
    deadline = time.monotonic() + 30
    with httpx.Client(transport=transport, base_url="http://engine") as engine:
        while engine.get("/health").json()["slots"]["busy"]:
            assert time.monotonic() < deadline, "local engine stayed busy"
            time.sleep(0.05)


def test_failing_provider_falls_back_to_the_local_engine(external_gateway: RunningGateway) -> None:
    wait_local_small_idle(external_gateway)
    with external_gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": "ext-dead",
                "max_tokens": 6,
                "messages": [{"role": "user", "content": "Say hi."}],
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    upstream = claims_of(response.headers["x-attestation-token"])["upstream"]
    assert upstream["kind"] == "local" and upstream["in_guest"] is True


def test_raw_pii_to_a_provider_needs_explicit_consent(tmp_path: Path) -> None:
    base = {
        "api_keys": [{"name": "k", "sha256": "0" * 64}],
        "attestation": {"provider": "simulated"},
        "models": [
            {
                "name": "ext",
                "pii": {"mode": "off"},
                "deployments": [
                    {
                        "kind": "litellm",
                        "model": "openai/x",
                        "api_base": "https://api.example.com/v1",
                    }
                ],
            }
        ],
    }
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(base))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "allow_raw_pii" in result.stderr
    bad_model = {
        **base,
        "models": [{"name": "ext", "deployments": [{"kind": "litellm", "model": "gpt-4o"}]}],
    }
    config.write_text(yaml.safe_dump(bad_model))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "provider/model" in result.stderr
