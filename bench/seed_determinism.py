"""Does a seeded request give the same text alone and inside a batch of other requests?

    .venv/bin/python bench/seed_determinism.py [--trials 10] [--companions 7]

For each trial, one seeded request runs alone twice (must match: that is the contract), then
once while ``--companions`` other requests decode in the same batches. llama.cpp's batched
kernels can change low-order bits of the logits with batch shape, which may flip a sampled
token; this measures how often that happens. Prints JSON and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine_bench import wait_ready  # noqa: E402
from bench.stack import free_port  # noqa: E402


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
    import subprocess
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--companions", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enclave_backend",
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
            report = asyncio.run(trials(base, args.trials, args.companions, args.max_tokens))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps(report, indent=2))
    print(
        f"\nalone, repeated: {report['alone_repeat_identical']}/{args.trials} identical; "
        f"with {args.companions} companions: {report['batched_identical_to_alone']}/"
        f"{args.trials} identical to alone"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
