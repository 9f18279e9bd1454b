"""What the litellm path costs next to a plain httpx upstream, to the same instant mock.

    .venv/bin/python bench/litellm_bench.py [--requests 200] [--duration 6]

One gateway (plain HTTP on loopback, PII off on both routes to isolate the upstream code,
signing on as always) with two routes to ``bench/mock_upstream.py``: ``direct`` (a ``remote``
deployment: httpx) and ``via-litellm`` (a ``litellm`` deployment, ``openai/mock`` with
``api_base``). Added latency is against calling the mock directly; interleaved, one at a
time; then req/s with 32 concurrent clients. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine_bench import percentile  # noqa: E402
from bench.gateway_bench import KEY, Target, sequential, throughput  # noqa: E402
from bench.stack import free_port, start_gateway, start_mock, stop  # noqa: E402
from gateway.auth import hash_key  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "litellm.json")
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    report: dict[str, Any] = {}
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
                base50 = percentile(samples["mock"], 0.5)
                base99 = percentile(samples["mock"], 0.99)
                report[mode] = {
                    t.name: {
                        "added_p50_ms": round(
                            (percentile(samples[t.name], 0.5) - base50) * 1000, 3
                        ),
                        "added_p99_ms": round(
                            (percentile(samples[t.name], 0.99) - base99) * 1000, 3
                        ),
                        "rps": asyncio.run(throughput(t, 32, args.duration, stream))["rps"],
                    }
                    for t in targets[1:]
                }
                direct, via = report[mode]["direct"], report[mode]["via-litellm"]
                report[mode]["litellm_extra_p50_ms"] = round(
                    via["added_p50_ms"] - direct["added_p50_ms"], 3
                )
                report[mode]["litellm_rps_ratio"] = round(via["rps"] / max(direct["rps"], 1e-3), 3)
        finally:
            stop(processes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for mode in ("non_stream", "stream"):
        print(f"\n{mode}: {'route':12s} {'+p50 ms':>8s} {'+p99 ms':>8s} {'req/s @32':>10s}")
        for name in ("direct", "via-litellm"):
            r = report[mode][name]
            print(
                f"{'':11s} {name:12s} {r['added_p50_ms']:8.2f} {r['added_p99_ms']:8.2f} "
                f"{r['rps']:10.1f}"
            )
        print(
            f"{'':11s} litellm costs {report[mode]['litellm_extra_p50_ms']} ms more at p50 and "
            f"serves {report[mode]['litellm_rps_ratio']}x the req/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
