"""A real Redis server per test module, and replicas (limiter, guard, token store) on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from gateway.auth import hash_key
from gateway.config import APIKeyConfig, SharedStateConfig
from gateway.shared_state.redis_backend import (
    RedisAuthFailureGuard,
    RedisConnection,
    RedisRateLimiter,
    RedisTokenStore,
    connect,
)
from tests.support.redis_process import RedisProcess

PREFIX = "cgtest:"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    connection: RedisConnection
    limiter: RedisRateLimiter
    guard: RedisAuthFailureGuard
    tokens: RedisTokenStore


def key(name: str, secret: str, **extra: object) -> APIKeyConfig:
    return APIKeyConfig(name=name, sha256=hash_key(secret), **extra)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))  # fails (not skips) if missing
    server.start()
    try:
        yield server
    finally:
        server.stop()


def section(server: RedisProcess, **extra: object) -> SharedStateConfig:
    return SharedStateConfig(backend="redis", url=server.url, key_prefix=PREFIX, **extra)


@asynccontextmanager
async def replica(
    server: RedisProcess,
    clock: Clock,
    *,
    liveness_ttl_s: float = 15.0,
    max_failures: int = 3,
    lease_s: float = 1.0,
    guard_refresh_s: float = 0.0,
) -> AsyncIterator[Replica]:
    connection = RedisConnection(connect(section(server), server.password), PREFIX)
    try:
        yield Replica(
            connection,
            RedisRateLimiter(
                connection,
                default_max_in_flight=4,
                liveness_ttl_s=liveness_ttl_s,
                lease_s=lease_s,
                clock=clock,
            ),
            RedisAuthFailureGuard(
                connection,
                secret=b"s" * 32,
                max_failures=max_failures,
                refresh_s=guard_refresh_s,
                clock=clock,
            ),
            RedisTokenStore(connection, ttl_s=60),
        )
    finally:
        await connection.close()


async def flush(server: RedisProcess) -> None:
    client = Redis(host="127.0.0.1", port=server.port, password=server.password)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def everything_stored(server: RedisProcess) -> bytes:
    """Every key and value in the server, as bytes, for scanning."""
    client = Redis(host="127.0.0.1", port=server.port, password=server.password)
    out = b""
    try:
        async for name in client.scan_iter():
            out += name + b"\n"
            kind = (await client.type(name)).decode()
            if kind == "string":
                out += await client.get(name) or b""
            elif kind == "hash":
                for field, value in (await client.hgetall(name)).items():
                    out += field + b"=" + value + b"\n"
            elif kind == "zset":
                for member, _ in await client.zrange(name, 0, -1, withscores=True):
                    out += member + b"\n"
            elif kind == "set":
                for member in await client.smembers(name):
                    out += member + b"\n"
    finally:
        await client.aclose()
    return out
