"""Gateway overhead against LiteLLM's proxy, both in front of the same instant mock upstream.

    python -m bench.gateway_bench [--requests 300] [--duration 8] [--litellm-venv DIR]

Targets: the mock itself (``direct``); this gateway over plain HTTP on loopback with PII off
(``gateway-http``, the like-for-like comparison), with PII tokenization by patterns
(``gateway-http-pii``), as it ships: TLS and tokenization (``gateway-tls-pii``), and with
spaCy NER on top (``gateway-tls-pii-ner``);
and the LiteLLM proxy (``litellm``, plain HTTP, one worker, offline: local cost map, no
telemetry). LiteLLM lives in its own virtualenv (``--litellm-venv``, default
``$XDG_CACHE_HOME/confidential-gateway/bench-venvs/litellm``, ``~/.cache`` without
``$XDG_CACHE_HOME``), created on first use. Each prompt is new text carrying an e-mail
address, a card number and a phone number.

1. Added latency: requests one at a time, interleaved across targets so drift hits all of
   them alike; added = target percentile minus the direct percentile.
2. Throughput: 32 concurrent clients for ``--duration`` seconds per target.
Both non-streamed and streamed. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.paths import cache_dir, default_json
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, start_mock, stop, wait_http
from bench.stats import format_ratio, quantile, ratio
from gateway.auth import hash_key

KEY = "sk-bench-" + "0" * 24
LITELLM_KEY = "sk-litellm-master-" + "1" * 24
# Every request is new text (a counter), so PII detection cannot be served from its cache.
PROMPT = (
    "Request {n}: write to jane.doe{n}@example.org about card 4111 1111 1111 1111 and call "
    "(212) 555-0147 before Friday."
)
# name, plain HTTP, PII mode, NER: the like-for-like proxy, then the stages switched on.
GATEWAY_VARIANTS = [
    ("gateway-http", True, "off", "off"),
    ("gateway-http-pii", True, "tokenize", "off"),
    ("gateway-tls-pii", False, "tokenize", "off"),  # the shipped default (config/gateway.yaml)
    ("gateway-tls-pii-ner", False, "tokenize", "on"),
]
_counter = iter(range(10**9))


def body(model: str = "mock") -> dict[str, Any]:
    content = PROMPT.format(n=next(_counter))
    return {"model": model, "messages": [{"role": "user", "content": content}]}


@dataclass
class Target:
    name: str
    base: str
    key: str
    verify: ssl.SSLContext | bool = False
    model: str = "mock"


def ensure_litellm(venv: Path) -> Path | None:
    """The ``litellm`` command of ``venv``, creating the venv and installing it if need be."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import litellm.proxy"], capture_output=True)
    if probe.returncode != 0:
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "litellm[proxy]"], capture_output=True
        )
        if install.returncode != 0:
            print(f"litellm unavailable: {install.stderr[-400:]!r}", file=sys.stderr)
            return None
    return venv / "bin" / "litellm"


async def one(client: httpx.AsyncClient, stream: bool, model: str = "mock") -> float:
    started = time.perf_counter()
    if stream:
        async with client.stream(
            "POST", "/v1/chat/completions", json={**body(model), "stream": True}
        ) as response:
            async for _ in response.aiter_bytes():
                pass
            status = response.status_code
    else:
        status = (await client.post("/v1/chat/completions", json=body(model))).status_code
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return time.perf_counter() - started


def client_for(target: Target, connections: int = 4) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=target.base,
        verify=target.verify,
        headers={"Authorization": f"Bearer {target.key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def sequential(targets: list[Target], n: int, stream: bool) -> dict[str, list[float]]:
    clients = {t.name: client_for(t) for t in targets}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for t in targets:
            for _ in range(20):
                await one(clients[t.name], stream, t.model)
        for i in range(n):
            order = targets[i % len(targets) :] + targets[: i % len(targets)]
            for t in order:
                samples[t.name].append(await one(clients[t.name], stream, t.model))
    finally:
        for client in clients.values():
            await client.aclose()
    return samples


async def throughput(
    target: Target, concurrency: int, duration: float, stream: bool
) -> dict[str, Any]:
    done = 0
    errors = 0
    stop_at = time.perf_counter() + duration
    async with client_for(target, concurrency) as client:
        for _ in range(10):
            await one(client, stream, target.model)

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    await one(client, stream, target.model)
                    done += 1
                except Exception:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"rps": round(done / elapsed, 1), "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=cache_dir() / "bench-venvs" / "litellm",
        help="virtualenv for the LiteLLM proxy (created on first use)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM proxy")
    parser.add_argument("--json", type=Path, default=default_json("gateway"))
    args = parser.parse_args()

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = (tmp / "servers.log").open("wb")

        try:
            mock_process, mock = start_mock(log)
            processes.append(mock_process)
            targets = [Target("direct", mock, "unused")]

            for name, plain, pii_mode, ner in GATEWAY_VARIANTS:
                route = {
                    "name": "mock",
                    "deployments": [{"kind": "remote", "base_url": mock + "/v1"}],
                    "pii": {"mode": pii_mode, "allow_raw_pii": pii_mode == "off"},
                }
                config = {
                    "listener": {"host": "127.0.0.1", "port": free_port(), "plain_http": plain},
                    "tls": {"cert_out": str(tmp / f"{name}.pem")},
                    "api_keys": [{"name": "bench", "sha256": hash_key(KEY)}],
                    "models": [route],
                    "pii": {"ner": ner},
                    "attestation": {"provider": "simulated"},
                    "run_dir": str(tmp / name),
                }
                process, base, verify = start_gateway(tmp, name, config, log)
                processes.append(process)
                targets.append(Target(name, base, KEY, verify))

            litellm = None if args.no_litellm else ensure_litellm(args.litellm_venv)
            if litellm is not None:
                port = free_port()
                (tmp / "litellm.yaml").write_text(
                    yaml.safe_dump(
                        {
                            "model_list": [
                                {
                                    "model_name": "mock",
                                    "litellm_params": {
                                        "model": "openai/mock",
                                        "api_base": mock + "/v1",
                                        "api_key": "unused",
                                    },
                                }
                            ],
                            "general_settings": {"master_key": LITELLM_KEY},
                            "litellm_settings": {"telemetry": False},
                        }
                    )
                )
                processes.append(
                    subprocess.Popen(
                        [
                            str(litellm),
                            "--config",
                            str(tmp / "litellm.yaml"),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--num_workers",
                            "1",
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=tmp,
                        env={
                            **os.environ,
                            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                            "LITELLM_TELEMETRY_DISABLED": "true",
                            "LITELLM_MASTER_KEY": LITELLM_KEY,
                            "LITELLM_LOG": "ERROR",
                        },
                    )
                )
                base = f"http://127.0.0.1:{port}"
                wait_http(base + "/health/liveliness", False, 180)
                targets.append(Target("litellm", base, LITELLM_KEY))

            figures: dict[str, Any] = {"requests": args.requests, "concurrency": args.concurrency}
            for mode, stream in (("non_stream", False), ("stream", True)):
                samples = asyncio.run(sequential(targets, args.requests, stream))
                base_p50 = quantile(samples["direct"], 0.5)
                base_p99 = quantile(samples["direct"], 0.99)
                latency = {}
                for t in targets:
                    p50 = quantile(samples[t.name], 0.5)
                    p99 = quantile(samples[t.name], 0.99)
                    latency[t.name] = {
                        "p50_ms": round(p50 * 1000, 3),
                        "p99_ms": round(p99 * 1000, 3),
                        "added_p50_ms": round((p50 - base_p50) * 1000, 3),
                        "added_p99_ms": round((p99 - base_p99) * 1000, 3),
                    }
                rates = {
                    t.name: asyncio.run(throughput(t, args.concurrency, args.duration, stream))
                    for t in targets
                }
                figures[mode] = {"latency": latency, "throughput": rates}
                if "litellm" in latency:
                    theirs, their_rps = latency["litellm"], rates["litellm"]["rps"]
                    # Floors keep an added latency of ~0 (or a stalled peer) from dividing by 0.
                    figures[mode]["ratios"] = {
                        name: {
                            "litellm_added_p50_over_ours": ratio(
                                theirs["added_p50_ms"], max(latency[name]["added_p50_ms"], 1e-3), 2
                            ),
                            "our_rps_over_litellm": ratio(
                                rates[name]["rps"], max(their_rps, 1e-3), 2
                            ),
                        }
                        for name, *_ in GATEWAY_VARIANTS
                    }
        finally:
            stop(processes)

    report = emit("gateway", figures, args.json)
    headers = ["target", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", f"req/s @{args.concurrency}"]
    for mode in ("non_stream", "stream"):
        rows = [
            [
                name,
                lat["p50_ms"],
                lat["p99_ms"],
                lat["added_p50_ms"],
                lat["added_p99_ms"],
                report[mode]["throughput"][name]["rps"],
            ]
            for name, lat in report[mode]["latency"].items()
        ]
        print()
        print(table(headers, rows, title=mode))
        for name, r in report[mode].get("ratios", {}).items():
            print(
                f"{name}: LiteLLM adds {format_ratio(r['litellm_added_p50_over_ours'])} our "
                f"added p50; we serve {format_ratio(r['our_rps_over_litellm'])} its req/s"
            )
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
