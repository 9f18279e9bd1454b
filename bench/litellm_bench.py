"""What the litellm path costs next to a plain httpx upstream, to the same instant mock.

    python -m bench.litellm_bench [--requests 200] [--duration 6] [--json FILE]

One gateway (plain HTTP on loopback, PII off on both routes to isolate the upstream code,
signing on as always) with two routes to ``bench.mock_upstream``: ``direct`` (a ``remote``
deployment: httpx) and ``via-litellm`` (a ``litellm`` deployment, ``openai/mock`` with
``api_base``). Added latency is against calling the mock directly; interleaved, one at a
time; then req/s with ``--concurrency`` (32) concurrent clients. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.gateway_bench import KEY, Target, sequential, throughput
from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, start_gateway, start_mock, stop
from bench.stats import format_ratio, quantile, ratio
from gateway.auth import hash_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", type=Path, default=default_json("litellm"))
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    figures: dict[str, Any] = {"requests": args.requests, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = (tmp / "servers.log").open("wb")
        try:
            mock_process, mock = start_mock(log)
            processes.append(mock_process)
            off = {"mode": "off", "allow_raw_pii": True}
            config = {
                "listener": {"host": "127.0.0.1", "port": free_port(), "plain_http": True},
                "api_keys": [{"name": "bench", "sha256": hash_key(KEY)}],
                "models": [
                    {
                        "name": "direct",
                        "pii": off,
                        "deployments": [
                            {"kind": "remote", "base_url": mock + "/v1", "model": "mock"}
                        ],
                    },
                    {
                        "name": "via-litellm",
                        "pii": off,
                        "deployments": [
                            {"kind": "litellm", "model": "openai/mock", "api_base": mock + "/v1"}
                        ],
                    },
                ],
                "attestation": {"provider": "simulated"},
                "pii": {"ner": "off"},
                "run_dir": str(tmp / "run"),
            }
            process, base, _ = start_gateway(
                tmp, "gateway", config, log, env={"OPENAI_API_KEY": "x"}
            )
            processes.append(process)
            targets = [
                Target("mock", mock, "unused"),
                Target("direct", base, KEY, model="direct"),
                Target("via-litellm", base, KEY, model="via-litellm"),
            ]
            for mode, stream in (("non_stream", False), ("stream", True)):
                samples = asyncio.run(sequential(targets, args.requests, stream))
                base50 = quantile(samples["mock"], 0.5)
                base99 = quantile(samples["mock"], 0.99)
                figures[mode] = {
                    t.name: {
                        "added_p50_ms": round((quantile(samples[t.name], 0.5) - base50) * 1000, 3),
                        "added_p99_ms": round((quantile(samples[t.name], 0.99) - base99) * 1000, 3),
                        "rps": asyncio.run(throughput(t, args.concurrency, args.duration, stream))[
                            "rps"
                        ],
                    }
                    for t in targets[1:]
                }
                direct, via = figures[mode]["direct"], figures[mode]["via-litellm"]
                figures[mode]["litellm_extra_p50_ms"] = round(
                    via["added_p50_ms"] - direct["added_p50_ms"], 3
                )
                figures[mode]["litellm_rps_ratio"] = ratio(via["rps"], max(direct["rps"], 1e-3))
        finally:
            stop(processes)
    report = emit("litellm", figures, args.json)
    headers = ["route", "+p50 ms", "+p99 ms", f"req/s @{args.concurrency}"]
    for mode in ("non_stream", "stream"):
        rows = [
            [name, r["added_p50_ms"], r["added_p99_ms"], r["rps"]]
            for name in ("direct", "via-litellm")
            for r in [report[mode][name]]
        ]
        print()
        print(table(headers, rows, title=mode))
        print(
            f"litellm costs {report[mode]['litellm_extra_p50_ms']} ms more at p50 and serves "
            f"{format_ratio(report[mode]['litellm_rps_ratio'], 3)} the req/s"
        )
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
