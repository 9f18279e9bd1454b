"""The limiter path of one request (admit, reserve, enter, leave, settle) with Redis-backed
limits against in-memory ones, in the same run: requests/s and the latency each adds.

    python -m bench.shared_state_bench [--tasks 32] [--seconds 5] [--json PATH]

A real ``redis-server`` (Debian's, started on a free loopback port with a password, as the
tests do) serves the Redis half, through the gateway's own ``SharedLimiter`` (the policy
layer included). Only the limiter is measured: a gateway request does more (TLS, parsing,
PII, the upstream), so what matters for the gateway is the latency added per request.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import describe, emit, table
from bench.stats import ratio, summary
from gateway.auth import hash_key
from gateway.config import APIKeyConfig, SharedStateConfig
from gateway.shared_state.base import Limiter
from gateway.shared_state.fallback import SharedLimiter, SharedStateHealth
from gateway.shared_state.memory import MemoryRateLimiter
from gateway.shared_state.redis_backend import RedisConnection, RedisRateLimiter, connect
from tests.support.redis_process import running_redis

# Limits high enough never to refuse: the cost of counting, not of refusing, is measured.
KEY = APIKeyConfig(
    name="bench",
    sha256=hash_key("sk-bench-0123456789"),
    requests_per_minute=10**9,
    tokens_per_minute=10**12,
    max_in_flight=10**6,
)


async def one_request(limiter: Limiter) -> None:
    await limiter.admit(KEY)
    charge = await limiter.reserve(KEY, 200, 100)
    await limiter.enter(KEY)
    await limiter.leave(KEY)
    await limiter.settle(KEY, charge, 150)


async def drive(limiter: Limiter, tasks: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await one_request(limiter)
            latencies.append(time.perf_counter() - started)

    for _ in range(50):  # warm-up: scripts loaded, connections open
        await one_request(limiter)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **summary(latencies, (50, 99), unit="ms", scale=1000, digits=4),
    }


async def measure(url: str, password: str, tasks: int, seconds: float) -> dict[str, Any]:
    memory = await drive(MemoryRateLimiter(), tasks, seconds)
    section = SharedStateConfig(backend="redis", url=url, key_prefix="cgbench:")
    connection = RedisConnection(connect(section, password), section.key_prefix)
    try:
        shared = SharedLimiter(
            RedisRateLimiter(connection),
            MemoryRateLimiter(),
            SharedStateHealth(policy="fail_closed"),
            policy="fail_closed",
        )
        redis = await drive(shared, tasks, seconds)
        single = await drive(shared, 1, seconds)
    finally:
        await connection.close()
    return {"memory": memory, "redis": redis, "redis_one_task": single}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=32, help="concurrent requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="per backend")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, running_redis(Path(workdir)) as server:
        runs = asyncio.run(measure(server.url, server.password, args.tasks, args.seconds))
    memory, redis = runs["memory"], runs["redis"]
    figures = {
        "tasks": args.tasks,
        "seconds": args.seconds,
        **runs,
        "added_p50_ms": round(redis["p50_ms"] - memory["p50_ms"], 4),
        "added_p99_ms": round(redis["p99_ms"] - memory["p99_ms"], 4),
        "added_p50_ms_one_task": round(runs["redis_one_task"]["p50_ms"] - memory["p50_ms"], 4),
        "throughput_ratio": ratio(redis["requests_per_s"], memory["requests_per_s"]),
    }
    report = emit("shared_state", figures, args.json)
    print()
    print(
        table(
            ["limiter path", "tasks", "requests/s", "p50 ms", "p99 ms"],
            [
                [
                    "in-memory",
                    args.tasks,
                    memory["requests_per_s"],
                    memory["p50_ms"],
                    memory["p99_ms"],
                ],
                ["Redis", args.tasks, redis["requests_per_s"], redis["p50_ms"], redis["p99_ms"]],
                [
                    "Redis",
                    1,
                    runs["redis_one_task"]["requests_per_s"],
                    runs["redis_one_task"]["p50_ms"],
                    runs["redis_one_task"]["p99_ms"],
                ],
            ],
        )
    )
    print(
        f"\nadded at p50: {figures['added_p50_ms']} ms ({args.tasks} tasks), "
        f"{figures['added_p50_ms_one_task']} ms (1 task); "
        f"Redis / in-memory throughput: {figures['throughput_ratio']}"
    )
    print(describe(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
