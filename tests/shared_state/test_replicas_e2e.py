"""Two real gateway processes sharing one real Redis: one limit and one token store."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import hash_key
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    KEY,
    RunningGateway,
    echo_gateway_config,
    start_gateway,
    stop_gateway,
)
from tests.support.redis_process import RedisProcess

LIMITED_KEY = "sk-replicas-limited-0123456789"
OTHER_KEY = "sk-replicas-other-0123456789"
RPM = 7
PASSWORD_ENV = "CG_E2E_REDIS_PASSWORD"


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    capture: CaptureUpstream,
    redis_server: RedisProcess,
) -> Iterator[list[RunningGateway]]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PASSWORD_ENV, redis_server.password)
        started: list[RunningGateway] = []
        try:
            for index in range(2):
                tmp = tmp_path_factory.mktemp(f"replica{index}")
                config = echo_gateway_config(tmp, capture.url)
                config["api_keys"] += [
                    {
                        "name": "limited",
                        "sha256": hash_key(LIMITED_KEY),
                        "requests_per_minute": RPM,
                    },
                    {"name": "other", "sha256": hash_key(OTHER_KEY)},
                ]
                config["shared_state"] = {
                    "backend": "redis",
                    "url": redis_server.url,
                    "password_env": PASSWORD_ENV,
                }
                started.append(start_gateway(tmp, config))
            yield started
        finally:
            for gateway in started:
                stop_gateway(gateway)


def client(gateway: RunningGateway, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gateway.url,
        verify=ssl.create_default_context(cafile=str(gateway.cert)),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}


def test_a_keys_limit_holds_across_both_gateways_under_a_burst(
    replicas: list[RunningGateway],
) -> None:
    async def burst() -> list[int]:
        clients = [client(g, LIMITED_KEY) for g in replicas]
        try:
            calls = [clients[i % 2].post("/v1/chat/completions", json=CHAT) for i in range(30)]
            return [r.status_code for r in await asyncio.gather(*calls)]
        finally:
            for c in clients:
                await c.aclose()

    statuses = asyncio.run(burst())
    assert statuses.count(200) == RPM, statuses
    assert statuses.count(429) == 30 - RPM


def test_a_token_stored_by_one_gateway_is_fetched_from_the_other_by_its_key_only(
    replicas: list[RunningGateway],
) -> None:
    first, second = replicas

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, str]:
        async with client(first, KEY) as one, client(second, KEY) as two:
            answer = await one.post("/v1/chat/completions", json=CHAT)
            assert answer.status_code == 200
            completion_id = answer.json()["id"]
            fetched = await two.get(f"/v1/attestations/{completion_id}")
            async with client(second, OTHER_KEY) as stranger:
                refused = await stranger.get(f"/v1/attestations/{completion_id}")
            unknown = await two.get("/v1/attestations/chatcmpl-never-issued")
            return fetched, refused, unknown, answer.headers["x-attestation-token"]

    fetched, refused, unknown, token = asyncio.run(scenario())
    assert fetched.status_code == 200 and fetched.json()["attestation_token"] == token
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "token_not_found"
    assert unknown.status_code == 404
