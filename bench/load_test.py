"""Sustained load through the whole pipeline: TLS, PII tokenization, the engine, signing.

    python -m bench.load_test [--clients 64] [--duration 120] [--slots 4] [--json FILE]

A real gateway with the default model; N clients stream chat completions back to back, each
prompt carrying personal data. Reports errors (non-200s, streams without [DONE] or without a
token), throughput, latency, the resident memory of the gateway and its engine after warm-up
and at the end, and the engine's slots and queue once the clients stop. Exits 1 if anything
failed, memory grew by 10% or more after warm-up, or a slot or queue entry was left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, rss_kb, start_gateway, stop
from bench.stats import summary
from gateway.auth import hash_key

KEY = "sk-load-" + "3" * 24
PROMPT = (
    "Client {c} request {n}: write to ada.lovelace{c}@example.org and call (212) 555-01{c:02d}."
)


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


async def client_loop(
    client: httpx.AsyncClient, index: int, stop_at: float, max_tokens: int, stats: dict[str, Any]
) -> None:
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        body = {
            "model": "smollm2-135m-instruct",
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": PROMPT.format(c=index, n=n)}],
        }
        started = time.monotonic()
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = [line async for line in response.aiter_lines() if line]
            ok = (
                response.status_code == 200
                and lines
                and lines[-1] == "data: [DONE]"
                and lines[-2].startswith(": attestation_token ")
            )
        except httpx.HTTPError:
            ok = False
        if ok:
            stats["ok"] += 1
            stats["latencies"].append(time.monotonic() - started)
            stats["chunks"] += sum(1 for line in lines if '"content":"' in line)
        else:
            stats["errors"] += 1


async def drive(
    base: str,
    context: ssl.SSLContext | bool,
    clients: int,
    seconds: float,
    max_tokens: int,
    stats: dict[str, Any],
) -> None:
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(
        base_url=base,
        verify=context,
        limits=limits,
        timeout=300,
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(client_loop(client, i, stop_at, max_tokens, stats) for i in range(clients))
        )


def run_load(
    clients: int, duration: float, warmup: float, max_tokens: int, slots: int = 4
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = {
            "listener": {"host": "127.0.0.1", "port": free_port()},
            "tls": {"cert_out": str(tmp / "cert.pem")},
            "api_keys": [{"name": "load", "sha256": hash_key(KEY)}],
            "models": [
                {
                    "name": "smollm2-135m-instruct",
                    "deployments": [{"kind": "local", "slots": slots, "queue": 128}],
                }
            ],
            "attestation": {"provider": "simulated"},
            "pii": {"ner": "auto"},
            "telemetry": {"log_format": "json"},
            "run_dir": str(tmp / "run"),
        }
        with (tmp / "gateway.log").open("wb") as log:
            process, base, context = start_gateway(tmp, "gateway", config, log)
            try:
                engine_pid = child_pids(process.pid)[0]
                stats: dict[str, Any] = {"ok": 0, "errors": 0, "chunks": 0, "latencies": []}
                asyncio.run(drive(base, context, clients, warmup, max_tokens, stats))
                warm = {"gateway_kb": rss_kb(process.pid), "engine_kb": rss_kb(engine_pid)}
                stats = {"ok": 0, "errors": 0, "chunks": 0, "latencies": []}
                started = time.monotonic()
                asyncio.run(drive(base, context, clients, duration, max_tokens, stats))
                elapsed = time.monotonic() - started
                end = {"gateway_kb": rss_kb(process.pid), "engine_kb": rss_kb(engine_pid)}
                engine_health = _engine_health(tmp / "run" / "engines")
            finally:
                stop([process])
    growth = {k: round(100 * (end[k] - warm[k]) / max(warm[k], 1), 2) for k in warm}
    return {
        "clients": clients,
        "slots": slots,
        "duration_s": round(elapsed, 1),
        "requests_ok": stats["ok"],
        "errors": stats["errors"],
        "requests_per_s": round(stats["ok"] / elapsed, 2),
        "streamed_chunks_per_s": round(stats["chunks"] / elapsed, 1),
        **summary(stats["latencies"], (50, 95), unit="s", prefix="latency_"),
        "rss_after_warmup_kb": warm,
        "rss_at_end_kb": end,
        "rss_growth_pct": growth,
        "engine_slots_busy_at_end": engine_health["slots"]["busy"],
        "engine_queue_at_end": engine_health["queue"]["depth"],
    }


def _engine_health(engines_dir: Path) -> dict[str, Any]:
    socket = next(engines_dir.glob("*.sock"))
    transport = httpx.HTTPTransport(uds=str(socket))
    deadline = time.monotonic() + 30
    with httpx.Client(transport=transport, base_url="http://engine") as client:
        while True:
            health: dict[str, Any] = client.get("/health").json()
            idle = health["slots"]["busy"] == 0 and health["queue"]["depth"] == 0
            if idle or time.monotonic() > deadline:
                return health
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--slots", type=int, default=4, help="engine slots")
    parser.add_argument("--json", type=Path, default=default_json("load"))
    args = parser.parse_args()
    figures = run_load(args.clients, args.duration, args.warmup, args.max_tokens, args.slots)
    report = emit("load", figures, args.json)
    growth = report["rss_growth_pct"]
    headers = ["clients", "duration s", "ok", "errors", "req/s", "p50 s", "p95 s"]
    row = [
        report["clients"],
        report["duration_s"],
        report["requests_ok"],
        report["errors"],
        report["requests_per_s"],
        report["latency_p50_s"],
        report["latency_p95_s"],
        growth["gateway_kb"],
        growth["engine_kb"],
        report["engine_slots_busy_at_end"],
        report["engine_queue_at_end"],
    ]
    rest = ["gateway RSS +%", "engine RSS +%", "busy slots at end", "queued at end"]
    print()
    print(table([*headers, *rest], [row]))
    print(f"\n{describe(report)}")
    healthy = (
        report["errors"] == 0
        and max(report["rss_growth_pct"].values()) < 10
        and report["engine_slots_busy_at_end"] == 0
        and report["engine_queue_at_end"] == 0
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
