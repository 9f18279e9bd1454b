"""Queueing a request's choices on the scheduler and reading their events back.

Every generating endpoint (chat completions, legacy completions) does the same around its own
prompt and wire shapes: one ``GenerationRequest`` per choice queued on the ``SlotScheduler``
(all or none: a refusal cancels the choices already queued and answers OpenAI's 503), then
the choices' events gathered into whole answers or interleaved as a stream, and the usage
and scheduling facts reported the same way. This module is that shared part.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from confidential_common.errors import bad_request
from enclave_backend.capacity import overloaded, stopping
from enclave_backend.generation import (
    Failed,
    Finished,
    GenerationHandle,
    GenerationRequest,
    TextDelta,
)
from enclave_backend.logprobs import TokenLogprob
from enclave_backend.scheduler import QueueFull, SchedulerStopped, SlotScheduler


class GenerationFailed(Exception):
    """The engine could not finish a sequence (decode failure or shutdown)."""


def queue_choices(
    scheduler: SlotScheduler, count: int, build: Callable[[int], GenerationRequest]
) -> list[GenerationHandle]:
    """Submit ``build(i)`` for each of ``count`` choices; each request carries its own handle
    and sampler, which the scheduler owns once submitted (closed here if submitting fails)."""
    handles: list[GenerationHandle] = []
    try:
        for index in range(count):
            request = build(index)
            try:
                scheduler.submit(request)
            except BaseException:
                request.sampler.close()
                raise
            handles.append(request.handle)
    except BaseException as exc:
        for handle in handles:
            handle.cancel()
        if isinstance(exc, QueueFull):
            raise overloaded(str(exc)) from None
        if isinstance(exc, SchedulerStopped):
            raise stopping() from None
        raise
    return handles


def check_capacity(scheduler: SlotScheduler, choices: int, param: str) -> None:
    capacity = scheduler.capacity
    if choices > capacity:
        raise bad_request(
            f"'{param}' asks for more choices than this engine can run or queue at once "
            f"({capacity}).",
            param=param,
            code="invalid_value",
        )


_TOKEN_ID = re.compile(r"^-?[0-9]{1,9}$")


def logit_bias_ids(logit_bias: dict[str, float] | None, n_vocab: int) -> dict[int, float]:
    """``logit_bias`` keyed by token id; a 400 for a key that is not a token of this model."""
    biases: dict[int, float] = {}
    for key, bias in (logit_bias or {}).items():
        if not _TOKEN_ID.match(key) or not 0 <= int(key) < n_vocab:
            raise bad_request(
                "Invalid key in 'logit_bias': every key must be a token id of this model "
                f"(an integer 0..{n_vocab - 1}).",
                param="logit_bias",
                code="invalid_value",
            )
        biases[int(key)] = bias
    return biases


@dataclass(frozen=True)
class CollectedChoice:
    text: str
    logprobs: tuple[TokenLogprob, ...]
    finished: Finished


async def collect(handle: GenerationHandle) -> CollectedChoice:
    """One choice's whole text and logprobs once it finished; raises ``GenerationFailed``."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    async for event in handle.events():
        if isinstance(event, TextDelta):
            parts.append(event.text)
            logprobs.extend(event.logprobs)
        elif isinstance(event, Failed):
            raise GenerationFailed(event.message)
        else:
            return CollectedChoice("".join(parts), tuple(logprobs), event)
    raise GenerationFailed("the sequence ended without a result")


async def merge(
    handles: list[GenerationHandle],
) -> AsyncIterator[tuple[int, TextDelta | Finished]]:
    """Interleave the events of several choices as they arrive; raises on a failure."""
    if len(handles) == 1:
        async for event in handles[0].events():
            if isinstance(event, Failed):
                raise GenerationFailed(event.message)
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, TextDelta | Finished | Failed]] = asyncio.Queue()

    async def pump(index: int, handle: GenerationHandle) -> None:
        async for event in handle.events():
            await queue.put((index, event))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            index, event = await queue.get()
            if isinstance(event, Failed):
                raise GenerationFailed(event.message)
            if isinstance(event, Finished):
                remaining -= 1
            yield index, event
    finally:
        for task in tasks:
            task.cancel()


def engine_info(finished: list[Finished]) -> dict[str, Any]:
    """Scheduling facts for the caller's telemetry (an extension field, not OpenAI's)."""
    return {
        "queue_ms": round(max((f.queue_seconds for f in finished), default=0.0) * 1000, 3),
        "slots": sorted({f.slot for f in finished}),
    }


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
