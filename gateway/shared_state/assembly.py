"""The shared state a configuration asks for, and its one background task (the heartbeat).

redis-py is imported only here, and only for ``backend: redis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig
from gateway.shared_state.base import FailureGuard, Limiter, SharedStateUnavailable, TokenKeeper
from gateway.shared_state.fallback import (
    SharedFailureGuard,
    SharedLimiter,
    SharedStateHealth,
    SharedTokenStore,
)
from gateway.shared_state.memory import MemoryAuthFailureGuard, MemoryRateLimiter, MemoryTokenStore
from gateway.telemetry import GatewayMetrics

if TYPE_CHECKING:
    from gateway.shared_state.redis_backend import RedisConnection, RedisRateLimiter

log = logging.getLogger("gateway.shared_state")


class SharedStateSetupError(Exception):
    """The shared state cannot be set up; the message names the key to change."""


@dataclass
class SharedState:
    limiter: Limiter
    auth_guard: FailureGuard
    tokens: TokenKeeper
    health: SharedStateHealth | None = None
    heartbeat: RedisRateLimiter | None = None
    connection: RedisConnection | None = None
    _interval_s: float = 5.0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Announce this replica and keep its liveness key fresh (Redis only)."""
        if self.heartbeat is not None and self._task is None:
            self._task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        limiter = self.heartbeat
        assert limiter is not None and self.health is not None
        while True:
            try:
                await limiter.heartbeat()
                self.health.up()
            except SharedStateUnavailable as exc:
                self.health.down("heartbeat", exc)
            await asyncio.sleep(self._interval_s)

    async def close(self) -> None:
        await self.limiter.flush()  # the finishes still queued reach the store first
        if self.heartbeat is not None:
            with contextlib.suppress(SharedStateUnavailable):
                await self.heartbeat.close()  # unused slices of limits go back to the store
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.connection is not None:
            await self.connection.close()


def memory_state(config: GatewayConfig) -> SharedState:
    return SharedState(
        limiter=MemoryRateLimiter(default_max_in_flight=config.limits.max_in_flight_per_key),
        auth_guard=MemoryAuthFailureGuard(
            max_failures=config.listener.max_auth_failures_per_minute
        ),
        tokens=MemoryTokenStore(ttl_s=config.attestation.store_ttl_s),
    )


def build_shared_state(config: GatewayConfig, metrics: GatewayMetrics | None = None) -> SharedState:
    section = config.shared_state
    local = memory_state(config)
    if section.backend == "memory":
        return local
    password: str | None = None
    if section.password_env is not None:
        password = os.environ.get(section.password_env)
        if not password:
            raise SharedStateSetupError(
                f"shared_state.password_env: the environment variable {section.password_env} "
                "is not set or empty"
            )
    from gateway.shared_state.redis_backend import (
        RedisAuthFailureGuard,
        RedisConnection,
        RedisRateLimiter,
        RedisTokenStore,
        connect,
    )

    connection = RedisConnection(
        connect(section, password),
        section.key_prefix,
        retry_interval_s=section.retry_interval_s,
    )
    health = SharedStateHealth(
        policy=section.on_unavailable, metrics=metrics, retry_interval_s=section.retry_interval_s
    )
    shared_limiter = RedisRateLimiter(
        connection,
        default_max_in_flight=config.limits.max_in_flight_per_key,
        liveness_ttl_s=section.liveness_ttl_s,
        lease_s=section.lease_s,
    )
    health.on_recovery(shared_limiter.resync)
    connection.batch.on_lost = lambda error: health.down("limits", error)
    connection.batch.on_answer = health.up  # a real answer
    replicas = section.local_share_replicas
    if password is None:
        log.warning(
            "shared_state has no password_env: Redis accepts anyone who reaches it, and client "
            "addresses in it are hashed with a fixed key (an address can be guessed back); "
            "set a password"
        )
    secret = hashlib.sha256(b"cg-client-address\0" + (password or "").encode()).digest()
    return SharedState(
        limiter=SharedLimiter(
            shared_limiter,
            MemoryRateLimiter(
                default_max_in_flight=max(1, config.limits.max_in_flight_per_key // replicas)
            ),
            health,
            policy=section.on_unavailable,
            replicas=replicas,
        ),
        auth_guard=SharedFailureGuard(
            RedisAuthFailureGuard(
                connection,
                secret=secret,
                max_failures=config.listener.max_auth_failures_per_minute,
            ),
            local.auth_guard,
            health,
        ),
        tokens=SharedTokenStore(
            RedisTokenStore(connection, ttl_s=config.attestation.store_ttl_s), local.tokens, health
        ),
        health=health,
        heartbeat=shared_limiter,
        connection=connection,
        _interval_s=section.liveness_ttl_s / 3,
    )
