"""Two gateway replicas sharing one real Redis, three engines found through a real DNS server.

All real processes on loopback, as on a Kubernetes cluster squeezed onto one machine: two
gateway processes with ``shared_state: {backend: redis}`` (Debian's ``redis-server``), and
three engine processes at 127.0.0.2/.3/.4 on one TLS port behind a ``kind: discovered``
deployment whose DNS records the tests rewrite. The tests share these processes and run in
order; Redis is killed last.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import hash_key
from tests.discovery import test_discovered_pool as discovery
from tests.gateway.conftest import KEY, RunningGateway, free_port, start_gateway, stop_gateway
from tests.support.redis_process import RedisProcess

ADDRESSES = discovery.ADDRESSES
DnsServer = discovery.DnsServer
MODEL = "smollm2"
POOL = f"{MODEL}/discovered-0"
# The discovery tests' DNS server and three engines, one of each for this module.
dns = discovery.dns
engines = discovery.engines

LIMITED_KEY = "sk-scale-limited-0123456789"
LIMITED_RPM = 12
OTHER_KEY = "sk-scale-other-0123456789"
OUTAGE_KEY = "sk-scale-outage-0123456789"
OUTAGE_RPM = 3
METRICS_KEY = "sk-scale-metrics-0123456789"
PASSWORD_ENV = "CG_SCALE_OUT_REDIS_PASSWORD"

SHORT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
# Long enough to still be generating when its engine is found; end-of-text banned (SmolLM2's
# <|endoftext|> and <|im_end|>) so it runs to max_tokens.
LONG_STREAM = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Tell a long story about the sea."}],
    "max_tokens": 80,
    "logit_bias": {"0": -100, "2": -100},
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))  # fails (not skips) if missing
    server.start()
    try:
        yield server
    finally:
        server.stop()


def gateway_config(tmp: Path, redis: RedisProcess, dns: DnsServer, port: int) -> dict[str, Any]:
    return {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"names": ["127.0.0.1"], "cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [
            {"name": "full", "sha256": hash_key(KEY)},
            {"name": "other", "sha256": hash_key(OTHER_KEY)},
            {
                "name": "limited",
                "sha256": hash_key(LIMITED_KEY),
                "requests_per_minute": LIMITED_RPM,
            },
            {"name": "outage", "sha256": hash_key(OUTAGE_KEY), "requests_per_minute": OUTAGE_RPM},
        ],
        "models": [
            {
                "name": MODEL,
                "deployments": [
                    {
                        "kind": "discovered",
                        "dns_name": discovery.NAME,
                        "port": port,
                        "dns_server": f"127.0.0.1:{dns.port}",
                        "resolve_interval_s": 0.5,
                        "drain_timeout_s": 120,
                        "attestation": {"allow_simulated": True},
                    }
                ],
            }
        ],
        # A stopped engine's /health poll gives up soon (it holds the DNS round meanwhile).
        "routing": {"connect_timeout_s": 2},
        "shared_state": {
            "backend": "redis",
            "url": redis.url,
            "password_env": PASSWORD_ENV,
            "retry_interval_s": 0.2,
        },
        "telemetry": {"metrics_key_sha256": hash_key(METRICS_KEY)},
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "off"},
        "run_dir": str(tmp / "run"),
    }


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory,
    redis: RedisProcess,
    dns: DnsServer,
    engines: int,
) -> Iterator[list[RunningGateway]]:
    dns.publish(*ADDRESSES[:2])
    started: list[RunningGateway] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PASSWORD_ENV, redis.password)
        try:
            for index in range(2):
                tmp = tmp_path_factory.mktemp(f"gateway{index}")
                started.append(start_gateway(tmp, gateway_config(tmp, redis, dns, engines)))
            yield started
        finally:
            for gateway in started:
                stop_gateway(gateway)


# -- helpers -------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def async_client(gateway: RunningGateway, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.url,
        verify=gateway.tls_context(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def served_by(token: str) -> str:
    """The engine address a response token names as its upstream."""
    upstream = claims(token)["upstream"]
    assert upstream["kind"] == "attested-remote"
    name: str = upstream["name"]
    assert name.startswith(POOL + "/")
    return name.rsplit("/", 1)[1]


def chat(gateway: RunningGateway, key: str = KEY) -> httpx.Response:
    with gateway.client(key) as client:
        return client.post("/v1/chat/completions", json=SHORT)


def answers_ok(gateway: RunningGateway, key: str) -> bool:
    return chat(gateway, key).status_code == 200


def metrics(gateway: RunningGateway) -> str:
    with gateway.client(METRICS_KEY) as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    return reply.text


def reported_engines(gateway: RunningGateway) -> set[str]:
    """The engines a gateway exports queue depth for: attested, in DNS, not draining."""
    pattern = rf'^gateway_engine_queue_depth\{{engine="{re.escape(POOL)}/([0-9.]+)"\}}'
    return set(re.findall(pattern, metrics(gateway), flags=re.MULTILINE))


def reports_exactly(gateway: RunningGateway, addresses: set[str]) -> bool:
    return reported_engines(gateway) == addresses


def wait_reported(gateways: list[RunningGateway], addresses: list[str]) -> None:
    for gateway in gateways:
        wait_for(
            f"{gateway.url} reports engines {addresses}",
            partial(reports_exactly, gateway, set(addresses)),
        )


def engine_health(address: str, port: int) -> dict[str, Any]:
    """An engine's own /health (its TLS key is checked by the gateways, not by this test)."""
    with httpx.Client(verify=False, timeout=10) as client:
        health: dict[str, Any] = client.get(f"https://{address}:{port}/health").json()
    return health


def engine_pid(address: str) -> int:
    """The engine process this test session started for ``address``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)", status, flags=re.MULTILINE)
        if (
            parent is not None
            and int(parent.group(1)) == os.getpid()
            and b"enclave_backend" in command
            and address.encode() in command
        ):
            return int(entry.name)
    raise AssertionError(f"no engine process for {address}")


def log_lines(gateway: RunningGateway, text: str) -> list[str]:
    return [line for line in gateway.log_path.read_text().splitlines() if text in line]


def assert_openai_error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code and error["message"]
    return error


# -- the tests, in the order they run ------------------------------------------------------


def test_a_keys_rate_limit_holds_across_both_gateways_under_a_burst(
    gateways: list[RunningGateway],
) -> None:
    burst = 40

    async def fire() -> tuple[list[httpx.Response], list[httpx.Response]]:
        limited = [async_client(g, LIMITED_KEY) for g in gateways]
        free = [async_client(g, KEY) for g in gateways]
        try:
            calls = [limited[i % 2].post("/v1/chat/completions", json=SHORT) for i in range(burst)]
            unlimited = [free[i % 2].post("/v1/chat/completions", json=SHORT) for i in range(6)]
            replies = await asyncio.gather(*calls, *unlimited)
            return list(replies[:burst]), list(replies[burst:])
        finally:
            for client in limited + free:
                await client.aclose()

    limited, unlimited = asyncio.run(fire())
    statuses = [r.status_code for r in limited]
    assert statuses.count(200) == LIMITED_RPM, statuses
    assert statuses.count(429) == burst - LIMITED_RPM, statuses
    # Each gateway refused some: neither counted the key on its own.
    refused_by = {r.url.port for r in limited if r.status_code == 429}
    assert len(refused_by) == 2
    for reply in limited:
        if reply.status_code == 429:
            assert_openai_error(reply, 429, "rate_limit_exceeded")
            assert int(reply.headers["Retry-After"]) >= 1
    assert [r.status_code for r in unlimited] == [200] * 6, [r.text for r in unlimited]


def test_a_token_stored_by_one_gateway_is_fetched_from_the_other_by_its_key_only(
    gateways: list[RunningGateway],
) -> None:
    first, second = gateways
    answer = chat(first)
    assert answer.status_code == 200, answer.text
    completion_id = answer.json()["id"]
    token = answer.headers["x-attestation-token"]
    path = f"/v1/attestations/{completion_id}"
    with second.client(KEY) as owner:
        # The first gateway stores the token just after answering: poll, do not race it.
        fetched = owner.get(path)
        deadline = time.monotonic() + 10
        while fetched.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
            fetched = owner.get(path)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == {"id": completion_id, "attestation_token": token}
        unknown = owner.get("/v1/attestations/chatcmpl-never-issued")
    for gateway in gateways:
        with gateway.client(OTHER_KEY) as stranger:
            refused = stranger.get(path)
        # Another key's token is indistinguishable from one never issued.
        assert_openai_error(refused, 404, "token_not_found")
        assert refused.json() == unknown.json()


def test_an_engine_added_to_dns_takes_traffic_once_attested(
    gateways: list[RunningGateway], dns: DnsServer, engines: int
) -> None:
    dns.publish(*ADDRESSES[:2])
    wait_reported(gateways, ADDRESSES[:2])
    newcomer = ADDRESSES[2]
    for gateway in gateways:
        for _ in range(3):
            reply = chat(gateway)
            assert reply.status_code == 200, reply.text
            assert served_by(reply.headers["x-attestation-token"]) in ADDRESSES[:2]
    # Not in DNS: no gateway sent it anything.
    assert engine_health(newcomer, engines)["requests"]["completed"] == 0

    dns.publish(*ADDRESSES)
    wait_reported(gateways, ADDRESSES)
    for gateway in gateways:
        assert log_lines(gateway, f"engine {newcomer} found; attesting it before it gets a prompt")
        assert log_lines(gateway, f"remote engine {POOL}/{newcomer} verified (simulated)")
    served: dict[int, int] = {}
    for gateway in gateways:
        for _ in range(30):
            reply = chat(gateway)
            assert reply.status_code == 200, reply.text
            if served_by(reply.headers["x-attestation-token"]) == newcomer:
                served[gateway.process.pid] = served.get(gateway.process.pid, 0) + 1
                if served[gateway.process.pid] == 2:
                    break
    assert list(served.values()) == [2, 2], served
    assert engine_health(newcomer, engines)["requests"]["completed"] >= 4


def test_an_engine_removed_from_dns_drains_without_failing_its_stream(
    gateways: list[RunningGateway], dns: DnsServer, engines: int
) -> None:
    first = gateways[0]
    dns.publish(*ADDRESSES)
    wait_reported(gateways, ADDRESSES)
    events: list[str] = []
    with (
        first.client(KEY) as client,
        client.stream("POST", "/v1/chat/completions", json=LONG_STREAM) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            events.append(line)
            if line.startswith("data: {") and json.loads(line[6:])["choices"]:
                break  # generating
        busy: list[str] = []

        def generating() -> bool:
            busy[:] = [a for a in ADDRESSES if engine_health(a, engines)["slots"]["busy"]]
            return bool(busy)

        wait_for("an engine generates the stream", generating, timeout=30)
        assert len(busy) == 1, busy
        leaving = busy[0]
        remaining = [a for a in ADDRESSES if a != leaving]
        # Held mid-generation (stopped) while it leaves DNS, so the drain finds it in flight.
        pid = engine_pid(leaving)
        os.kill(pid, signal.SIGSTOP)
        try:
            dns.publish(*remaining)
            wait_for(
                f"{first.url} drains {leaving}",
                lambda: bool(
                    log_lines(first, f"engine {leaving} left DNS; draining its 1 requests")
                ),
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        events.extend(lines)

    data = [e[6:] for e in events if e.startswith("data: ")]
    assert data[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(d) for d in data[:-1]]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] in {"length", "stop"}, finish[-3:]
    assert not any("error" in c for c in chunks)
    # The token at the end names the engine that was drained meanwhile.
    assert served_by(chunks[-1]["attestation_token"]) == leaving

    wait_for(
        f"{first.url} removes {leaving}",
        lambda: bool(log_lines(first, f"engine {leaving} drained and removed")),
    )
    wait_reported(gateways, remaining)
    for gateway in gateways:
        for _ in range(6):
            reply = chat(gateway)
            assert reply.status_code == 200, reply.text
            assert served_by(reply.headers["x-attestation-token"]) in remaining


@pytest.fixture(scope="module")
def outage_tokens() -> dict[str, str]:
    """Tokens the first gateway kept in its memory while Redis was down, by completion id."""
    return {}


def fetch_token(gateway: RunningGateway, key: str, completion_id: str) -> httpx.Response:
    with gateway.client(key) as client:
        return client.get(f"/v1/attestations/{completion_id}")


def test_killing_redis_refuses_rate_limited_keys_with_503_while_others_chat(
    gateways: list[RunningGateway], redis: RedisProcess
) -> None:
    for gateway in gateways:
        assert "gateway_shared_state_available 1.0" in metrics(gateway)
    # Killed, not stopped: nothing flushed, connections just die.
    assert redis.process is not None
    redis.process.kill()
    redis.process.wait()
    redis.process = None

    for gateway in gateways:
        # Fail closed (the default): a rate-limited key is refused, and told when to retry.
        refused = chat(gateway, OUTAGE_KEY)
        error = assert_openai_error(refused, 503, "shared_state_unavailable")
        assert error["type"] == "server_error"
        assert refused.headers["Retry-After"] == "2"
        assert "gateway_shared_state_available 0.0" in metrics(gateway)
        assert log_lines(gateway, "limited requests get 503 shared_state_unavailable")
        # A key with no limits keeps chatting.
        for _ in range(3):
            reply = chat(gateway)
            assert reply.status_code == 200, reply.text


def test_tokens_stored_while_redis_is_down_are_found_on_their_gateway_only(
    gateways: list[RunningGateway], outage_tokens: dict[str, str]
) -> None:
    first, second = gateways
    answer = chat(first)
    assert answer.status_code == 200, answer.text
    completion_id = answer.json()["id"]
    found = fetch_token(first, KEY, completion_id)
    assert found.status_code == 200, found.text
    assert found.json()["attestation_token"] == answer.headers["x-attestation-token"]
    assert_openai_error(fetch_token(first, OTHER_KEY, completion_id), 404, "token_not_found")
    # Kept in the first gateway's memory: the second cannot see it while Redis is down.
    assert_openai_error(fetch_token(second, KEY, completion_id), 404, "token_not_found")
    assert log_lines(first, "attestation tokens are kept in this replica's memory only")
    outage_tokens[completion_id] = answer.headers["x-attestation-token"]


def test_shared_limits_resume_when_redis_restarts_on_its_port(
    gateways: list[RunningGateway], redis: RedisProcess, outage_tokens: dict[str, str]
) -> None:
    redis.start()  # the same port and password; empty (nothing was persisted)
    for gateway in gateways:
        # Each gateway tries Redis again on a request; its first answer switches it back.
        wait_for(f"{gateway.url} uses Redis again", partial(answers_ok, gateway, OUTAGE_KEY))
        assert log_lines(gateway, "shared state store reachable again")
        assert "gateway_shared_state_available 1.0" in metrics(gateway)

    # One limit across both again: 2 of OUTAGE_RPM used just now, 1 left between them.
    async def burst() -> list[int]:
        clients = [async_client(g, OUTAGE_KEY) for g in gateways]
        try:
            calls = [clients[i % 2].post("/v1/chat/completions", json=SHORT) for i in range(6)]
            return [r.status_code for r in await asyncio.gather(*calls)]
        finally:
            for client in clients:
                await client.aclose()

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [200] * (OUTAGE_RPM - 2) + [429] * (6 - OUTAGE_RPM + 2), statuses
    # A token kept locally during the outage is still found where it was kept.
    for completion_id, token in outage_tokens.items():
        assert fetch_token(gateways[0], KEY, completion_id).json()["attestation_token"] == token


def test_each_gateway_logs_the_outage_and_the_recovery_once(
    gateways: list[RunningGateway],
) -> None:
    for gateway in gateways:
        assert len(log_lines(gateway, "shared state store unreachable")) == 1
        assert len(log_lines(gateway, "kept in this replica's memory only")) == 1
        assert len(log_lines(gateway, "shared state store reachable again")) == 1
