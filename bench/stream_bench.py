"""Many concurrent streams through one gateway worker, against a steady streaming upstream.

    python -m bench.stream_bench [--streams 1000] [--chunks 200] [--interval 0.1] [--ramp 10]

``bench.steady_upstream`` streams ``--chunks`` chunks per response, one every ``--interval``
seconds. The same number of clients stream through it directly (the control) and through a
gateway as it ships (TLS, PII patterns; spaCy off), one after the other, each stream started
at a random moment within ``--ramp`` seconds. A client is raw asyncio over TLS (uvloop when
installed), timing each read, so that it costs the shared cores as little as it can.

Reported per target: streams complete (every chunk, ``[DONE]``, and through the gateway the
attestation token), errors by kind, the gap between consecutive content chunks as the client
saw them (p50, p99, max) and time to first chunk; for the gateway, ``added_gap_p99_ms`` (its
gap p99 less the control's, the figure the target is about), its resident memory before,
at the peak with every stream open, and the growth per open stream. Client, upstream and
gateway share this machine's cores: ratios and differences within one run are the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, rss_kb, start_gateway, start_steady_upstream, stop
from bench.stats import summary
from gateway.auth import hash_key

KEY = "sk-stream-" + "5" * 24
MARKER = b'"content":"'
DONE = b"data: [DONE]"
TOKEN = b"attestation_token"
PROMPT = "Write to ada.lovelace@example.org or call (212) 555-0100 about the contract."


@dataclass
class StreamResult:
    ok: bool
    error: str | None
    first_s: float | None
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    path: str
    key: str | None
    tls: ssl.SSLContext | None
    needs_token: bool


def request_bytes(target: Target) -> bytes:
    body = json.dumps(
        {
            "model": "mock",
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    ).encode()
    auth = f"authorization: Bearer {target.key}\r\n" if target.key else ""
    head = (
        f"POST {target.path} HTTP/1.1\r\nhost: {target.host}:{target.port}\r\n{auth}"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


async def one_stream(target: Target, expected: int, timeout: float) -> StreamResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await asyncio.wait_for(_stream(target, expected, started), timeout)
    except TimeoutError:
        return StreamResult(False, "timeout", None)
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
        return StreamResult(False, type(exc).__name__, None)


async def _stream(target: Target, expected: int, started: float) -> StreamResult:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(
        target.host,
        target.port,
        ssl=target.tls,
        server_hostname="localhost" if target.tls else None,
        limit=1 << 20,
    )
    try:
        writer.write(request_bytes(target))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            return StreamResult(False, f"HTTP {status.decode()}", None)
        result = StreamResult(False, None, None)
        last: float | None = None
        carry = b""
        seen_done = seen_token = False
        while True:
            data = await reader.read(65536)
            if not data:
                break
            now = loop.time()
            window = carry + data
            count = window.count(MARKER)
            if count:
                if last is None:
                    result.first_s = now - started
                    result.gaps.extend([0.0] * (count - 1))
                else:
                    result.gaps.append(now - last)
                    result.gaps.extend([0.0] * (count - 1))
                last = now
                result.chunks += count
            seen_done = seen_done or DONE in window
            seen_token = seen_token or TOKEN in window
            # A marker split across two reads is counted once, in the read that completes it.
            carry = (
                window[-(len(MARKER) - 1) :] if MARKER not in window[-(len(MARKER) - 1) :] else b""
            )
            if seen_done:
                break
        if result.chunks != expected:
            result.error = f"{result.chunks} of {expected} chunks"
        elif not seen_done:
            result.error = "no [DONE]"
        elif target.needs_token and not seen_token:
            result.error = "no attestation token"
        else:
            result.ok = True
        return result
    finally:
        writer.close()


async def run_target(
    target: Target, streams: int, chunks: int, ramp: float, timeout: float, pid: int | None
) -> dict[str, Any]:
    rng = random.Random(7)
    before = rss_kb(pid) if pid else None
    peak = before or 0
    open_now = 0
    peak_open = 0
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        nonlocal peak, peak_open
        while not stop_sampling.is_set():
            if pid:
                rss = rss_kb(pid)
                if rss > peak:
                    peak, peak_open = rss, open_now
            await asyncio.sleep(0.25)

    async def tracked(delay: float) -> StreamResult:
        nonlocal open_now
        await asyncio.sleep(delay)
        open_now += 1
        try:
            return await one_stream(target, chunks, timeout)
        finally:
            open_now -= 1

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    results = await asyncio.gather(*(tracked(rng.uniform(0, ramp)) for _ in range(streams)))
    wall = time.perf_counter() - started
    stop_sampling.set()
    await sampler
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error or "?"] = errors.get(r.error or "?", 0) + 1
    gaps = [g for r in results for g in r.gaps]
    firsts = [r.first_s for r in results if r.first_s is not None]
    out: dict[str, Any] = {
        "target": target.name,
        "streams": streams,
        "complete": sum(1 for r in results if r.ok),
        "errors": errors,
        "wall_s": round(wall, 1),
        "chunks_received": sum(r.chunks for r in results),
        **summary(gaps, (50, 99, 100), unit="ms", scale=1000, digits=1, prefix="gap_"),
        **summary(firsts, (50, 99), unit="ms", scale=1000, digits=1, prefix="first_chunk_"),
    }
    if pid and before is not None:
        out["rss_before_mib"] = round(before / 1024, 1)
        out["rss_peak_mib"] = round(peak / 1024, 1)
        out["open_at_peak"] = peak_open
        out["kib_per_open_stream"] = round((peak - before) / peak_open, 1) if peak_open else None
    return out


def gateway_config(tmp: Path, name: str, mock: str, plain: bool, streams: int) -> dict[str, Any]:
    room = max(2 * streams, 1024)
    return {
        "listener": {
            "host": "127.0.0.1",
            "port": free_port(),
            "plain_http": plain,
            "max_connections": room,
            "max_connections_per_address": room,
        },
        "tls": {"cert_out": str(tmp / f"{name}.pem")},
        "api_keys": [{"name": "bench", "sha256": hash_key(KEY)}],
        "limits": {"max_in_flight_per_key": room},
        "models": [
            {
                "name": "mock",
                "deployments": [
                    {"kind": "remote", "base_url": mock + "/v1", "max_connections": room}
                ],
                "pii": {"mode": "tokenize"},
            }
        ],
        "pii": {"ner": "off"},
        "attestation": {"provider": "simulated"},
        "run_dir": str(tmp / name),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between chunks")
    parser.add_argument("--ramp", type=float, default=10.0, help="streams start within this")
    parser.add_argument(
        "--variants",
        default="gateway-tls-pii",
        help="comma-separated: gateway-tls-pii, gateway-http-pii",
    )
    parser.add_argument("--json", type=Path, default=default_json("stream"))
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    processes: list[subprocess.Popen[bytes]] = []
    timeout = args.ramp + args.chunks * args.interval * 3 + 60
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = (tmp / "servers.log").open("wb")
        try:
            upstream, mock = start_steady_upstream(log, args.chunks, args.interval)
            processes.append(upstream)
            port = int(mock.rsplit(":", 1)[1])
            targets: list[tuple[Target, int | None]] = [
                (
                    Target("direct", "127.0.0.1", port, "/v1/chat/completions", None, None, False),
                    None,
                )
            ]
            for name in args.variants.split(","):
                plain = name == "gateway-http-pii"
                config = gateway_config(tmp, name, mock, plain, args.streams)
                process, _base, verify = start_gateway(tmp, name, config, log)
                processes.append(process)
                tls = verify if isinstance(verify, ssl.SSLContext) else None
                targets.append(
                    (
                        Target(
                            name,
                            "127.0.0.1",
                            config["listener"]["port"],
                            "/v1/chat/completions",
                            KEY,
                            tls,
                            True,
                        ),
                        process.pid,
                    )
                )
            for target, pid in targets:
                # A few streams first: connections, caches and lazy imports warmed.
                asyncio.run(run_target(target, 8, args.chunks, 0.5, timeout, pid))
                result = asyncio.run(
                    run_target(target, args.streams, args.chunks, args.ramp, timeout, pid)
                )
                runs.append(result)
                print(
                    f"  {target.name}: {result['complete']}/{args.streams} complete, gap p99 "
                    f"{result['gap_p99_ms']} ms, errors {result['errors']}",
                    file=sys.stderr,
                )
        finally:
            stop(processes)

    control = runs[0]
    for run in runs[1:]:
        if control.get("gap_p99_ms") is not None and run.get("gap_p99_ms") is not None:
            run["added_gap_p99_ms"] = round(run["gap_p99_ms"] - control["gap_p99_ms"], 1)
    figures = {
        "streams": args.streams,
        "chunks": args.chunks,
        "interval_s": args.interval,
        "chunks_per_s_at_full_load": round(args.streams / args.interval, 1),
        "ramp_s": args.ramp,
        "runs": runs,
    }
    report = emit("stream", figures, args.json)
    headers = [
        "target",
        "complete",
        "errors",
        "gap p50 ms",
        "gap p99 ms",
        "gap max ms",
        "added p99 ms",
        "first p99 ms",
        "KiB/stream",
    ]
    rows = [
        [
            r["target"],
            f"{r['complete']}/{r['streams']}",
            sum(r["errors"].values()),
            r.get("gap_p50_ms"),
            r.get("gap_p99_ms"),
            r.get("gap_p100_ms"),
            r.get("added_gap_p99_ms"),
            r.get("first_chunk_p99_ms"),
            r.get("kib_per_open_stream"),
        ]
        for r in runs
    ]
    print()
    print(table(headers, rows))
    print(f"\n{describe(report)}")
    failed = any(r["complete"] != r["streams"] for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
