"""Redis killed mid-run: limits fail closed or fall back to a per-replica share, the guard
and the token store go on in local memory, and all of it returns to Redis when it is back."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.shared_state.assembly import (
    SharedState,
    SharedStateSetupError,
    build_shared_state,
)
from gateway.telemetry import GatewayMetrics
from tests.shared_state.conftest import PREFIX, flush, key
from tests.support.redis_process import RedisProcess

PASSWORD_ENV = "CG_TEST_REDIS_PASSWORD"
LIMITED = key("limited", "sk-limited-0123456789", requests_per_minute=4)


def config(server: RedisProcess, **shared: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "api_keys": [LIMITED.model_dump()],
            "models": [
                {"name": "m", "deployments": [{"kind": "remote", "base_url": "http://127.0.0.1:9"}]}
            ],
            "listener": {"max_auth_failures_per_minute": 2},
            "shared_state": {
                "backend": "redis",
                "url": server.url,
                "password_env": PASSWORD_ENV,
                "key_prefix": PREFIX,
                "timeout_s": 0.5,
                "retry_interval_s": 0.05,
                **shared,
            },
        }
    )


async def admitted(state: SharedState, n: int) -> list[int | str]:
    """What n admits of the limited key answered: 200, or the refusal's status and code."""
    out: list[int | str] = []
    for _ in range(n):
        try:
            await state.limiter.admit(LIMITED)
            out.append(200)
        except GatewayError as error:
            out.append(f"{error.status} {error.code}")
    return out


@pytest.fixture(autouse=True)
def password(redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, redis_server.password)
    asyncio.run(flush(redis_server))


def test_a_missing_password_variable_stops_start_up(
    redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(SharedStateSetupError, match=PASSWORD_ENV):
        build_shared_state(config(redis_server))


def test_fail_closed_answers_503_and_the_guard_and_tokens_go_local(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = GatewayMetrics()

    async def scenario() -> None:
        state = build_shared_state(config(redis_server), metrics)
        await state.start()
        try:
            assert await admitted(state, 1) == [200]
            assert await state.tokens.put("chatcmpl-shared", "o" * 64, "t.shared")
            redis_server.stop()
            assert await admitted(state, 2) == ["503 shared_state_unavailable"] * 2
            # Unlimited keys are not limited by anything, so they are not refused.
            await state.limiter.admit(key("free", "sk-free-0123456789"))
            # The token store keeps tokens locally meanwhile; the guard counts locally.
            assert await state.tokens.put("chatcmpl-local", "o" * 64, "t.local")
            assert await state.tokens.get("chatcmpl-local", "o" * 64) == "t.local"
            assert await state.tokens.get("chatcmpl-local", "x" * 64) is None
            await state.auth_guard.failed("192.0.2.1")
            await state.auth_guard.failed("192.0.2.1")
            with pytest.raises(GatewayError):
                await state.auth_guard.check("192.0.2.1")
            assert b"gateway_shared_state_available 0.0" in generate_latest(metrics.registry)
            redis_server.start()  # empty: nothing was persisted
            await asyncio.sleep(0.1)
            assert await admitted(state, 5) == [200] * 4 + ["429 rate_limit_exceeded"]
            assert state.health is not None and state.health.available
            assert b"gateway_shared_state_available 1.0" in generate_latest(metrics.registry)
            # What was kept locally during the outage is still found here.
            assert await state.tokens.get("chatcmpl-local", "o" * 64) == "t.local"
        finally:
            await state.close()

    with caplog.at_level(logging.WARNING, logger="gateway.shared_state"):
        asyncio.run(scenario())
    exported = generate_latest(metrics.registry).decode()
    assert 'gateway_shared_state_fallbacks_total{component="limits"}' in exported
    assert 'gateway_shared_state_fallbacks_total{component="tokens"}' in exported
    assert 'gateway_shared_state_fallbacks_total{component="auth_guard"}' in exported
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m and "503" in m for m in messages) == 1  # once per outage
    assert sum("memory only" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1
    assert not any("192.0.2.1" in m for m in messages)


def test_local_share_enforces_the_replicas_share_while_redis_is_down(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        state = build_shared_state(
            config(redis_server, on_unavailable="local_share", local_share_replicas=2)
        )
        try:
            assert await admitted(state, 1) == [200]
            redis_server.stop()
            # requests_per_minute 4 across 2 replicas: this one takes 2 on its own.
            assert await admitted(state, 3) == [200, 200, "429 rate_limit_exceeded"]
            # Places are kept locally at the replica's share (2 of 4), and given back there.
            free = key("free", "sk-free-0123456789", max_in_flight=4)
            first = await state.limiter.begin(free, 10, 10)
            await state.limiter.begin(free, 10, 10)
            with pytest.raises(GatewayError) as info:
                await state.limiter.begin(free, 10, 10)
            assert info.value.code == "concurrency_limit_exceeded"
            state.limiter.finish(first, 20)
            last = await state.limiter.begin(free, 10, 10)
            assert first.local and last.local
            redis_server.start()
            await asyncio.sleep(0.1)
            state.limiter.finish(last, 20)
            assert await admitted(state, 5) == [200] * 4 + ["429 rate_limit_exceeded"]
            assert not (await state.limiter.begin(free, 10, 10)).local
        finally:
            await state.close()

    asyncio.run(scenario())
