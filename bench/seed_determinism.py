"""Does a seeded request give the same text alone and inside a batch of other requests?

    python -m bench.seed_determinism [--trials 10] [--companions 7] [--model GGUF] [--json FILE]

For each trial, one seeded request runs alone twice (must match: that is the contract), then
once while ``--companions`` other requests decode in the same batches. llama.cpp's batched
kernels can change low-order bits of the logits with batch shape, which may flip a sampled
token; this measures how often that happens. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stack import free_port, stop, wait_ready
from enclave_backend.model_file import packaged_model_path


async def ask(client: httpx.AsyncClient, content: str, seed: int, max_tokens: int) -> str:
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "seeded",
            "messages": [{"role": "user", "content": content}],
            "seed": seed,
            "temperature": 0.8,
            "max_tokens": max_tokens,
        },
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


async def trials(base: str, n: int, companions: int, max_tokens: int) -> dict[str, object]:
    alone_repeat_same = 0
    batched_same = 0
    first_divergence: list[int] = []
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        for trial in range(n):
            prompt = f"Tell me a short story about a fox, number {trial}."
            alone = await ask(client, prompt, 1000 + trial, max_tokens)
            again = await ask(client, prompt, 1000 + trial, max_tokens)
            alone_repeat_same += alone == again
            others = [
                ask(client, f"Describe a city at night, take {trial}-{i}.", i, max_tokens)
                for i in range(companions)
            ]
            results = await asyncio.gather(ask(client, prompt, 1000 + trial, max_tokens), *others)
            batched = results[0]
            if batched == alone:
                batched_same += 1
            else:
                first_divergence.append(
                    next(
                        (i for i, (a, b) in enumerate(zip(alone, batched, strict=False)) if a != b),
                        min(len(alone), len(batched)),
                    )
                )
    return {
        "trials": n,
        "companions": companions,
        "max_tokens": max_tokens,
        "alone_repeat_identical": alone_repeat_same,
        "batched_identical_to_alone": batched_same,
        "divergence_char_offsets": first_divergence,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--companions", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: packaged)")
    parser.add_argument("--json", type=Path, default=default_json("seed_determinism"))
    args = parser.parse_args()
    model = args.model or packaged_model_path()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enclave_backend",
                "--model",
                str(model),
                "--port",
                str(port),
                "--slots",
                str(args.companions + 1),
                "--model-name",
                "seeded",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base, "/health", process, timeout=120)
            figures = asyncio.run(trials(base, args.trials, args.companions, args.max_tokens))
        finally:
            stop([process])
    report = emit("seed_determinism", {"model": model.name, **figures}, args.json)
    headers = ["trials", "companions", "alone twice: identical", "batched: identical to alone"]
    row = [
        args.trials,
        args.companions,
        report["alone_repeat_identical"],
        report["batched_identical_to_alone"],
    ]
    print()
    print(table(headers, [row]))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
