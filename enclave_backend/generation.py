"""What crosses between the HTTP side (asyncio) and the decode loop (its own thread).

The HTTP side builds a ``GenerationRequest`` and hands it to the scheduler; from then on
the scheduler owns the request's sampler chain and closes it. Results come back as
``GenerationEvent`` values on the request's ``GenerationHandle``, delivered on the event
loop thread. A handle is cancelled from the HTTP side when its client goes away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from enclave_backend.logprobs import TokenLogprob
from enclave_backend.sampling import SamplerChain


@dataclass(frozen=True)
class TextDelta:
    text: str
    # The sampled tokens whose text starts inside ``text`` (only when the request asked).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    queue_seconds: float
    slot: int


@dataclass(frozen=True)
class Failed:
    message: str


GenerationEvent = TextDelta | Finished | Failed


class GenerationHandle:
    """The HTTP side's view of one sequence: an event queue and a cancel switch."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.cancelled = False

    def deliver(self, event: GenerationEvent) -> None:
        """Called on the event loop thread only."""
        self._events.put_nowait(event)

    def cancel(self) -> None:
        # A plain attribute write is atomic; the decode loop reads it before every step.
        self.cancelled = True

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Yields events until (and including) the final ``Finished`` or ``Failed``."""
        while True:
            event = await self._events.get()
            yield event
            if not isinstance(event, TextDelta):
                return


@dataclass
class GenerationRequest:
    prompt: list[int]
    sampler: SamplerChain
    max_tokens: int
    stops: tuple[str, ...]
    handle: GenerationHandle
    # Cached KV cells were computed in other batch shapes and differ in low-order bits, so a
    # seeded request is evaluated from scratch to stay reproducible.
    use_prompt_cache: bool = True
    # Render special tokens into the text: a tool format's markers may be special tokens.
    special_pieces: bool = False
    # Who asked (an opaque id of the API key; "" is the anonymous tenant) and its share weight:
    # the scheduler admits fairly across tenants and scopes prompt-cache reuse to a tenant.
    tenant: str = ""
    weight: int = 1
    # How many alternatives to report with each sampled token's logprob; None: no logprobs,
    # and none of their cost (see ``logprobs``).
    top_logprobs: int | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
