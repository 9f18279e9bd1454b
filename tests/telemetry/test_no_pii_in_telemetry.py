"""Traces, metrics and logs of a real gateway carry names and numbers, never planted values.

The gateway exports spans over OTLP/HTTP to the capture process (which records the raw
bytes), serves Prometheus metrics on a listener of its own, and logs JSON to a file. Planted
personal data goes through it streamed, non-streamed, refused and failing; then every byte
of all three is searched for it, in the encodings the PII tests use.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.auth import hash_key
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    KEY,
    LIMITED_KEY,
    MODEL,
    RunningGateway,
    free_port,
    start_gateway,
    stop_gateway,
)
from tests.pii.test_pii_e2e import PLANTED, PROMPT, encodings


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[tuple[RunningGateway, int]]:
    tmp = tmp_path_factory.mktemp("telemetry")
    metrics_port = free_port()
    config = {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [
            {"name": "full", "sha256": hash_key(KEY)},
            {"name": "limited", "sha256": hash_key(LIMITED_KEY), "requests_per_minute": 1},
        ],
        "models": [
            {"name": MODEL, "deployments": [{"kind": "local", "slots": 2, "ctx_per_slot": 512}]},
            {
                "name": "echo",
                "deployments": [
                    {"kind": "remote", "base_url": capture.url + "/v1", "model": "echo"}
                ],
            },
            {
                "name": "echo-block",
                "pii": {"mode": "block"},
                "deployments": [
                    {"kind": "remote", "base_url": capture.url + "/v1", "model": "echo"}
                ],
            },
        ],
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "on"},
        "telemetry": {
            "traces": "otlp",
            "otlp_endpoint": capture.url,
            "export_interval_ms": 100,
            "metrics_port": metrics_port,
        },
        "run_dir": str(tmp / "run"),
    }
    gateway = start_gateway(tmp, config)
    try:
        yield gateway, metrics_port
    finally:
        stop_gateway(gateway)


def exercise(gateway: RunningGateway) -> None:
    client = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(verify=gateway.tls_context()),
    )
    messages = [{"role": "user", "content": PROMPT}]
    assert (
        client.chat.completions.create(model="echo", messages=messages).choices[0].message.content
        == PROMPT
    )
    for _ in client.chat.completions.create(model="echo", messages=messages, stream=True):
        pass
    client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    for _ in client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=8, stream=True
    ):
        pass
    with gateway.client() as raw:
        assert (
            raw.post(
                "/v1/chat/completions", json={"model": "echo-block", "messages": messages}
            ).status_code
            == 400
        )
        assert (
            raw.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": messages, "temperature": 9},
            ).status_code
            == 400
        )
        assert (
            raw.post(
                "/v1/chat/completions", json={"model": "gpt-x", "messages": messages}
            ).status_code
            == 404
        )
    with gateway.client(LIMITED_KEY) as limited:
        for _ in range(2):
            limited.post("/v1/chat/completions", json={"model": "echo", "messages": messages})


def assert_clean(text: str, where: str) -> None:
    for label, value in PLANTED.items():
        for variant in encodings(value):
            assert variant not in text, f"{label} appears in {where} as {variant!r}"


def test_no_planted_value_in_spans_metrics_or_logs(
    observed: tuple[RunningGateway, int], capture: CaptureUpstream
) -> None:
    gateway, metrics_port = observed
    exercise(gateway)
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    stop_gateway(gateway)  # flushes the span exporter

    spans = b"".join(
        base64.b64decode(r["body"]) for r in capture.requests() if r["path"] == "/v1/traces"
    )
    assert spans, "no spans were exported"
    for name in (
        b"chat",
        b"pii.request",
        b"upstream",
        b"sign",
        b"gen_ai.usage.input_tokens",
        b"gen_ai.request.model",
        b"gateway.pii.EMAIL_ADDRESS",
    ):
        assert name in spans, name
    assert_clean(spans.decode("utf-8", "replace"), "exported spans")

    assert 'gateway_requests_total{endpoint="chat",model="echo",status="200"}' in metrics
    assert 'gateway_pii_entities_total{type="EMAIL_ADDRESS"}' in metrics
    assert "gateway_engine_slots_busy" in metrics
    assert_clean(metrics, "metrics")

    logs = gateway.log_path.read_text(errors="replace")
    for engine_log in (gateway.run_dir / "engines").glob("*.log"):
        logs += engine_log.read_text(errors="replace")
    assert_clean(logs, "logs")
    records = [
        json.loads(line)
        for line in gateway.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any("request_id" in r for r in records)
