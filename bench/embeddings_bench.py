"""Embeddings throughput against llama-server's ``/v1/embeddings``, same GGUF, same run.

    python -m bench.embeddings_bench [--threads N] [--duration S | --requests N] [--json PATH]

Both servers load the same embedding GGUF (the packaged all-MiniLM-L6-v2 unless ``--model``)
with the same thread count. Before anything is timed, both embed the same few inputs and their
vectors must agree (cosine above 0.99). Then, for each request size (1, 16 and 128 inputs per
request) and each client count (1 and 4 concurrent clients, back to back), the servers take
turns, never both at once, alternating which goes first, ``--rounds`` times. Every turn sends
the same deterministic sentences (8 to 60 words) in the same order. Embeddings/s is inputs
embedded over the turn's wall time, the median over rounds; latency percentiles pool every
request. The client reads each response's bytes but parses none while timing, so its own CPU
stays out of the servers' way on a small machine.

llama-server runs ``--embedding --pooling mean`` with ``--ubatch-size`` = ``--batch-size``
(an encoder sees a whole batch in one ubatch), enough slots (``-np``) that it can put many
inputs in one decode, and 512 tokens of context per slot (the model's trained length).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, llama_server_binary, stop, wait_ready
from bench.stats import format_ratio, median, ratio, summary

MODEL_NAME = "bench"
SEED = 14
MIN_WORDS, MAX_WORDS = 8, 60
AGREEMENT = 0.99  # same GGUF, same kernels: vectors differ only by float rounding

_OPENINGS = [
    "The committee agreed that",
    "According to the latest report,",
    "In the small village by the river,",
    "Most customers who called support said",
    "After a long delay at the airport,",
    "Researchers at the university found that",
    "During the quarterly review,",
    "Once the new library opened,",
    "Although the weather was cold,",
    "My neighbour told me that",
]
_SUBJECTS = [
    "the engineers",
    "a young teacher",
    "the city council",
    "our delivery team",
    "the hospital staff",
    "several farmers",
    "the new manager",
    "a group of students",
    "the orchestra",
    "most of the volunteers",
]
_VERBS = [
    "repaired",
    "reviewed",
    "painted",
    "planned",
    "described",
    "measured",
    "recorded",
    "cancelled",
    "improved",
    "explained",
]
_OBJECTS = [
    "the old bridge over the canal",
    "a detailed budget for next year",
    "the schedule for the summer festival",
    "the results of the soil tests",
    "a safer route for the school buses",
    "the broken heating system",
    "the contract with the new supplier",
    "a short history of the harbour",
    "the instructions for the printer",
    "the menu for the charity dinner",
]
_TAILS = [
    "because the deadline was moved forward",
    "while the rest of the town was asleep",
    "so that nobody would have to wait again",
    "even though the budget was very tight",
    "before the inspectors arrived on Monday",
    "and everyone seemed pleased with the outcome",
    "after several weeks of careful discussion",
    "without asking anyone for extra help",
    "which surprised the people who had doubted them",
    "as the first snow began to fall",
]


def sentences(count: int, seed: int = SEED) -> list[str]:
    """``count`` plain English sentences of 8 to 60 words, the same for every seed."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(count):
        goal = rng.randint(MIN_WORDS, MAX_WORDS)
        words = rng.choice(_OPENINGS).split()
        while len(words) < goal:
            clause = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            words += clause.split()
            if rng.random() < 0.5:
                words += rng.choice(_TAILS).split()
            words.append("and")
        words = words[:goal]
        if words[-1] == "and":
            words[-1] = "again"
        out.append(" ".join(words) + ".")
    return out


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def our_engine(threads: int, model: Path | None, batch_tokens: int | None) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "enclave_backend", "--embedding", "--port", str(port)]
    command += ["--threads", str(threads), "--model-name", MODEL_NAME]
    if model is not None:
        command += ["--model", str(model)]
    if batch_tokens is not None:
        command += ["--embedding-batch-tokens", str(batch_tokens)]
    return Server("enclave_backend", command, port)


def llama_server(binary: Path, model: Path, threads: int, slots: int, batch: int) -> Server:
    port = free_port()
    command = [str(binary), "--embedding", "--pooling", "mean", "-m", str(model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "-t", str(threads)]
    command += ["-tb", str(threads), "-np", str(slots), "-c", str(512 * slots)]
    command += ["-b", str(batch), "-ub", str(batch), "--alias", MODEL_NAME, "--log-disable"]
    return Server("llama-server", command, port)


def start(server: Server, log_dir: Path) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{server.name}.log").open("wb")
    return subprocess.Popen(server.command, stdout=log, stderr=subprocess.STDOUT)


async def embed(client: httpx.AsyncClient, inputs: list[str]) -> bytes:
    response = await client.post("/v1/embeddings", json={"model": MODEL_NAME, "input": inputs})
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.content[:200]!r}")
    return response.content


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms else 0.0


def vectors(base: str, inputs: list[str]) -> list[list[float]]:
    body = {"model": MODEL_NAME, "input": inputs}
    response = httpx.post(base + "/v1/embeddings", json=body, timeout=120)
    response.raise_for_status()
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


def agreement(servers: list[Server], inputs: list[str]) -> float:
    """The lowest cosine between the first server's vectors and every other's."""
    reference = vectors(servers[0].base, inputs)
    lowest = 1.0
    for server in servers[1:]:
        for a, b in zip(reference, vectors(server.base, inputs), strict=True):
            lowest = min(lowest, cosine(a, b))
    return lowest


@dataclass
class Turn:
    wall_s: float
    inputs: int
    latencies_s: list[float]
    errors: int


async def turn(
    base: str, corpus: list[str], size: int, clients: int, duration: float, requests: int | None
) -> Turn:
    """``clients`` clients send ``size``-input requests back to back: ``requests`` in all, or
    until ``duration`` seconds have passed. Request k always carries the same inputs."""
    latencies: list[float] = []
    embedded = 0
    errors = 0
    counter = iter(range(1 << 30))
    started = time.perf_counter()

    def more(k: int) -> bool:
        if requests is not None:
            return k < requests
        return time.perf_counter() - started < duration

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal embedded, errors
        while more(k := next(counter)):
            first = (k * size) % len(corpus)
            inputs = (corpus[first:] + corpus[:first])[:size]
            sent = time.perf_counter()
            try:
                await embed(client, inputs)
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                print(f"  {base} n={size} c={clients}: {exc}", file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - sent)
            embedded += size

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - started
    return Turn(wall, embedded, latencies, errors)


@dataclass
class Cell:
    server: str
    inputs_per_request: int
    clients: int
    requests: int
    embeddings_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    errors: int


def summarize(server: str, size: int, clients: int, turns: list[Turn]) -> Cell:
    rates = [t.inputs / t.wall_s for t in turns if t.wall_s > 0]
    latencies = [s for t in turns for s in t.latencies_s]
    points = summary(latencies, (50, 95), unit="ms", scale=1000, digits=1)
    return Cell(
        server=server,
        inputs_per_request=size,
        clients=clients,
        requests=len(latencies),
        embeddings_per_s=round(median(rates), 1) if rates else 0.0,
        latency_p50_ms=points["p50_ms"],
        latency_p95_ms=points["p95_ms"],
        errors=sum(t.errors for t in turns),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: packaged)")
    parser.add_argument("--llama-server", type=Path, default=None, help="llama-server binary")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--sizes", default="1,16,128", help="inputs per request")
    parser.add_argument("--clients", default="1,4", help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=3, help="turns per server and cell")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--duration", type=float, default=3.0, help="seconds per turn")
    timing.add_argument("--requests", type=int, default=None, help="requests per turn")
    parser.add_argument(
        "--ls-slots", type=int, default=32, help="llama-server -np (inputs one decode can hold)"
    )
    parser.add_argument("--ls-batch", type=int, default=2048, help="llama-server -b and -ub")
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="our --embedding-batch-tokens"
    )
    parser.add_argument("--json", type=Path, default=default_json("embeddings"))
    args = parser.parse_args()

    from enclave_backend.embedding_model import packaged_embedding_gguf

    model = args.model or packaged_embedding_gguf()
    binary, why_not = llama_server_binary(args.llama_server)
    if binary is None:
        print(f"llama-server unavailable: {why_not}", file=sys.stderr)
        return 2
    sizes = [int(x) for x in args.sizes.split(",")]
    client_counts = [int(x) for x in args.clients.split(",")]
    corpus = sentences(max(512, 4 * max(sizes)))
    servers = [
        our_engine(args.threads, args.model, args.batch_tokens),
        llama_server(binary, model, args.threads, args.ls_slots, args.ls_batch),
    ]
    cells: list[Cell] = []
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for server in servers:
                processes.append(start(server, Path(tmp)))
                wait_ready(server.base, "/health", processes[-1], timeout=120)
            lowest_cosine = agreement(servers, corpus[:8])
            print(f"  vectors agree: lowest cosine {lowest_cosine:.6f}", file=sys.stderr)
            if lowest_cosine < AGREEMENT:
                print(f"servers disagree (cosine {lowest_cosine:.4f})", file=sys.stderr)
                return 1
            for server in servers:  # warm-up: first decodes of each shape, connections
                asyncio.run(turn(server.base, corpus, max(sizes), 2, 0.0, 2))
            for size in sizes:
                for clients in client_counts:
                    turns: dict[str, list[Turn]] = {s.name: [] for s in servers}
                    for round_index in range(args.rounds):
                        shift = round_index % len(servers)
                        for server in servers[shift:] + servers[:shift]:
                            turns[server.name].append(
                                asyncio.run(
                                    turn(
                                        server.base,
                                        corpus,
                                        size,
                                        clients,
                                        args.duration,
                                        args.requests,
                                    )
                                )
                            )
                    for server in servers:
                        cell = summarize(server.name, size, clients, turns[server.name])
                        cells.append(cell)
                        print(
                            f"  {server.name:15s} n={size:<3d} c={clients} "
                            f"{cell.embeddings_per_s:8.1f} emb/s p95 {cell.latency_p95_ms} ms",
                            file=sys.stderr,
                        )
        finally:
            stop(processes)

    by = {(c.server, c.inputs_per_request, c.clients): c for c in cells}
    rows: list[list[object]] = []
    ratios: dict[str, float | None] = {}
    for size in sizes:
        for clients in client_counts:
            ours, theirs = (
                by[("enclave_backend", size, clients)],
                by[("llama-server", size, clients)],
            )
            value = ratio(ours.embeddings_per_s, theirs.embeddings_per_s)
            ratios[f"n{size}_c{clients}"] = value
            rows.append(
                [
                    size,
                    clients,
                    ours.embeddings_per_s,
                    theirs.embeddings_per_s,
                    format_ratio(value),
                    f"{ours.latency_p50_ms} / {ours.latency_p95_ms}",
                    f"{theirs.latency_p50_ms} / {theirs.latency_p95_ms}",
                ]
            )
    figures: dict[str, Any] = {
        "model": model.name,
        "threads": args.threads,
        "rounds": args.rounds,
        "duration_s": None if args.requests else args.duration,
        "requests_per_turn": args.requests,
        "llama_server_flags": [
            model.name if arg == str(model) else arg for arg in servers[1].command[1:]
        ],
        "lowest_cosine": round(lowest_cosine, 6),
        "results": [asdict(c) for c in cells],
        "ratios": ratios,
    }
    report = emit("embeddings", figures, args.json)
    headers = [
        "inputs/request",
        "clients",
        "ours emb/s",
        "llama-server emb/s",
        "ours / llama-server",
        "ours p50 / p95 ms",
        "llama-server p50 / p95 ms",
    ]
    print()
    print(table(headers, rows))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
