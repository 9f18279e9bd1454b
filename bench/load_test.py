"""Sustained load through the whole pipeline: TLS, PII tokenization, the engine, signing.

    .venv/bin/python bench/load_test.py [--clients 64] [--duration 120]

A real gateway with the default model; N clients stream chat completions back to back, each
prompt carrying personal data. Reports errors (non-200s, streams without [DONE] or without a
token), throughput, latency, the resident memory of the gateway and its engine after warm-up
and at the end, and the engine's slots and queue once the clients stop. Exits 1 if anything
failed, memory grew by 10% or more after warm-up, or a slot or queue entry was left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine_bench import percentile  # noqa: E402
from bench.stack import free_port  # noqa: E402
from gateway.auth import hash_key  # noqa: E402

KEY = "sk-load-" + "3" * 24
PROMPT = (
    "Client {c} request {n}: write to ada.lovelace{c}@example.org and call (212) 555-01{c:02d}."
)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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
    context: ssl.SSLContext,
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


def run_load(clients: int, duration: float, warmup: float, max_tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        config = {
            "listener": {"host": "127.0.0.1", "port": port},
            "tls": {"cert_out": str(tmp / "cert.pem")},
            "api_keys": [{"name": "load", "sha256": hash_key(KEY)}],
            "models": [
                {
                    "name": "smollm2-135m-instruct",
                    "deployments": [{"kind": "local", "slots": 4, "queue": 128}],
                }
            ],
            "attestation": {"provider": "simulated"},
            "pii": {"ner": "auto"},
            "telemetry": {"log_format": "json"},
            "run_dir": str(tmp / "run"),
        }
        (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(tmp / "gateway.yaml"),
                "--log-level",
                "warning",
            ],
            stdout=(tmp / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        base = f"https://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, (tmp / "gateway.log").read_text()
                if (tmp / "cert.pem").exists():
                    context = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
                    try:
                        if httpx.get(base + "/ready", verify=context, timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.2)
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
            process.terminate()
            process.wait(timeout=60)
    growth = {k: round(100 * (end[k] - warm[k]) / max(warm[k], 1), 2) for k in warm}
    return {
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "requests_ok": stats["ok"],
        "errors": stats["errors"],
        "requests_per_s": round(stats["ok"] / elapsed, 2),
        "streamed_chunks_per_s": round(stats["chunks"] / elapsed, 1),
        "latency_p50_s": round(percentile(stats["latencies"], 0.5), 3),
        "latency_p95_s": round(percentile(stats["latencies"], 0.95), 3),
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
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    report = run_load(args.clients, args.duration, args.warmup, args.max_tokens)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(
        f"\n{report['clients']} clients x {report['duration_s']} s: {report['requests_ok']} ok, "
        f"{report['errors']} errors, {report['requests_per_s']} req/s, latency p50 "
        f"{report['latency_p50_s']} s p95 {report['latency_p95_s']} s; RSS growth after "
        f"warm-up {report['rss_growth_pct']}; at the end {report['engine_slots_busy_at_end']} "
        f"busy slots, {report['engine_queue_at_end']} queued"
    )
    healthy = (
        report["errors"] == 0
        and max(report["rss_growth_pct"].values()) < 10
        and report["engine_slots_busy_at_end"] == 0
        and report["engine_queue_at_end"] == 0
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
