"""Retrieval check: does the default embedding model find the passage a question asks about?

Twenty-four questions, each written to be answered by one of twenty-four short passages on
varied topics (several topics twice, so a neighbour is a plausible wrong answer), worded so
the question shares few words with its passage. Every question ranks all passages by cosine
similarity; the figures are recall@1, recall@3 and the mean reciprocal rank (MRR) of the
right passage. Models, each through the engine's own ``EmbeddingEngine``:

- ``all-MiniLM-L6-v2`` (F16 GGUF converted from the PyPI package, mean pooling): the default;
- ``SmolLM2-135M-Instruct`` (the chat model's Q4_1 GGUF) with its final hidden states
  mean-pooled, and last-token pooled: what an engine without an embedding model could serve.

    python -m bench.embedding_quality [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from bench.paths import default_json
from bench.report import describe, emit, table
from enclave_backend.embedding_engine import EmbeddingEngine
from enclave_backend.embedding_model import DEFAULT_EMBEDDING_NAME, packaged_embedding_gguf
from enclave_backend.embedding_runtime import EmbeddingOptions, Vector
from enclave_backend.model_file import DEFAULT_MODEL_FILE, packaged_model_path

# (question, the passage that answers it)
PAIRS: tuple[tuple[str, str], ...] = (
    (
        "How long should I leave pasta in boiling water?",
        "Most dried spaghetti is ready after eight to ten minutes in a rolling boil; taste a "
        "strand to check it is al dente.",
    ),
    (
        "What keeps bread dough from rising?",
        "Yeast that was killed by water that was too hot, or flour with too little gluten, "
        "leaves a loaf dense and flat.",
    ),
    (
        "Why do my tomato plants have yellow leaves?",
        "Lower foliage turning pale on tomatoes is usually a nitrogen shortage or overwatering; "
        "feed the soil and let it dry between waterings.",
    ),
    (
        "When is the best time to prune apple trees?",
        "Orchard fruit trees are cut back in late winter, while dormant and before the buds "
        "break, so wounds heal quickly in spring.",
    ),
    (
        "Is it worth paying off my mortgage early?",
        "Extra payments on a home loan save interest, but if the loan rate is lower than what "
        "investments return, investing the money may leave you better off.",
    ),
    (
        "What happens to bond prices when interest rates go up?",
        "Fixed-income securities lose market value as yields rise, because newly issued debt "
        "pays more than the older coupons.",
    ),
    (
        "How do vaccines train the immune system?",
        "An inoculation shows the body a harmless piece or weakened form of a pathogen, so "
        "white blood cells learn to recognise it and respond faster later.",
    ),
    (
        "Why should I finish a course of antibiotics?",
        "Stopping bacterial treatment early can leave the hardiest microbes alive, which then "
        "multiply and may become resistant to the drug.",
    ),
    (
        "What causes the seasons on Earth?",
        "Our planet's axis is tilted by about 23 degrees, so each hemisphere gets more direct "
        "sunlight for part of the orbit and less for the rest.",
    ),
    (
        "Why does the Moon always show the same face?",
        "Tidal locking slowed the satellite's spin until one rotation takes exactly as long as "
        "one trip around us.",
    ),
    (
        "How can I make my laptop battery last longer?",
        "Dim the screen, close background apps and avoid keeping the charge at one hundred "
        "percent all day; lithium cells age faster when full and hot.",
    ),
    (
        "Why is my home Wi-Fi so slow in the evening?",
        "Wireless networks get congested when neighbours use the same channel at peak hours; "
        "switch the router to a less crowded band.",
    ),
    (
        "How do I undo my last git commit but keep the changes?",
        "Run a soft reset to the previous revision: the commit disappears from history while "
        "the edited files stay staged in your working tree.",
    ),
    (
        "What is the difference between a list and a tuple in Python?",
        "One sequence type can be changed after creation and the other is immutable, which "
        "also lets the latter serve as a dictionary key.",
    ),
    (
        "Who painted the ceiling of the Sistine Chapel?",
        "Michelangelo spent four years on scaffolding in the Vatican decorating the vault with "
        "scenes from Genesis.",
    ),
    (
        "Why did the Roman Empire split into two halves?",
        "Governing vast territories from one capital proved impossible, so Diocletian and later "
        "emperors divided administration between an eastern and a western court.",
    ),
    (
        "How many players does a soccer team have on the field?",
        "Each side fields eleven, one of them the goalkeeper, and may bring on substitutes "
        "during the match.",
    ),
    (
        "How should a beginner train for a first marathon?",
        "Build weekly mileage slowly over four or five months, with one long run each weekend "
        "and easy days in between to avoid injury.",
    ),
    (
        "Do I need a visa to travel to Japan as a tourist?",
        "Visitors from many countries can enter for short stays without advance permission; "
        "check the embassy list for your passport before you fly.",
    ),
    (
        "How can I sleep better on a long-haul flight?",
        "Pick a window seat, bring earplugs and an eye mask, and skip coffee and alcohol "
        "before boarding to rest on the plane.",
    ),
    (
        "What should I do if my dog eats chocolate?",
        "Cocoa contains theobromine, which is toxic to canines; call a veterinarian right away "
        "with the amount and type your pet swallowed.",
    ),
    (
        "How often should I clean a cat's litter box?",
        "Scoop waste daily and replace all the litter about once a week so your feline keeps "
        "using the tray.",
    ),
    (
        "How do solar panels turn sunlight into electricity?",
        "Photovoltaic cells made of silicon release electrons when photons strike them, and "
        "the resulting current flows out as direct power.",
    ),
    (
        "Why are electric cars considered better for the climate?",
        "Battery vehicles emit nothing from a tailpipe, and over their lifetime produce less "
        "carbon dioxide than petrol ones, more so on a clean grid.",
    ),
)


def ranks(queries: list[Vector], passages: list[Vector]) -> list[int]:
    """For question i, the 1-based rank of passage i among all passages by cosine."""
    q = np.stack([v / np.linalg.norm(v) for v in queries])
    p = np.stack([v / np.linalg.norm(v) for v in passages])
    scores = q @ p.T
    return [int((scores[i] > scores[i, i]).sum()) + 1 for i in range(len(queries))]


async def _embed_all(engine: EmbeddingEngine, texts: list[str]) -> list[Vector]:
    return await engine.embed([engine.model.tokenize(text) for text in texts])


def evaluate(name: str, model_path: Path, pooling: str, threads: int) -> dict[str, Any]:
    options = EmbeddingOptions(model_path=model_path, n_threads=threads, pooling=pooling)
    engine = EmbeddingEngine.load(options)
    engine.start()
    try:
        queries = asyncio.run(_embed_all(engine, [q for q, _ in PAIRS]))
        passages = asyncio.run(_embed_all(engine, [p for _, p in PAIRS]))
        found = ranks(queries, passages)
        return {
            "model": name,
            "gguf": model_path.name,
            "pooling": engine.model.pooling,
            "dimensions": engine.model.dimensions,
            "recall_at_1": round(sum(r == 1 for r in found) / len(found), 3),
            "recall_at_3": round(sum(r <= 3 for r in found) / len(found), 3),
            "mrr": round(sum(1 / r for r in found) / len(found), 3),
            "ranks": found,
        }
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=default_json("embedding_quality"))
    args = parser.parse_args(argv)
    chat = packaged_model_path()
    results = [
        evaluate(DEFAULT_EMBEDDING_NAME, packaged_embedding_gguf(), "model", args.threads),
        evaluate(Path(DEFAULT_MODEL_FILE).stem, chat, "mean", args.threads),
        evaluate(Path(DEFAULT_MODEL_FILE).stem, chat, "last", args.threads),
    ]
    report = emit("embedding_quality", {"pairs": len(PAIRS), "results": results}, args.json)
    headers = ["model", "pooling", "dims", "recall@1", "recall@3", "MRR"]
    rows = [
        [r["model"], r["pooling"], r["dimensions"], r["recall_at_1"], r["recall_at_3"], r["mrr"]]
        for r in results
    ]
    print()
    print(table(headers, rows, title=f"Retrieval over {len(PAIRS)} question/passage pairs"))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
