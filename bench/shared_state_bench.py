"""Redis-backed limits against in-memory ones, in the same run: requests/s and added latency.

    python -m bench.shared_state_bench [--tasks 32] [--seconds 4] [--clients 32]
                                       [--rounds 3] [--round-seconds 4] [--json PATH]

Three measurements, each against a real ``redis-server`` (Debian's, on a free loopback
port with a password, as the tests start it):

1. The limiter path of one request (``begin`` awaited, ``finish`` queued) through the
   gateway's own ``SharedLimiter``: in-memory, Redis with leases (the default, 1 s) and
   Redis with ``lease_s: 0`` (every request asks Redis), for comparison.
2. The whole gateway (what issue 16's target is about): gateway processes with in-memory
   and with Redis-backed limits, plus a second in-memory one as a control (its spread from
   the first is the run's noise floor), otherwise the same (a key with requests and tokens per
   minute set too high to refuse, PII tokenization on, NER off, TLS on), in front of one
   instant mock upstream; 1 and ``--clients`` concurrent clients drive each for
   ``--round-seconds``, alternating, ``--rounds`` times.
3. Two Redis-backed replicas sharing one Redis and one key, the clients split between
   them, against one replica with all the clients (aggregate requests/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gateway_bench import Target, client_for, one
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, start_mock, stop
from bench.stats import ratio, summary
from gateway.auth import hash_key
from gateway.config import APIKeyConfig, SharedStateConfig
from gateway.shared_state.base import Limiter
from gateway.shared_state.fallback import SharedLimiter, SharedStateHealth
from gateway.shared_state.memory import MemoryRateLimiter
from gateway.shared_state.redis_backend import RedisConnection, RedisRateLimiter, connect
from tests.support.redis_process import RedisProcess, running_redis

SECRET = "sk-bench-0123456789"
PASSWORD_ENV = "CG_BENCH_REDIS_PASSWORD"
# Limits high enough never to refuse: the cost of counting, not of refusing, is measured.
KEY = APIKeyConfig(
    name="bench",
    sha256=hash_key(SECRET),
    requests_per_minute=10**9,
    tokens_per_minute=10**12,
    max_in_flight=10**6,
)


# -- 1. the limiter path ----------------------------------------------------------------------
async def one_request(limiter: Limiter) -> None:
    admission = await limiter.begin(KEY, 200, 100)
    limiter.finish(admission, 150)


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
    await limiter.flush()  # the queued finishes are part of the work
    elapsed = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **summary(latencies, (50, 99), unit="ms", scale=1000, digits=4),
    }


async def limiter_path(server: RedisProcess, tasks: int, seconds: float) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for n in (1, tasks):
        runs[f"memory_{n}"] = await drive(MemoryRateLimiter(), n, seconds)
    # redis: the shipped default (leases of 1 s); redis_exact: lease_s 0, every request asks.
    for name, lease_s in (("redis", 1.0), ("redis_exact", 0.0)):
        section = SharedStateConfig(backend="redis", url=server.url, key_prefix="cgbench:")
        connection = RedisConnection(connect(section, server.password), section.key_prefix)
        try:
            redis_limiter = RedisRateLimiter(connection, lease_s=lease_s)
            shared = SharedLimiter(
                redis_limiter,
                MemoryRateLimiter(),
                SharedStateHealth(policy="fail_closed"),
                policy="fail_closed",
            )
            for n in (1, tasks):
                runs[f"{name}_{n}"] = await drive(shared, n, seconds)
            await redis_limiter.close()
        finally:
            await connection.close()
    return runs


# -- 2. the whole gateway ---------------------------------------------------------------------
def gateway_config(tmp: Path, name: str, mock: str, redis_url: str | None) -> dict[str, Any]:
    limited = KEY.model_dump(include={"name", "sha256", "requests_per_minute"})
    config: dict[str, Any] = {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / f"{name}.pem")},
        "api_keys": [{**limited, "tokens_per_minute": KEY.tokens_per_minute}],
        "models": [
            {
                "name": "mock",
                "deployments": [{"kind": "remote", "base_url": mock + "/v1"}],
                "pii": {"mode": "tokenize"},
            }
        ],
        "pii": {"ner": "off"},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / name),
    }
    if redis_url is not None:
        config["shared_state"] = {
            "backend": "redis",
            "url": redis_url,
            "password_env": PASSWORD_ENV,
            "key_prefix": "cgbench-gw:",
        }
    return config


async def load(target: Target, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    async with client_for(target, clients) as client:
        for _ in range(20):  # warm-up: connections, TLS sessions, scripts
            await one(client, False, target.model)
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                try:
                    latencies.append(await one(client, False, target.model))
                except Exception:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "elapsed_s": elapsed,
        "latencies": latencies,
        "errors": errors,
    }


async def load_spread(targets: list[Target], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` spread evenly over ``targets`` (replicas behind one name), at once."""
    share = max(1, clients // len(targets))
    parts = await asyncio.gather(*(load(t, share, seconds) for t in targets))
    return {
        "requests": sum(part["requests"] for part in parts),
        "elapsed_s": max(part["elapsed_s"] for part in parts),
        "latencies": [x for part in parts for x in part["latencies"]],
        "errors": sum(part["errors"] for part in parts),
    }


async def compare(
    targets: list[list[Target]], clients: int, rounds: int, seconds: float
) -> dict[str, Any]:
    """Each entry of ``targets`` is one system (one gateway, or replicas sharing clients)."""
    done: dict[str, list[dict[str, Any]]] = {group[0].name: [] for group in targets}
    for i in range(rounds):
        order = targets if i % 2 == 0 else targets[::-1]  # neither always goes first
        for group in order:
            done[group[0].name].append(await load_spread(group, clients, seconds))
    out: dict[str, Any] = {}
    for name, parts in done.items():
        latencies = [x for part in parts for x in part["latencies"]]
        requests = sum(part["requests"] for part in parts)
        out[name] = {
            "requests": requests,
            "errors": sum(part["errors"] for part in parts),
            "requests_per_s": round(requests / sum(part["elapsed_s"] for part in parts), 1),
            "rounds_requests_per_s": [
                round(part["requests"] / part["elapsed_s"], 1) for part in parts
            ],
            **summary(latencies, (50, 99), unit="ms", scale=1000, digits=3),
        }
    return out


def whole_gateway(
    server: RedisProcess, tmp: Path, clients: int, rounds: int, seconds: float
) -> dict[str, Any]:
    processes: list[subprocess.Popen[bytes]] = []
    os.environ[PASSWORD_ENV] = server.password
    with (tmp / "servers.log").open("wb") as log:
        try:
            mock_process, mock = start_mock(log)
            processes.append(mock_process)
            started: dict[str, Target] = {}
            gateways = (
                ("memory", None),
                ("memory_control", None),
                ("redis", server.url),
                ("redis_b", server.url),
            )
            for name, url in gateways:
                config = gateway_config(tmp, name, mock, url)
                process, base, verify = start_gateway(tmp, name, config, log)
                processes.append(process)
                started[name] = Target(name, base, SECRET, verify)
            # memory_control is a second, identical in-memory gateway: the spread between
            # it and memory is this run's noise floor.
            single = [[started["memory"]], [started["memory_control"]], [started["redis"]]]
            one_client = asyncio.run(compare(single, 1, rounds, seconds / 2))
            many = asyncio.run(compare(single, clients, rounds, seconds))
            # Two replicas sharing one Redis (and one key's limits) against one of them.
            pair = Target("two_replicas", started["redis"].base, SECRET, started["redis"].verify)
            second = Target(
                "two_replicas", started["redis_b"].base, SECRET, started["redis_b"].verify
            )
            replicas = asyncio.run(
                compare([[started["redis"]], [pair, second]], clients, rounds, seconds)
            )
        finally:
            stop(processes)
    return {"clients_1": one_client, f"clients_{clients}": many, "replicas": replicas}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=32, help="limiter path: concurrent tasks")
    parser.add_argument("--seconds", type=float, default=3.0, help="limiter path: per run")
    parser.add_argument("--clients", type=int, default=32, help="gateway: concurrent clients")
    parser.add_argument("--rounds", type=int, default=3, help="gateway: interleaved rounds")
    parser.add_argument("--round-seconds", type=float, default=4.0, help="gateway: per round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, running_redis(Path(workdir)) as server:
        path = asyncio.run(limiter_path(server, args.tasks, args.seconds))
        gateways = Path(workdir) / "gateways"  # apart from Redis's own files (its TLS pem)
        gateways.mkdir()
        gateway = whole_gateway(server, gateways, args.clients, args.rounds, args.round_seconds)
    replicas = gateway.pop("replicas")
    replicas["aggregate_ratio"] = ratio(
        replicas["two_replicas"]["requests_per_s"], replicas["redis"]["requests_per_s"]
    )
    comparison: dict[str, Any] = {}
    for level, runs in gateway.items():
        memory, redis, control = runs["memory"], runs["redis"], runs["memory_control"]
        comparison[level] = {
            "added_p50_ms": round(redis["p50_ms"] - memory["p50_ms"], 3),
            "added_p99_ms": round(redis["p99_ms"] - memory["p99_ms"], 3),
            "throughput_ratio": ratio(redis["requests_per_s"], memory["requests_per_s"]),
            "control_p50_ms": round(control["p50_ms"] - memory["p50_ms"], 3),
            "control_throughput_ratio": ratio(control["requests_per_s"], memory["requests_per_s"]),
        }
    figures = {
        "limiter_path": {"tasks": args.tasks, "seconds": args.seconds, **path},
        "gateway": {
            "clients": args.clients,
            "rounds": args.rounds,
            "round_seconds": args.round_seconds,
            **gateway,
            "comparison": comparison,
            "target": "<= 0.3 ms added at p50, >= 0.9 of the in-memory throughput",
        },
        "replicas": {
            "clients": args.clients,
            **replicas,
            "note": "client, mock upstream, Redis and both gateways share this machine's CPUs",
        },
    }
    report = emit("shared_state", figures, args.json)
    print()
    rows = []
    for name in ("memory", "redis", "redis_exact"):
        for n in (1, args.tasks):
            run = path[f"{name}_{n}"]
            rows.append([name, n, run["requests_per_s"], run["p50_ms"], run["p99_ms"]])
    print(table(["limiter path (begin + finish)", "tasks", "requests/s", "p50 ms", "p99 ms"], rows))
    print()
    rows = []
    for level, runs in gateway.items():
        clients = level.removeprefix("clients_")
        for name in ("memory", "memory_control", "redis"):
            run = runs[name]
            rows.append(
                [
                    f"gateway, {name} limits",
                    clients,
                    run["requests_per_s"],
                    run["p50_ms"],
                    run["p99_ms"],
                    run["errors"],
                ]
            )
        c = comparison[level]
        rows.append(
            [
                "Redis - memory",
                clients,
                c["throughput_ratio"],
                c["added_p50_ms"],
                c["added_p99_ms"],
                "",
            ]
        )
        rows.append(
            [
                "control - memory (noise)",
                clients,
                c["control_throughput_ratio"],
                c["control_p50_ms"],
                "",
                "",
            ]
        )
    print(
        table(
            [
                "whole gateway (TLS, PII on, NER off)",
                "clients",
                "requests/s (ratio)",
                "p50 ms (added)",
                "p99 ms (added)",
                "errors",
            ],
            rows,
        )
    )
    rows = [
        [name, replicas[name]["requests_per_s"], replicas[name]["p50_ms"], replicas[name]["errors"]]
        for name in ("redis", "two_replicas")
    ]
    rows.append(["2 replicas / 1", replicas["aggregate_ratio"], "", ""])
    print()
    print(
        table(
            [f"Redis-backed gateways, {args.clients} clients", "requests/s", "p50 ms", "errors"],
            rows,
        )
    )
    print(describe(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
