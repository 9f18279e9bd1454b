"""Engine throughput and latency against llama-server and llama_cpp.server, in one run.

    python -m bench.engine_bench [--levels 1,4,8,16] [--max-tokens 128] [--llama-server BIN]

Each server gets the same GGUF file, thread count and slot count. All of them start first;
then, for each concurrency level, they take turns (never two at once, so they never compete
for the cores), rotating the order every round so the machine's drift favours none of them.
In a turn, C clients stream chat completions back to back; every request forbids the
end-of-turn tokens so all servers generate exactly ``--max-tokens`` tokens. Throughput is
the median over rounds; TTFT and latency percentiles pool every request. Prints JSON (also
written to ``--json``) and a table. Ratios are the point: absolute numbers move with machine
noise. The model defaults to the packaged SmolLM2 GGUF; llama-server comes from
``--llama-server``, ``$LLAMA_SERVER`` or ``bench/build_llama_server.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, llama_server_binary, stop, wait_ready
from bench.stats import median, ratio, summary
from enclave_backend.model_file import packaged_model_path

TOPICS = [
    "the history of tea",
    "how bridges stay up",
    "why the sky is blue",
    "a day on a farm",
    "the life of a honeybee",
    "how trains changed cities",
    "the rules of chess",
    "making bread at home",
    "the water cycle",
    "how a compass works",
    "the first airplanes",
    "a walk in the forest",
    "how volcanoes form",
    "the story of paper",
    "the solar system",
    "learning to swim",
]
# SmolLM2's end-of-text (0) and end-of-turn (2) tokens: forbidding them fixes the length.
NO_EOS_BIAS = {"0": -100, "2": -100}


@dataclass
class RequestResult:
    ttft_s: float
    latency_s: float
    tokens: int


@dataclass
class LevelResult:
    server: str
    concurrency: int
    requests: int
    wall_s: float
    tokens: int
    tok_per_s: float
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    errors: int = 0
    retried: int = 0


@dataclass
class Server:
    name: str
    command: list[str]
    health_path: str
    env: dict[str, str] = field(default_factory=dict)


def start(server: Server, log_dir: Path) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{server.name}.log").open("wb")
    return subprocess.Popen(
        server.command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **server.env}
    )


async def one_request(
    client: httpx.AsyncClient, model: str, topic: str, max_tokens: int
) -> RequestResult:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant who writes clearly."},
            {"role": "user", "content": f"Write a detailed essay about {topic}."},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "top_p": 0.95,
        "stream": True,
        "logit_bias": NO_EOS_BIAS,
    }
    start = time.perf_counter()
    first: float | None = None
    chunks = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    return RequestResult(ttft_s=(first or end) - start, latency_s=end - start, tokens=max_tokens)


@dataclass
class RoundResult:
    wall_s: float
    requests: list[RequestResult]
    errors: int
    retried: int


async def run_round(
    base: str, model: str, server: str, concurrency: int, per_client: int, max_tokens: int
) -> RoundResult:
    """C clients, each sending ``per_client`` streamed requests back to back."""
    results: list[RequestResult] = []
    errors = 0
    retried = 0
    counter = iter(range(10_000))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, retried
        for _ in range(per_client):
            topic = TOPICS[next(counter) % len(TOPICS)]
            try:
                try:
                    results.append(await one_request(client, model, topic, max_tokens))
                except httpx.RemoteProtocolError:
                    # A pooled keep-alive connection the server had already closed: nothing
                    # was processed, so retry once rather than count it against the server.
                    retried += 1
                    results.append(await one_request(client, model, topic, max_tokens))
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                print(f"  {server} c={concurrency}: {exc}", file=sys.stderr)

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return RoundResult(wall, results, errors, retried)


def summarize(server: str, concurrency: int, rounds: list[RoundResult]) -> LevelResult:
    """Median throughput over rounds; latency percentiles over every request of every round."""
    requests = [r for rnd in rounds for r in rnd.requests]
    rates = [sum(r.tokens for r in rnd.requests) / rnd.wall_s for rnd in rounds]
    ttft = summary([r.ttft_s for r in requests], (50, 95), unit="ms", scale=1000, digits=1)
    latency = summary([r.latency_s for r in requests], (50, 95), unit="ms", scale=1000, digits=1)
    return LevelResult(
        server=server,
        concurrency=concurrency,
        requests=len(requests),
        wall_s=round(sum(rnd.wall_s for rnd in rounds), 2),
        tokens=sum(r.tokens for r in requests),
        tok_per_s=round(median(rates), 1),
        ttft_p50_ms=ttft["p50_ms"],
        ttft_p95_ms=ttft["p95_ms"],
        latency_p50_ms=latency["p50_ms"],
        latency_p95_ms=latency["p95_ms"],
        errors=sum(rnd.errors for rnd in rounds),
        retried=sum(rnd.retried for rnd in rounds),
    )


def servers(
    model: Path,
    threads: int,
    slots: int,
    ctx: int,
    llama_server: Path | None,
    port: Callable[[], int],
    engine_args: list[str],
    engine_env: dict[str, str],
) -> list[tuple[Server, int]]:
    out: list[tuple[Server, int]] = []
    p = port()
    out.append(
        (
            Server(
                "enclave_backend",
                [
                    sys.executable,
                    "-m",
                    "enclave_backend",
                    "--model",
                    str(model),
                    "--port",
                    str(p),
                    "--slots",
                    str(slots),
                    "--ctx-per-slot",
                    str(ctx),
                    "--threads",
                    str(threads),
                    "--model-name",
                    "bench",
                    "--queue",
                    "256",
                    *engine_args,
                ],
                "/health",
                engine_env,
            ),
            p,
        )
    )
    if llama_server is not None:
        p = port()
        out.append(
            (
                Server(
                    "llama-server",
                    [
                        str(llama_server),
                        "-m",
                        str(model),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(p),
                        "-np",
                        str(slots),
                        "-c",
                        str(slots * ctx),
                        "-t",
                        str(threads),
                        "-tb",
                        str(threads),
                        "--alias",
                        "bench",
                        "--log-disable",
                    ],
                    "/health",
                ),
                p,
            )
        )
    p = port()
    out.append(
        (
            Server(
                "llama_cpp.server",
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(p),
                    "--n_ctx",
                    str(ctx),
                    "--n_threads",
                    str(threads),
                    "--n_threads_batch",
                    str(threads),
                    "--model_alias",
                    "bench",
                    "--interrupt_requests",
                    "False",
                ],
                "/v1/models",
            ),
            p,
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: packaged)")
    parser.add_argument(
        "--llama-server", type=Path, default=None, help="llama-server binary (default: built)"
    )
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--requests-per-level",
        type=int,
        default=16,
        help="requests per level (at least one per client)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--ctx-per-slot", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per level and server")
    parser.add_argument("--only", default="", help="comma-separated server names to run")
    parser.add_argument("--engine-args", default="", help="extra enclave_backend arguments")
    parser.add_argument("--engine-env", default="", help="KEY=VALUE,... for enclave_backend")
    parser.add_argument("--json", type=Path, default=default_json("engine"))
    args = parser.parse_args()

    model = args.model or packaged_model_path()
    levels = [int(x) for x in args.levels.split(",")]
    llama_server, why_not = llama_server_binary(args.llama_server)
    if llama_server is None:
        print(f"llama-server unavailable: {why_not}", file=sys.stderr)

    chosen = [
        (server, port)
        for server, port in servers(
            model,
            args.threads,
            args.slots,
            args.ctx_per_slot,
            llama_server,
            free_port,
            args.engine_args.split(),
            dict(kv.split("=", 1) for kv in args.engine_env.split(",") if kv),
        )
        if not args.only or server.name in args.only.split(",")
    ]
    results: list[LevelResult] = []
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # All servers stay up (idle ones use no CPU) and take turns, rotating the order
            # each round, so slow drift of this shared machine does not favour one of them.
            for server, port in chosen:
                processes.append(start(server, Path(tmp)))
                base = f"http://127.0.0.1:{port}"
                wait_ready(base, server.health_path, processes[-1], timeout=120)
                asyncio.run(run_round(base, "bench", server.name, 2, 1, 16))  # warm-up
            for level in levels:
                per_client = max(1, -(-args.requests_per_level // level))
                rounds: dict[str, list[RoundResult]] = {s.name: [] for s, _ in chosen}
                for round_index in range(args.rounds):
                    shift = round_index % len(chosen)
                    for server, port in chosen[shift:] + chosen[:shift]:
                        base = f"http://127.0.0.1:{port}"
                        rounds[server.name].append(
                            asyncio.run(
                                run_round(
                                    base,
                                    "bench",
                                    server.name,
                                    level,
                                    per_client,
                                    args.max_tokens,
                                )
                            )
                        )
                for server, _ in chosen:
                    result = summarize(server.name, level, rounds[server.name])
                    results.append(result)
                    print(
                        f"  {server.name:17s} c={level:<3d} {result.tok_per_s:7.1f} tok/s "
                        f"ttft p95 {result.ttft_p95_ms} ms",
                        file=sys.stderr,
                    )
        finally:
            stop(processes)

    by = {(r.server, r.concurrency): r for r in results}
    ratios: dict[str, Any] = {}
    for level in levels:
        ours = by.get(("enclave_backend", level))
        ls = by.get(("llama-server", level))
        lcp = by.get(("llama_cpp.server", level))
        if ours and ls:
            ratios[f"c{level}_tok_s_vs_llama_server"] = ratio(ours.tok_per_s, ls.tok_per_s)
            ratios[f"c{level}_ttft_p95_vs_llama_server"] = ratio(ours.ttft_p95_ms, ls.ttft_p95_ms)
        if ours and lcp:
            ratios[f"c{level}_tok_s_vs_llama_cpp_server"] = ratio(ours.tok_per_s, lcp.tok_per_s)

    figures = {
        "model": model.name,
        "threads": args.threads,
        "slots": args.slots,
        "max_tokens": args.max_tokens,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
    }
    report = emit("engine", figures, args.json)
    headers = ["server", "conc", "tok/s", "TTFT p50 ms", "TTFT p95 ms", "lat p50 ms"]
    rows = [
        [
            r.server,
            r.concurrency,
            r.tok_per_s,
            r.ttft_p50_ms,
            r.ttft_p95_ms,
            r.latency_p50_ms,
            r.latency_p95_ms,
            r.errors,
        ]
        for r in results
    ]
    print()
    print(table([*headers, "lat p95 ms", "errors"], rows))
    print()
    print(table(["ratio", "value"], [[key, value] for key, value in ratios.items()]))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
