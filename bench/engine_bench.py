"""Engine throughput and latency against llama-server and llama_cpp.server, in one run.

    python -m bench.engine_bench [--levels 1,4,8,16] [--max-tokens 128] [--llama-server BIN]
                                 [--workloads throughput,shared-prefix]

Each server gets the same GGUF file, thread count, slot count and context. All of them start
first; then, for each workload and concurrency level, they take turns (never two at once, so
they never compete for the cores), rotating the order every round so the machine's drift
favours none of them. Every request forbids the end-of-turn tokens so all servers generate
exactly ``--max-tokens`` tokens.

- ``throughput``: C clients stream chat completions back to back.
- ``shared-prefix``: what one enterprise application sends. ``--prefix-users`` users (16)
  share a ``--prefix-tokens`` (1,500-token) system prompt and ask different questions,
  arriving ``--arrival-gap-s`` apart. Each round's prompt starts with a fresh line, so no
  server holds it from an earlier round. llama-server runs with its own prompt caching on
  (``--cache-reuse 256``, its RAM prompt cache and slot-similarity selection, both default).

Throughput is the median over rounds (tokens over the wall time of the round); TTFT and
latency percentiles pool every request. Prints JSON (also written to ``--json``, with
machine, CPU model and commit) and a table. Ratios are the point: absolute numbers move with
machine noise. The model defaults to the packaged SmolLM2 GGUF; llama-server comes from
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
from collections.abc import Callable, Coroutine
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
    workload: str
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


QUESTIONS = [
    "How many days of annual leave do new employees get?",
    "Can I expense a taxi to the airport?",
    "Who approves a purchase over ten thousand euros?",
    "How do I report a lost laptop?",
    "What is the policy on working from another country?",
    "How long are backups of customer data kept?",
    "May I install my own software on a work computer?",
    "What should I do if I receive a phishing e-mail?",
    "How are contractors given access to the VPN?",
    "When are performance reviews held?",
    "What counts as confidential information?",
    "How do I book a meeting room for a client visit?",
    "Can I take my work phone on holiday?",
    "Who do I contact about a payroll mistake?",
    "How often must passwords be changed?",
    "What is the process for a parental leave request?",
]
POLICY_TEXT = (
    "employees must follow the procedures described in this handbook when they handle "
    "customer records travel requests purchase orders equipment loans security incidents "
    "and personal data every manager reviews the requests of the team within five working "
    "days and records the decision in the central system together with the reasons for it "
    "exceptions need the written approval of the department head and of the compliance office"
)


def shared_system_prompt(tokens: int, round_index: int, model: Path) -> str:
    """A policy handbook of ``tokens`` tokens (this GGUF's tokenizer) whose first line is new
    in every round, so no server has it cached from an earlier one."""
    import random

    rng = random.Random(1500 + round_index)
    words_pool = POLICY_TEXT.split()
    words = [rng.choice(words_pool) for _ in range(tokens)]
    text = f"Handbook revision {round_index}-{rng.getrandbits(32):08x}.\n" + " ".join(words)
    return _first_tokens(text, tokens, model)


def _first_tokens(text: str, count: int, model: Path) -> str:
    """The text of ``text``'s first ``count`` tokens, with only the GGUF's vocabulary loaded."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    loaded = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    try:
        vocab = llama_cpp.llama_model_get_vocab(loaded)
        data = text.encode()
        ids = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), ids, len(ids), False, False)
        piece = ctypes.create_string_buffer(256)
        out = b""
        for token in ids[: min(n, count)]:
            size = llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
            out += piece.raw[:size]
        return out.decode("utf-8", "replace")
    finally:
        llama_cpp.llama_model_free(loaded)


async def one_request(
    client: httpx.AsyncClient,
    model: str,
    topic: str,
    max_tokens: int,
    system: str = "You are a helpful assistant who writes clearly.",
    question: str | None = None,
) -> RequestResult:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question or f"Write a detailed essay about {topic}."},
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


async def timed(
    base: str, clients: int, work: Callable[[httpx.AsyncClient], list[Coroutine[Any, Any, None]]]
) -> float:
    """Seconds ``work``'s coroutines take together, sharing one client pool for ``clients``."""
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*work(client))
        return time.perf_counter() - started


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

    wall = await timed(
        base, concurrency, lambda client: [worker(client) for _ in range(concurrency)]
    )
    return RoundResult(wall, results, errors, retried)


async def run_shared_prefix_round(
    base: str, model: str, server: str, system: str, users: int, gap_s: float, max_tokens: int
) -> RoundResult:
    """``users`` requests sharing ``system``, one every ``gap_s`` seconds, each on its own."""
    results: list[RequestResult] = []
    errors = 0

    async def user(index: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        await asyncio.sleep(index * gap_s)
        question = QUESTIONS[index % len(QUESTIONS)]
        try:
            results.append(await one_request(client, model, "", max_tokens, system, question))
        except Exception as exc:  # counted and reported, never hidden
            errors += 1
            print(f"  {server} shared-prefix: {exc}", file=sys.stderr)

    wall = await timed(base, users, lambda client: [user(i, client) for i in range(users)])
    return RoundResult(wall, results, errors, 0)


def summarize(
    server: str, concurrency: int, rounds: list[RoundResult], workload: str = "throughput"
) -> LevelResult:
    """Median throughput over rounds; latency percentiles over every request of every round."""
    requests = [r for rnd in rounds for r in rnd.requests]
    rates = [sum(r.tokens for r in rnd.requests) / rnd.wall_s for rnd in rounds]
    ttft = summary([r.ttft_s for r in requests], (50, 95), unit="ms", scale=1000, digits=1)
    latency = summary([r.latency_s for r in requests], (50, 95), unit="ms", scale=1000, digits=1)
    return LevelResult(
        server=server,
        workload=workload,
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
                        # Its own prompt caching on: KV shifting reuse besides the RAM prompt
                        # cache and slot-similarity selection it has by default.
                        "--cache-reuse",
                        "256",
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
    parser.add_argument("--workloads", default="throughput,shared-prefix")
    parser.add_argument("--prefix-tokens", type=int, default=1500)
    parser.add_argument("--prefix-users", type=int, default=16)
    parser.add_argument("--arrival-gap-s", type=float, default=0.25)
    parser.add_argument("--json", type=Path, default=default_json("engine"))
    args = parser.parse_args()

    model = args.model or packaged_model_path()
    workloads = args.workloads.split(",")
    levels = [int(x) for x in args.levels.split(",")] if "throughput" in workloads else []
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
            if "shared-prefix" in workloads:
                rounds = {s.name: [] for s, _ in chosen}
                turn = 0
                for round_index in range(args.rounds):
                    shift = round_index % len(chosen)
                    for server, port in chosen[shift:] + chosen[:shift]:
                        # A prompt no server has seen: each turn starts cold.
                        system = shared_system_prompt(args.prefix_tokens, turn, model)
                        turn += 1
                        rounds[server.name].append(
                            asyncio.run(
                                run_shared_prefix_round(
                                    f"http://127.0.0.1:{port}",
                                    "bench",
                                    server.name,
                                    system,
                                    args.prefix_users,
                                    args.arrival_gap_s,
                                    args.max_tokens,
                                )
                            )
                        )
                for server, _ in chosen:
                    result = summarize(
                        server.name, args.prefix_users, rounds[server.name], "shared-prefix"
                    )
                    results.append(result)
                    print(
                        f"  {server.name:17s} shared-prefix {result.tok_per_s:7.1f} tok/s "
                        f"ttft p95 {result.ttft_p95_ms} ms",
                        file=sys.stderr,
                    )
        finally:
            stop(processes)

    by = {(r.server, r.concurrency): r for r in results if r.workload == "throughput"}
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

    prefix = {r.server: r for r in results if r.workload == "shared-prefix"}
    if "enclave_backend" in prefix and "llama-server" in prefix:
        ours, theirs = prefix["enclave_backend"], prefix["llama-server"]
        ratios["shared_prefix_tok_s_vs_llama_server"] = ratio(ours.tok_per_s, theirs.tok_per_s)
        ratios["shared_prefix_ttft_p95_vs_llama_server"] = ratio(
            ours.ttft_p95_ms, theirs.ttft_p95_ms
        )
    figures = {
        "model": model.name,
        "threads": args.threads,
        "slots": args.slots,
        "max_tokens": args.max_tokens,
        "ctx_per_slot": args.ctx_per_slot,
        "shared_prefix": {
            "prefix_tokens": args.prefix_tokens,
            "users": args.prefix_users,
            "arrival_gap_s": args.arrival_gap_s,
        },
        "results": [asdict(r) for r in results],
        "ratios": ratios,
    }
    report = emit("engine", figures, args.json)
    headers = ["server", "workload", "conc", "tok/s", "TTFT p50 ms", "TTFT p95 ms", "lat p50 ms"]
    rows = [
        [
            r.server,
            r.workload,
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
