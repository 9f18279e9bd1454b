"""Fairness between keys: how much does one key flooding the gateway slow another key down?

A real gateway with one local llama.cpp engine (the packaged SmolLM2, ``--slots`` slots). The
*victim* key sends short streamed requests one after another and records its time to first
token (TTFT), first alone ("unloaded"), then while the *flooder* key keeps ``--flood``
long requests in flight ("loaded"). Scenarios, each in the same run:

- ``default``: both keys on default settings (weight 1, the default in-flight limit); the
  engine's fair admission puts the victim ahead of the flooder's backlog;
- ``capped``: the operator gives the flooder ``max_in_flight = slots - 1``, so a slot is
  always the victim's within one admission.

The issue's target: loaded TTFT p95 within 2x of unloaded. Prints JSON, then a table.

    python -m bench.fairness_bench [--slots 4] [--flood 16] [--probes 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, stop
from bench.stats import format_ratio, ratio, summary
from gateway.auth import hash_key

FLOODER = "sk-bench-flooder-0123456789"
VICTIM = "sk-bench-victim-0123456789"
MODEL = "smollm2"


def _config(tmp: Path, slots: int, flooder_cap: int | None) -> dict[str, Any]:
    flooder: dict[str, Any] = {"name": "flooder", "sha256": hash_key(FLOODER)}
    if flooder_cap is not None:
        flooder["max_in_flight"] = flooder_cap
    return {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"cert_out": str(tmp / "run" / "cert.pem")},
        "api_keys": [flooder, {"name": "victim", "sha256": hash_key(VICTIM)}],
        "models": [
            {
                "name": MODEL,
                "deployments": [
                    {"kind": "local", "slots": slots, "ctx_per_slot": 1024, "queue": 256}
                ],
            }
        ],
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / "run"),
    }


def _ttft(client: httpx.Client, key: str, content: str, max_tokens: int) -> float | None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        if response.status_code != 200:
            response.read()
            return None
        first: float | None = None
        for line in response.iter_lines():
            if first is None and line.startswith("data: {") and _has_text(line[6:]):
                first = time.perf_counter() - started
        return first


def _has_text(event: str) -> bool:
    """The chunk carries generated text (the first chunks may hold only the role)."""
    chunk = json.loads(event)
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ())


def _probe(base: str, verify: Any, probes: int) -> list[float]:
    out: list[float] = []
    with httpx.Client(base_url=base, verify=verify, timeout=600) as client:
        for i in range(probes):
            value = _ttft(client, VICTIM, f"Name a colour. ({i})", 8)
            if value is not None:
                out.append(value)
    return out


def _scenario(name: str, slots: int, flood: int, probes: int, cap: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = (tmp / "gateway.log").open("wb")
        process, base, verify = start_gateway(tmp, name, _config(tmp, slots, cap), log)
        try:
            unloaded = _probe(base, verify, probes)
            stop_flood = threading.Event()
            refused = [0]

            def flooder() -> None:
                with httpx.Client(base_url=base, verify=verify, timeout=600) as client:
                    while not stop_flood.is_set():
                        if _ttft(client, FLOODER, "Write a long story about the sea.", 256) is None:
                            refused[0] += 1
                            time.sleep(0.2)  # a refused flooder retries soon

            threads = [threading.Thread(target=flooder, daemon=True) for _ in range(flood)]
            for thread in threads:
                thread.start()
            time.sleep(3.0)  # let the flood fill every slot and the queue
            loaded = _probe(base, verify, probes)
            stop_flood.set()
            for thread in threads:
                thread.join(timeout=600)
        finally:
            stop([process])
            log.close()
    alone = summary(unloaded, (50, 95), unit="s", digits=4, prefix="unloaded_ttft_")
    flooded = summary(loaded, (50, 95), unit="s", digits=4, prefix="loaded_ttft_")
    return {
        "scenario": name,
        "flooder_max_in_flight": cap,
        **alone,
        **flooded,
        "p95_ratio": ratio(flooded["loaded_ttft_p95_s"], alone["unloaded_ttft_p95_s"], 2),
        "victim_requests": len(loaded),
        "flooder_refused": refused[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--flood", type=int, default=16, help="flooder requests in flight")
    parser.add_argument("--probes", type=int, default=20, help="victim requests per phase")
    parser.add_argument("--json", type=Path, default=default_json("fairness"))
    args = parser.parse_args()
    results = [
        _scenario("default", args.slots, args.flood, args.probes, None),
        _scenario("capped", args.slots, args.flood, args.probes, max(1, args.slots - 1)),
    ]
    figures = {
        "slots": args.slots,
        "flood": args.flood,
        "target": "loaded TTFT p95 <= 2x unloaded",
        "results": results,
    }
    report = emit("fairness", figures, args.json)
    rows = [
        [
            r["scenario"],
            r["unloaded_ttft_p95_s"],
            r["loaded_ttft_p50_s"],
            r["loaded_ttft_p95_s"],
            format_ratio(r["p95_ratio"]),
        ]
        for r in results
    ]
    headers = ["scenario", "unloaded p95 s", "loaded p50 s", "loaded p95 s", "ratio"]
    print()
    print(table(headers, rows))
    print(f"\n{describe(report)}")


if __name__ == "__main__":
    main()
