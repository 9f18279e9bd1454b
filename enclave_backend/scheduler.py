"""Continuous batching: one decode loop that serves every slot in shared ``llama_decode`` calls.

Each step builds one batch: the pending token of every generating slot first, then prompt
chunks of admitted slots with the budget that is left (chunked prefill, so a long prompt
never stalls the slots that are already generating). New requests join between steps;
cancelled ones leave before the next step. A finished slot keeps the KV cells of what it
processed as a prompt cache: the next request that shares the prefix (a conversation's
next turn) lands on that slot and only evaluates the new suffix.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from enclave_backend.decode_batch import DecodeBatch
from enclave_backend.generation import (
    Failed,
    Finished,
    GenerationEvent,
    GenerationHandle,
    GenerationRequest,
    TextDelta,
)
from enclave_backend.llama_runtime import LlamaRuntime
from enclave_backend.text_output import CompletionText

log = logging.getLogger("enclave_backend.scheduler")


class QueueFull(Exception):
    """Every slot is busy and the wait queue is at its bound."""


class SchedulerStopped(Exception):
    """The engine is shutting down and takes no new requests."""


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Slot:
    """One sequence id of the context and what currently sits in its KV cells."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    last_used: int = 0
    request: GenerationRequest | None = None
    text: CompletionText | None = None
    pending_token: int | None = None
    generated: int = 0
    reused: int = 0
    queue_seconds: float = 0.0

    @property
    def busy(self) -> bool:
        return self.request is not None

    @property
    def prefilling(self) -> bool:
        return self.request is not None and len(self.cached) < len(self.request.prompt)


@dataclass(frozen=True)
class SchedulerStats:
    slots_total: int
    slots_busy: int
    queue_depth: int
    queue_limit: int
    requests_completed: int
    requests_cancelled: int
    prompt_cache_hits: int
    prompt_tokens_reused: int
    decode_steps: int


Outbox = list[tuple[GenerationHandle, GenerationEvent]]


class SlotScheduler:
    """Owns the decode loop thread, the slots and the bounded wait queue."""

    def __init__(
        self,
        runtime: LlamaRuntime,
        *,
        max_queue: int,
        prefill_chunk: int,
        admission_window_s: float = 0.0,
    ) -> None:
        self._runtime = runtime
        self._prefill_chunk = prefill_chunk
        self._admission_window = admission_window_s
        self._slots = [Slot(seq_id=i) for i in range(runtime.options.n_slots)]
        self._batch = DecodeBatch(runtime.options.n_batch)
        self._max_queue = max_queue
        self._waiting: deque[GenerationRequest] = deque()
        self._admitted: list[Slot] = []  # busy slots in admission order (prefill is FIFO)
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._step = 0
        self._completed = 0
        self._cancelled = 0
        self._cache_hits = 0
        self._tokens_reused = 0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._running = True
        self._thread = threading.Thread(target=self._run, name="decode-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._batch.close()

    # -- called from the event loop -------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; raises ``QueueFull`` past the bound. Takes ownership of its sampler."""
        with self._cond:
            if not self._running:
                raise SchedulerStopped("the engine is shutting down")
            free = sum(1 for s in self._slots if not s.busy)
            if len(self._waiting) - free >= self._max_queue:
                raise QueueFull(
                    f"all {len(self._slots)} slots are busy and {self._max_queue} requests "
                    "are already waiting"
                )
            self._waiting.append(request)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def stats(self) -> SchedulerStats:
        with self._cond:
            busy = sum(1 for s in self._slots if s.busy)
            return SchedulerStats(
                slots_total=len(self._slots),
                slots_busy=busy,
                queue_depth=len(self._waiting),
                queue_limit=self._max_queue,
                requests_completed=self._completed,
                requests_cancelled=self._cancelled,
                prompt_cache_hits=self._cache_hits,
                prompt_tokens_reused=self._tokens_reused,
                decode_steps=self._step,
            )

    # -- the decode loop ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                outbox: Outbox = []
                with self._cond:
                    idle = not self._admitted
                    while self._running and not self._waiting and not self._admitted:
                        self._cond.wait()
                    if idle:
                        self._gather_burst()
                    if not self._running:
                        break
                    self._admit(outbox)
                self._drop_cancelled()
                if self._admitted:
                    try:
                        self._step_once(outbox)
                    except Exception:
                        log.exception("decode step failed; failing the active sequences")
                        for slot in list(self._admitted):
                            self._release(slot, outbox, Failed("the engine failed to decode"))
                            self._runtime.clear_sequence(slot.seq_id)
                            slot.cached = []
                self._dispatch(outbox)
        finally:
            self._fail_everything("the engine is shutting down")

    def _gather_burst(self) -> None:
        """Coming out of idle, wait a moment so a burst of requests is prefilled together."""
        deadline = time.monotonic() + self._admission_window
        while self._running and (remaining := deadline - time.monotonic()) > 0:
            self._cond.wait(remaining)

    def _admit(self, outbox: Outbox) -> None:
        """Move waiting requests into free slots (lock held)."""
        while self._waiting:
            free = [s for s in self._slots if not s.busy]
            if not free:
                return
            request = self._waiting.popleft()
            if request.handle.cancelled:
                request.sampler.close()
                self._cancelled += 1
                continue
            if request.use_prompt_cache:
                slot = self._pick_slot(free, request.prompt)
                # Keep the last prompt token to evaluate: its logits give the first token.
                reuse = min(
                    common_prefix_length(slot.cached, request.prompt), len(request.prompt) - 1
                )
            else:
                slot = min(free, key=lambda s: s.last_used)
                reuse = 0
            if not self._runtime.forget(slot.seq_id, reuse):
                self._runtime.clear_sequence(slot.seq_id)
                reuse = 0
            del slot.cached[reuse:]
            if reuse > 0:
                self._cache_hits += 1
                self._tokens_reused += reuse
            slot.request = request
            slot.text = CompletionText(request.stops)
            slot.pending_token = None
            slot.generated = 0
            slot.reused = reuse
            slot.queue_seconds = time.monotonic() - request.enqueued_at
            self._admitted.append(slot)

    @staticmethod
    def _pick_slot(free: list[Slot], prompt: list[int]) -> Slot:
        """Free slot sharing the longest prefix with ``prompt``, else the least recently used."""
        return max(free, key=lambda s: (common_prefix_length(s.cached, prompt), -s.last_used))

    def _drop_cancelled(self) -> None:
        for slot in [s for s in self._admitted if s.request and s.request.handle.cancelled]:
            self._release(slot, None, None)
            # Nobody continues a cancelled answer: give its cells back.
            self._runtime.clear_sequence(slot.seq_id)
            slot.cached = []
            self._cancelled += 1

    def _step_once(self, outbox: Outbox) -> None:
        batch = self._batch
        batch.clear()
        outputs: list[tuple[Slot, int]] = []
        # Generating slots go in sequence-id order: llama.cpp splits a multi-sequence batch per
        # KV stream, and streams in order keep its fast contiguous path (measured ~10%).
        for slot in self._slots:
            if slot.pending_token is not None:
                index = batch.add(
                    slot.pending_token, len(slot.cached), slot.seq_id, want_logits=True
                )
                slot.cached.append(slot.pending_token)
                slot.pending_token = None
                outputs.append((slot, index))
        # While others generate, cap prompt tokens per step so their next token is not stalled
        # behind a long prefill; with nobody generating, prefill takes the whole batch.
        budget = min(batch.room, self._prefill_chunk) if outputs else batch.room
        for slot in self._admitted:
            if budget == 0:
                break
            request = slot.request
            if request is None or not slot.prefilling:
                continue
            start = len(slot.cached)
            chunk = request.prompt[start : start + budget]
            budget -= len(chunk)
            last = len(request.prompt) - 1
            for pos, token in enumerate(chunk, start):
                index = batch.add(token, pos, slot.seq_id, want_logits=pos == last)
                if pos == last:
                    outputs.append((slot, index))
            slot.cached.extend(chunk)
        if batch.size == 0:
            return
        rc = self._runtime.decode(batch.submit())
        self._step += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        ctx = self._runtime.context
        for slot, index in outputs:
            request = slot.request
            assert request is not None and slot.text is not None
            token = request.sampler.sample(ctx, index)
            self._on_token(slot, token, outbox)

    def _on_token(self, slot: Slot, token: int, outbox: Outbox) -> None:
        request = slot.request
        assert request is not None and slot.text is not None
        if self._runtime.is_end_of_generation(token):
            self._finish(slot, "stop", outbox)
            return
        slot.generated += 1
        text = slot.text.push(self._runtime.token_piece(token, special=request.special_pieces))
        if text:
            outbox.append((request.handle, TextDelta(text)))
        if slot.text.stopped:
            self._finish(slot, "stop", outbox)
        elif slot.generated >= request.max_tokens or len(slot.cached) >= self._runtime.ctx_per_slot:
            self._finish(slot, "length", outbox)
        else:
            slot.pending_token = token

    def _finish(self, slot: Slot, reason: str, outbox: Outbox) -> None:
        request = slot.request
        assert request is not None and slot.text is not None
        tail = slot.text.finish()
        if tail:
            outbox.append((request.handle, TextDelta(tail)))
        self._completed += 1
        self._release(
            slot,
            outbox,
            Finished(
                finish_reason=reason,
                prompt_tokens=len(request.prompt),
                completion_tokens=slot.generated,
                cached_tokens=slot.reused,
                queue_seconds=slot.queue_seconds,
                slot=slot.seq_id,
            ),
        )

    def _release(self, slot: Slot, outbox: Outbox | None, event: GenerationEvent | None) -> None:
        request = slot.request
        if request is None:
            return
        request.sampler.close()
        if outbox is not None and event is not None:
            outbox.append((request.handle, event))
        slot.request = None
        slot.text = None
        slot.pending_token = None
        slot.last_used = self._step
        with self._cond:
            self._admitted.remove(slot)

    def _dispatch(self, outbox: Outbox) -> None:
        if outbox and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_deliver_all, outbox)

    def _fail_everything(self, message: str) -> None:
        outbox: Outbox = []
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for request in waiting:
            request.sampler.close()
            outbox.append((request.handle, Failed(message)))
        for slot in list(self._admitted):
            self._release(slot, outbox, Failed(message))
        self._dispatch(outbox)


def _deliver_all(outbox: Outbox) -> None:
    for handle, event in outbox:
        handle.deliver(event)
