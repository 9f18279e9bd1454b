"""Continuous batching: one decode loop that serves every slot in shared ``llama_decode`` calls.

Each step builds one batch: the pending token of every generating slot first, then prompt
chunks of admitted slots with the budget that is left (chunked prefill, so a long prompt
never stalls the slots that are already generating). New requests join between steps;
cancelled ones leave before the next step. A finished slot keeps the KV cells of what it
processed as a prompt cache: the next request that shares the prefix (a conversation's
next turn) lands on that slot and only evaluates the new suffix.

A request that asks for logprobs gets each sampled token's logprob read from that step's
logits before the next decode overwrites them (``logprobs``), and delivered with the text
delta its text starts in; a request that does not ask pays nothing for them.

Tenants. Every request belongs to a tenant (an opaque id of its API key; "" for requests
that carry none) with a weight ``w`` (1..100).

- Admission is weighted-fair: when a slot is free, the next request admitted is the oldest
  waiting one of the tenant with the lowest ``slots it holds / w``; ties go to the tenant whose
  oldest waiting request arrived first. A tenant that holds every slot and has a long backlog
  therefore gives the next free slot to any tenant that arrives meanwhile.
- A free slot is kept for every other recently active tenant: a tenant may hold all slots
  less one per other tenant that submitted within ``tenant_active_s`` (default 30 s; at most
  half the slots are kept so). Without preemption, a slot a flooder borrowed is only back
  after its whole generation; keeping one free means a returning tenant starts at once. A
  lone tenant (or one whose neighbours have been quiet) uses every slot.
- The wait queue is bounded per tenant and in total. With ``Q`` the configured queue bound, a
  request that finds no free slot is refused (``QueueFull``) when either
  (a) its tenant already has ``>= Q * w / W`` requests waiting, where ``W`` is the sum of the
      weights of the tenants that have requests waiting, its own tenant included (one tenant
      alone may fill ``Q`` places, as before; two equal tenants get ``Q/2`` each, ...), or
  (b) ``2 * Q`` requests are waiting in all (a hard bound, so the memory held is bounded).
  So a tenant at its share cannot get another tenant's request refused: while a flooder holds
  its ``Q`` places, ``Q`` more remain for the others (only many tenants arriving one after the
  other, each filling its then larger share, can reach the hard bound). Requests that will take
  a free slot at once are not waiting and are never refused.
- Prompt-cache reuse is scoped per tenant, like vLLM's ``cache_salt``: a slot remembers which
  tenant filled its cells, and a request reuses (and reports as ``cached_tokens``) only a
  prefix of its own tenant's cells, or, from another tenant's cells, at most the longest
  operator-marked shareable prefix that both its prompt and the cells start with. Cells past
  what may be reused are evaluated again, so neither the count nor the timing tells a tenant
  what another one sent. Picking a slot looks only at what the request may reuse, then prefers
  an empty slot, then one of its own tenant, then the least recently used one.

Shared prefixes. Many requests start with the same long prefix (an application's system
prompt, its tool definitions, a RAG preamble). When a busy slot holds at least
``COPY_MIN_TOKENS`` more reusable cells than any free one (same rules as above: its own
tenant's, else an operator-marked shareable prefix), the new request's slot gets a copy of
those cells (``LlamaRuntime.copy_sequence``) instead of evaluating them again; and when that
slot is still prefilling the very prefix, the new request waits for it (taking no prefill
budget meanwhile) and copies it then, so a burst of users of one application evaluates the
prefix once, not once per slot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
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
from enclave_backend.logprobs import LogprobReader, TokenLogprob
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


# A tenant that submitted this recently still has a slot kept free for it (default).
RECENT_TENANT_S = 30.0
# A prefix shorter than this is evaluated again rather than copied from another slot: the
# copy moves the slot's whole KV stream (its cost: docs/engine.md).
COPY_MIN_TOKENS = 32


@dataclass
class Slot:
    """One sequence id of the context and what currently sits in its KV cells."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    tenant: str = ""  # whose request filled ``cached``
    last_used: int = 0
    request: GenerationRequest | None = None
    text: CompletionText | None = None
    pending_token: int | None = None
    generated: int = 0
    reused: int = 0
    queue_seconds: float = 0.0
    # Logprobs of sampled tokens not yet sent: their text is still held back.
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # Waiting for ``leader`` (while it still serves ``leader_request``) to have evaluated
    # ``follow_until`` prompt tokens this one shares, to copy them instead of its own prefill.
    leader: Slot | None = None
    leader_request: GenerationRequest | None = None
    follow_until: int = 0

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
    queue_hard_limit: int
    tenants_waiting: int
    requests_completed: int
    requests_cancelled: int
    prompt_cache_hits: int
    prompt_tokens_reused: int
    prefix_copies: int
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
        shareable_prefixes: Sequence[Sequence[int]] = (),
        tenant_active_s: float = RECENT_TENANT_S,
    ) -> None:
        self._tenant_active_s = tenant_active_s
        self._runtime = runtime
        self._prefill_chunk = prefill_chunk
        self._admission_window = admission_window_s
        self._slots = [Slot(seq_id=i) for i in range(runtime.options.n_slots)]
        self._batch = DecodeBatch(runtime.options.n_batch)
        self._logprobs = LogprobReader(runtime)
        self._max_queue = max_queue
        self._hard_queue = 2 * max_queue
        self._shareable = _longest_first(shareable_prefixes)
        self._waiting: deque[GenerationRequest] = deque()
        self._last_seen: dict[str, float] = {}  # tenant -> when it last submitted
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
        self._prefix_copies = 0

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

    def set_shareable_prefixes(self, prefixes: Sequence[Sequence[int]]) -> None:
        """Token prefixes any tenant may reuse from another's cells (operator-marked)."""
        with self._cond:
            self._shareable = _longest_first(prefixes)

    # -- called from the event loop -------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; raises ``QueueFull`` past the bounds (see the module docstring).

        Takes ownership of its sampler."""
        with self._cond:
            if not self._running:
                raise SchedulerStopped("the engine is shutting down")
            free = sum(1 for s in self._slots if not s.busy)
            if len(self._waiting) >= free:  # no free slot is left for it: it would wait
                self._check_queue_room(request, free)
            self._seen(request.tenant)
            self._waiting.append(request)
            self._cond.notify()

    def _check_queue_room(self, request: GenerationRequest, free: int) -> None:
        """Raise ``QueueFull`` unless ``request`` may wait (lock held)."""
        waiting = len(self._waiting) - free
        if waiting >= self._hard_queue or self._max_queue == 0:
            raise QueueFull(
                f"all {len(self._slots)} slots are busy and {max(waiting, 0)} requests "
                "are already waiting"
            )
        weights = {r.tenant: r.weight for r in self._waiting}
        weights[request.tenant] = request.weight
        share = self._max_queue * request.weight / sum(weights.values())
        # Requests about to take the free slots are not waiting: the tenant gets that slack.
        mine = sum(1 for r in self._waiting if r.tenant == request.tenant) - free
        if mine >= share:
            raise QueueFull(
                f"all {len(self._slots)} slots are busy and this API key already has "
                f"{mine} requests waiting, its fair share of the queue"
            )

    @property
    def alive(self) -> bool:
        """The decode loop is running (False once stopped, or if it died)."""
        return self._running and self._thread is not None and self._thread.is_alive()

    @property
    def capacity(self) -> int:
        """Sequences one tenant can have running and waiting at once."""
        return len(self._slots) + self._max_queue

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
                queue_hard_limit=self._hard_queue,
                tenants_waiting=len({r.tenant for r in self._waiting}),
                requests_completed=self._completed,
                requests_cancelled=self._cancelled,
                prompt_cache_hits=self._cache_hits,
                prompt_tokens_reused=self._tokens_reused,
                prefix_copies=self._prefix_copies,
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
            with self._cond:
                # A loop that died (not stopped) takes no more requests: submit refuses them
                # and /health says so, so the gateway replaces the engine.
                self._running = False
            self._fail_everything("the engine is shutting down")

    def _gather_burst(self) -> None:
        """Coming out of idle, wait a moment so a burst of requests is prefilled together."""
        deadline = time.monotonic() + self._admission_window
        while self._running and (remaining := deadline - time.monotonic()) > 0:
            self._cond.wait(remaining)

    def _admit(self, outbox: Outbox) -> None:
        """Move waiting requests into free slots (lock held)."""
        self._drop_cancelled_waiting()
        while self._waiting:
            free = [s for s in self._slots if not s.busy]
            if not free:
                return
            request = self._next_waiting()
            if request is None:
                return
            donor: _Donor | None = None
            if request.use_prompt_cache:
                slot, reuse = self._pick_slot(free, request)
                donor = self._donor(request, reuse)
                if donor is not None:  # its cells replace the slot's: take the least useful
                    slot, reuse = min(free, key=lambda s: (bool(s.cached), s.last_used)), 0
            else:
                slot = min(free, key=lambda s: s.last_used)
                reuse = 0
            slot.tenant = request.tenant
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
            slot.logprobs = []
            slot.queue_seconds = time.monotonic() - request.enqueued_at
            self._admitted.append(slot)
            if donor is not None:
                if donor.coming - donor.ready >= COPY_MIN_TOKENS:
                    # Still being evaluated: wait for it, then copy all of it once.
                    slot.leader = donor.slot
                    slot.leader_request = donor.slot.request
                    slot.follow_until = donor.coming
                elif donor.ready >= COPY_MIN_TOKENS:
                    self._copy_prefix(donor.slot, slot, donor.ready)

    def _drop_cancelled_waiting(self) -> None:
        if any(r.handle.cancelled for r in self._waiting):
            kept: deque[GenerationRequest] = deque()
            for request in self._waiting:
                if request.handle.cancelled:
                    request.sampler.close()
                    self._cancelled += 1
                else:
                    kept.append(request)
            self._waiting = kept

    def _seen(self, tenant: str) -> None:
        """Note that ``tenant`` is active (lock held); forget tenants quiet for long."""
        now = time.monotonic()
        self._last_seen[tenant] = now
        if len(self._last_seen) > 4 * len(self._slots) + 64:
            quiet = [t for t, at in self._last_seen.items() if now - at > self._tenant_active_s]
            for gone in quiet:
                del self._last_seen[gone]

    def _slot_cap(self, tenant: str) -> int:
        """The most slots ``tenant`` may hold: all of them, less one kept free for each
        other tenant active in the last ``tenant_active_s`` (at most half the slots), so a
        returning tenant never waits for a flooder's whole generation (lock held)."""
        now = time.monotonic()
        others = sum(
            1
            for t, at in self._last_seen.items()
            if t != tenant and now - at <= self._tenant_active_s
        )
        return len(self._slots) - min(others, len(self._slots) // 2)

    def _next_waiting(self) -> GenerationRequest | None:
        """Take the next request to admit: weighted-fair across tenants, none while the
        fairest candidate is at its slot cap (lock held)."""
        held: dict[str, int] = {}
        for slot in self._admitted:
            if slot.request is not None:
                held[slot.request.tenant] = held.get(slot.request.tenant, 0) + 1
        best = 0
        best_key: tuple[float, int] | None = None
        seen: set[str] = set()
        for index, request in enumerate(self._waiting):  # arrival order
            if request.tenant in seen:
                continue
            seen.add(request.tenant)
            if held.get(request.tenant, 0) >= self._slot_cap(request.tenant):
                continue
            key = (held.get(request.tenant, 0) / request.weight, index)
            if best_key is None or key < best_key:
                best, best_key = index, key
        if best_key is None:
            return None  # every waiting tenant is at its cap: the free slot stays free
        request = self._waiting[best]
        del self._waiting[best]
        return request

    def _reusable(self, slot: Slot, request: GenerationRequest) -> int:
        """Cells of ``slot`` that ``request`` may reuse: its own tenant's, else a shareable
        prefix both start with. The last prompt token is always evaluated (its logits give the
        first token)."""
        return self._may_share(slot.cached, slot.tenant, request)

    def _may_share(self, tokens: list[int], owner: str, request: GenerationRequest) -> int:
        """How much of ``tokens`` (cells of ``owner``'s) ``request`` may take as its own."""
        prompt = request.prompt
        if owner == request.tenant:
            common = common_prefix_length(tokens, prompt)
        else:
            common = next(
                (
                    len(p)
                    for p in self._shareable
                    if _starts_with(prompt, p) and _starts_with(tokens, p)
                ),
                0,
            )
        return max(0, min(common, len(prompt) - 1))

    def _donor(self, request: GenerationRequest, reuse: int) -> _Donor | None:
        """The busy slot whose cells (``ready``, or ``coming`` once its prefill gets there)
        give ``request`` at least ``COPY_MIN_TOKENS`` more than ``reuse``; None if none."""
        best: _Donor | None = None
        for slot in self._admitted:
            if slot.request is None or slot.leader is not None:
                continue  # a follower has not got its cells yet
            ready = self._reusable(slot, request)
            coming = ready
            if slot.prefilling:
                coming = max(ready, self._may_share(slot.request.prompt, slot.tenant, request))
            if coming - reuse >= COPY_MIN_TOKENS and (best is None or coming > best.coming):
                best = _Donor(slot, ready, coming)
        return best

    def _copy_prefix(self, source: Slot, target: Slot, length: int) -> None:
        """Give ``target`` (admitted, nothing evaluated yet) ``source``'s first ``length``
        cells."""
        assert target.request is not None
        if not self._runtime.copy_sequence(source.seq_id, target.seq_id, length):
            self._runtime.clear_sequence(target.seq_id)
            target.cached = []
            return
        target.cached = source.cached[:length]
        target.reused = length
        self._cache_hits += 1
        self._tokens_reused += length
        self._prefix_copies += 1

    def _follow_leaders(self) -> None:
        """Followers whose leader has evaluated the shared prefix (or stopped) copy it now."""
        for slot in self._admitted:
            leader = slot.leader
            if leader is None or slot.request is None:
                continue
            still_coming = (
                leader.request is slot.leader_request
                and leader.prefilling
                and len(leader.cached) < slot.follow_until
            )
            if still_coming:
                continue
            slot.leader = slot.leader_request = None
            ready = self._reusable(leader, slot.request)
            if ready - len(slot.cached) >= COPY_MIN_TOKENS:
                self._copy_prefix(leader, slot, ready)

    def _pick_slot(self, free: list[Slot], request: GenerationRequest) -> tuple[Slot, int]:
        """The free slot with the most reusable cells; then an empty one, then one of the
        request's own tenant, then the least recently used."""

        def rank(slot: Slot) -> tuple[int, int, int]:
            mine = 2 if not slot.cached else 1 if slot.tenant == request.tenant else 0
            return (self._reusable(slot, request), mine, -slot.last_used)

        slot = max(free, key=rank)
        return slot, self._reusable(slot, request)

    def _drop_cancelled(self) -> None:
        for slot in [s for s in self._admitted if s.request and s.request.handle.cancelled]:
            self._release(slot, None, None)
            # Nobody continues a cancelled answer: give its cells back.
            self._runtime.clear_sequence(slot.seq_id)
            slot.cached = []
            self._cancelled += 1

    def _step_once(self, outbox: Outbox) -> None:
        self._follow_leaders()
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
            if request is None or not slot.prefilling or slot.leader is not None:
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
            self._on_token(slot, token, index, outbox)

    def _on_token(self, slot: Slot, token: int, index: int, outbox: Outbox) -> None:
        request = slot.request
        assert request is not None and slot.text is not None
        if self._runtime.is_end_of_generation(token):
            self._finish(slot, "stop", outbox)
            return
        slot.generated += 1
        if request.top_logprobs is not None:
            slot.logprobs.append(
                self._logprobs.read(
                    index,
                    token,
                    request.top_logprobs,
                    special=request.special_pieces,
                    text_offset=slot.text.decoded,
                )
            )
        text = slot.text.push(self._runtime.token_piece(token, special=request.special_pieces))
        if text:
            outbox.append((request.handle, TextDelta(text, _sent_logprobs(slot))))
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
        logprobs = _sent_logprobs(slot, everything=not slot.text.stopped)
        if tail or logprobs:
            outbox.append((request.handle, TextDelta(tail, logprobs)))
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
        slot.logprobs = []
        slot.leader = slot.leader_request = None
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


@dataclass(frozen=True)
class _Donor:
    """A busy slot another request can copy a prefix from: ``ready`` cells now, ``coming``
    once its prefill gets that far."""

    slot: Slot
    ready: int
    coming: int


def _sent_logprobs(slot: Slot, *, everything: bool = False) -> tuple[TokenLogprob, ...]:
    """Take the held logprobs of the tokens whose text starts inside what was emitted so far
    (``everything``: all of them, at the end without a stop string). A token that straddles
    a stop string is reported; one wholly inside it, or after it, never is."""
    assert slot.text is not None
    emitted = slot.text.emitted
    done = len(slot.logprobs) if everything else 0
    while done < len(slot.logprobs) and slot.logprobs[done].text_offset < emitted:
        done += 1
    if not done:
        return ()
    sent = tuple(slot.logprobs[:done])
    del slot.logprobs[:done]
    return sent


def _longest_first(prefixes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    return sorted({tuple(p) for p in prefixes if p}, key=len, reverse=True)


def _starts_with(tokens: list[int], prefix: tuple[int, ...]) -> bool:
    return tuple(tokens[: len(prefix)]) == prefix


def _deliver_all(outbox: Outbox) -> None:
    for handle, event in outbox:
        handle.deliver(event)
