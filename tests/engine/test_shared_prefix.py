"""Shared prefixes across slots in a real engine: a burst of requests that start with the same
long system prompt evaluates it once and copies its KV cells into the other slots; across API
keys only an operator-marked shareable prefix is copied, never more.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.engine.conftest import MODEL, RunningEngine, start_engine, stop_engine

SLOTS = 4
# About 350 tokens: long enough that copying it beats evaluating it again (COPY_MIN_TOKENS).
HANDBOOK = " ".join(
    f"Rule {n}: requests about topic {n} go to the team of desk {n % 7} within {n % 5 + 1} days."
    for n in range(1, 26)
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("shared-prefix")
    shareable = tmp / "handbook.txt"
    shareable.write_text(HANDBOOK, encoding="utf-8")
    running = start_engine(
        tmp,
        "--slots",
        str(SLOTS),
        "--ctx-per-slot",
        "1024",
        "--shareable-prefix-file",
        str(shareable),
        "--log-level",
        "info",
        "--tenant-active-s",
        "0",
    )
    try:
        yield running
    finally:
        stop_engine(running)


def chat(system: str, question: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
        **extra,
    }


async def burst(
    engine: RunningEngine, bodies: list[dict[str, Any]], tenants: list[str | None]
) -> list[dict[str, Any]]:
    async with engine.async_client() as client:

        async def one(body: dict[str, Any], tenant: str | None) -> dict[str, Any]:
            headers = {"x-gateway-tenant": tenant} if tenant else {}
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        return await asyncio.gather(*(one(b, t) for b, t in zip(bodies, tenants, strict=True)))


def copies(engine: RunningEngine) -> int:
    count: int = engine.health()["prompt_cache"]["prefix_copies"]
    return count


def first_token_logprobs(answer: dict[str, Any]) -> dict[str, float]:
    first = answer["choices"][0]["logprobs"]["content"][0]
    return {entry["token"]: entry["logprob"] for entry in first["top_logprobs"]}


def test_a_burst_sharing_a_system_prompt_evaluates_it_once(engine: RunningEngine) -> None:
    engine.wait_idle()
    system = f"Case {uuid.uuid4().hex[:8]}. {HANDBOOK}"
    questions = [
        "Who handles topic 3?",
        "Who handles topic 9?",
        "How fast is topic 12 answered?",
        "Which desk has topic 20?",
    ]
    before = copies(engine)
    answers = asyncio.run(burst(engine, [chat(system, q) for q in questions], [None] * 4))
    prompt_tokens = answers[0]["usage"]["prompt_tokens"]
    cached = sorted(a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers)
    # One request evaluated the prompt; the three others copied all but their question.
    assert cached[0] == 0
    assert all(c > prompt_tokens - 30 for c in cached[1:]), cached
    assert copies(engine) - before == 3

    # The copied cells are the prefix's cells: each answer's first-token distribution is the
    # one of the same request evaluated from scratch (a seed turns the prompt cache off), up
    # to the rounding of other batch shapes (measured under 0.2; cells that were not copied
    # give another distribution altogether).
    for question, answer in zip(questions, answers, strict=True):
        (alone,) = asyncio.run(burst(engine, [chat(system, question, seed=1)], [None]))
        assert alone["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        copied, fresh = first_token_logprobs(answer), first_token_logprobs(alone)
        assert (
            answer["choices"][0]["logprobs"]["content"][0]["token"]
            == (alone["choices"][0]["logprobs"]["content"][0]["token"])
        )
        for token in set(copied) & set(fresh):
            assert abs(copied[token] - fresh[token]) < 0.5, (token, copied, fresh)


def shareable_length(engine: RunningEngine) -> int:
    found = re.search(r"shareable prefixes \(tokens\): \[([0-9]+)\]", engine.log_path.read_text())
    assert found, "the engine did not log its shareable prefix"
    return int(found.group(1))


def test_across_keys_only_the_shareable_prefix_is_copied(engine: RunningEngine) -> None:
    engine.wait_idle()
    shared = shareable_length(engine)
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    # A private preamble after the handbook: bob shares the handbook with alice, not hers.
    private = f"{HANDBOOK} Alice's case {uuid.uuid4().hex[:8]} concerns the merger of two firms."
    before = copies(engine)
    answers = asyncio.run(
        burst(
            engine,
            [chat(private, "Summarise the case."), chat(private, "Which desk has topic 4?")],
            [alice, bob],
        )
    )
    cached = sorted(a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers)
    assert cached == [0, shared]
    assert copies(engine) - before == 1


def test_a_private_prefix_is_never_copied_to_another_key(engine: RunningEngine) -> None:
    engine.wait_idle()
    system = f"Internal memo {uuid.uuid4().hex}: " + "the quarterly numbers are confidential. " * 30
    before = copies(engine)
    answers = asyncio.run(
        burst(
            engine,
            [chat(system, "What is the memo about?"), chat(system, "Who wrote the memo?")],
            [uuid.uuid4().hex, uuid.uuid4().hex],
        )
    )
    assert [a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers] == [0, 0]
    assert copies(engine) == before


def test_cancelling_the_leader_leaves_followers_to_evaluate_on_their_own(
    engine: RunningEngine,
) -> None:
    engine.wait_idle()
    system = f"Case {uuid.uuid4().hex[:8]}. {HANDBOOK}"

    async def scenario() -> list[dict[str, Any]]:
        async with engine.async_client() as client:
            leader = asyncio.create_task(
                client.post("/v1/chat/completions", json=chat(system, "Topic 1?", max_tokens=64))
            )
            await asyncio.sleep(0.001)
            followers = [
                asyncio.create_task(client.post("/v1/chat/completions", json=chat(system, q)))
                for q in ("Topic 2?", "Topic 3?")
            ]
            await asyncio.sleep(0.005)
            leader.cancel()
            done = await asyncio.gather(*followers)
            return [r.json() for r in done if isinstance(r, httpx.Response)]

    answers = asyncio.run(scenario())
    assert len(answers) == 2
    assert all(a["choices"][0]["message"]["content"] is not None for a in answers)
    engine.wait_idle()
