"""Start-up and footprint of the gateway alone, as it ships (``config/gateway.yaml``).

    python -m bench.startup_bench [--runs 5]

The shipped configuration is used as it is (TLS with a key generated at start-up, PII
patterns and gazetteers, the simulated TEE), except that each model's local engines are
replaced by a remote upstream, which is never contacted: the engines load their models in
processes of their own, and that is not the gateway's start-up. Each run starts a fresh
process and reads the ``ready`` line the gateway prints once it listens: seconds since the
process started, and its resident memory. The process's RSS is read again from /proc after
one request has been answered. Targets: ready in <= 1.5 s and <= 150 MB resident.
"""

from __future__ import annotations

import argparse
import re
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.paths import ROOT, default_json
from bench.report import describe, emit, table
from bench.stack import free_port, rss_kb
from bench.stats import median
from gateway.auth import hash_key

KEY = "sk-startup-" + "7" * 24
READY = re.compile(r"ready\s+([0-9.]+) s after the process started.*?, ([0-9]+) MiB resident")
TARGET_S = 1.5
TARGET_MB = 150


def shipped_without_engines(tmp: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    config["listener"]["port"] = free_port()
    config["tls"]["cert_out"] = str(tmp / "cert.pem")
    config["api_keys"] = [{"name": "bench", "sha256": hash_key(KEY)}]
    config["run_dir"] = str(tmp / "run")
    for model in config["models"]:
        model["deployments"] = [{"kind": "remote", "base_url": "http://127.0.0.1:9/v1"}]
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_run(config: Path, tmp: Path) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        found = None
        for line in process.stdout:
            found = READY.search(line)
            if found:
                break
        if found is None:
            raise RuntimeError(f"the gateway exited with {process.wait()} before it was ready")
        port = yaml.safe_load(config.read_text())["listener"]["port"]
        trust = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
        answered = httpx.get(
            f"https://127.0.0.1:{port}/v1/models",
            verify=trust,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        answered.raise_for_status()
        rss_kib = rss_kb(process.pid)
        return {
            "ready_s": float(found.group(1)),
            "rss_at_ready_mib": float(found.group(2)),
            "rss_after_request_mb": round(rss_kib * 1024 / 1e6, 1),
        }
    finally:
        process.terminate()
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=default_json("startup"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = shipped_without_engines(tmp)
        runs = [one_run(config, tmp) for _ in range(args.runs)]
    ready = [r["ready_s"] for r in runs]
    rss = [r["rss_after_request_mb"] for r in runs]
    figures = {
        "runs": runs,
        "ready_s_median": round(median(ready), 2),
        "ready_s_max": max(ready),
        "rss_mb_median": round(median(rss), 1),
        "ready_vs_target": round(median(ready) / TARGET_S, 2),
        "rss_vs_target": round(median(rss) / TARGET_MB, 2),
    }
    report = emit("startup", figures, args.json)
    print()
    print(
        table(
            ["figure", "median", "worst", "target"],
            [
                ["ready after process start (s)", figures["ready_s_median"], max(ready), TARGET_S],
                ["resident after a request (MB)", figures["rss_mb_median"], max(rss), TARGET_MB],
            ],
        )
    )
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
