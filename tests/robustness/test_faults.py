"""Faults: an engine killed mid-stream, upstreams that hang or send garbage, a failing TEE."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import hash_key
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway

NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("faults")
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faulty_upstream", "--port", str(port)],
        stdout=(tmp / "faulty.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/garbage/v1/models", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def remote(name: str, prefix: str) -> dict:
        return {
            "name": name,
            "pii": {"mode": "off", "allow_raw_pii": True},
            "deployments": [
                {
                    "kind": "remote",
                    "base_url": f"{base}/{prefix}/v1",
                    "model": "x",
                    "timeout_s": 1.5,
                }
            ],
        }

    config = {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [{"name": "k", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "smollm2",
                "deployments": [{"kind": "local", "slots": 2, "ctx_per_slot": 512}],
            },
            remote("hang", "hang"),
            remote("garbage", "garbage"),
            remote("badsse", "badsse"),
            remote("midhang", "midhang"),
        ],
        "routing": {"retries": 0, "failure_threshold": 100},
        "engines": {"restart_backoff_initial_s": 0.2},
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "off"},
        "run_dir": str(tmp / "run"),
    }
    gateway = start_gateway(tmp, config)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)
        upstream.kill()  # it holds hanging requests on purpose: no graceful stop to wait for
        upstream.wait(timeout=30)


def ask(gateway: RunningGateway, model: str, **extra: object) -> httpx.Response:
    with gateway.client(timeout=30) as client:
        return client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        )


def error_of(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_a_hanging_upstream_times_out_with_504(faulty: RunningGateway) -> None:
    for stream in (False, True):
        started = time.monotonic()
        response = ask(faulty, "hang", stream=stream)
        assert response.status_code == 504
        assert error_of(response)["code"] == "upstream_timeout"
        assert time.monotonic() - started < 10


def test_garbage_and_invalid_sse_answer_502(faulty: RunningGateway) -> None:
    response = ask(faulty, "garbage")
    assert response.status_code == 502 and error_of(response)["code"] == "upstream_failed"
    response = ask(faulty, "badsse", stream=True)
    assert response.status_code == 502 and error_of(response)["code"] == "upstream_failed"


def sse_lines(response: httpx.Response) -> list[str]:
    """The data lines, and the token's comment line."""
    return [line for line in response.iter_lines() if line.startswith(("data: ", ": "))]


def test_a_stream_that_stalls_mid_way_ends_with_an_error_not_a_hang(faulty: RunningGateway) -> None:
    with (
        faulty.client(timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "midhang",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        ) as response,
    ):
        lines = sse_lines(response)
    assert "data: [DONE]" not in lines
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert any(e.get("error", {}).get("code") == "upstream_failed" for e in events)
    assert lines[-1].startswith(": attestation_token ")


def test_engine_killed_mid_stream_gives_an_error_event_then_recovers(
    faulty: RunningGateway,
) -> None:
    [pid] = faulty.engine_pids()
    with (
        faulty.client(timeout=60) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "smollm2",
                "stream": True,
                **NEVER_ENDING,
                "messages": [{"role": "user", "content": "Count to a thousand."}],
            },
        ) as response,
    ):
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
        os.kill(pid, signal.SIGKILL)
        received += list(lines)
    data = [line for line in received if line.startswith("data: ")]
    assert "data: [DONE]" not in data, "a killed stream must not look complete"
    events = [json.loads(line[6:]) for line in data]
    errors = [e for e in events if "error" in e]
    assert len(errors) == 1 and errors[0]["error"]["code"] == "upstream_failed"
    # Its token carries the failure, not a 200.
    [token] = [line.split(" ", 2)[2] for line in received if line.startswith(": attestation_token")]
    part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert claims["status"] == 502 and claims["error"]["code"] == "upstream_failed"
    deadline = time.monotonic() + 60
    while True:
        with faulty.client() as client:
            if client.get("/ready").json()["models"]["smollm2"]:
                break
        assert time.monotonic() < deadline, "engine did not come back"
        time.sleep(0.1)
    assert faulty.engine_pids() != [pid]
    response = ask(faulty, "smollm2", max_tokens=4)
    assert response.status_code == 200, response.text


def test_failing_tee_interface_fails_the_evidence_endpoint_clearly(tmp_path: Path) -> None:
    """configfs-tsm breaking after start-up: evidence is refused with a clear 503, and
    responses stay signed (the signing key lives in memory, not in the TEE interface)."""
    import asyncio

    from confidential_common.tee.providers import ConfigfsTsmProvider
    from gateway.app import GatewayApp
    from gateway.attestation.service import AttestationService
    from gateway.auth import APIKeyStore
    from gateway.config import APIKeyConfig, RoutingConfig
    from gateway.pipeline import Pipeline
    from gateway.ratelimit import RateLimiter
    from gateway.telemetry import GatewayMetrics
    from gateway.upstreams.router import Router
    from tests.attestation.test_providers import FakeTsmKernel

    kernel = FakeTsmKernel(tmp_path / "tsm", "tdx_guest")
    attestation = AttestationService(
        ConfigfsTsmProvider(base=kernel.root, fs=kernel),
        tls_spki_sha256="00" * 32,
        issuer="t",
        token_ttl_s=60,
        store_ttl_s=60,
    )
    router = Router({}, RoutingConfig())
    app = GatewayApp(
        keys=APIKeyStore([APIKeyConfig(name="k", sha256=hash_key(KEY))]),
        limiter=RateLimiter(),
        router=router,
        pipeline=Pipeline(router, []),
        max_body_bytes=65536,
        version="t",
        attestation=attestation,
        metrics=GatewayMetrics(),
    ).build()

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            healthy = await client.get("/v1/attestation?nonce=" + "ab" * 16)
            kernel.fail_outblob = True
            broken = await client.get("/v1/attestation?nonce=" + "ab" * 16)
            chat = await client.post("/v1/chat/completions", json={"model": "m"})
        return healthy, broken, chat

    healthy, broken, chat = asyncio.run(scenario())
    assert healthy.status_code == 200 and healthy.json()["tee"] == "tdx"
    assert broken.status_code == 503
    assert error_of(broken)["code"] == "attestation_unavailable"
    assert chat.status_code == 401 and chat.headers["x-attestation-token"].count(".") == 2
