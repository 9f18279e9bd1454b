"""Batching embeddings: one worker thread packs every waiting request's inputs into shared decodes.

Requests queue as jobs of token lists; each step packs waiting inputs of every job into one
batch (about ``batch_tokens`` tokens, at most ``n_seq_max`` sequences) for the
``EmbeddingModel``, so concurrent requests share decodes, then splits the vectors back to
their jobs. Inputs are taken round-robin across tenants (an opaque API-key id), oldest job
first, so a 2048-input request does not hold back a one-input request of another key for its
whole run. A job whose caller went away is dropped before its next input is decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from enclave_backend.embedding_runtime import EmbeddingModel, EmbeddingOptions, Vector

log = logging.getLogger("enclave_backend.embeddings")


class EmbeddingQueueFull(Exception):
    """More inputs are waiting than the engine admits."""


class EmbeddingEngineStopped(Exception):
    """The engine is shutting down and takes no new work."""


class EmbeddingFailed(Exception):
    """llama.cpp failed on a batch; the request cannot be answered."""


@dataclass(frozen=True)
class EmbeddingStats:
    batches: int
    inputs_embedded: int
    inputs_waiting: int
    jobs_cancelled: int


@dataclass(eq=False)
class _Job:
    inputs: list[list[int]]
    tenant: str
    future: asyncio.Future[list[Vector]]
    loop: asyncio.AbstractEventLoop
    vectors: list[Vector | None] = field(default_factory=list)
    next: int = 0  # the next input to schedule
    done: int = 0
    cancelled: bool = False

    @property
    def waiting(self) -> int:
        return len(self.inputs) - self.next


def _resolve(job: _Job, result: list[Vector] | BaseException) -> None:
    """On the job's event loop: settle its future unless its caller already left."""
    if job.future.done():
        return
    if isinstance(result, BaseException):
        job.future.set_exception(result)
    else:
        job.future.set_result(result)


def _settle(job: _Job, result: list[Vector] | BaseException) -> None:
    """From any thread: hand ``result`` to the job's event loop."""
    if job.cancelled:
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for the result
        job.loop.call_soon_threadsafe(_resolve, job, result)


class EmbeddingEngine:
    """The worker thread that batches every waiting job's inputs into shared decodes."""

    def __init__(self, model: EmbeddingModel, *, max_waiting_inputs: int = 16384) -> None:
        self.model = model
        self._max_waiting = max_waiting_inputs
        self._jobs: list[_Job] = []
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._batches = 0
        self._embedded = 0
        self._cancelled = 0
        self._rotation = 0

    @classmethod
    def load(cls, options: EmbeddingOptions) -> EmbeddingEngine:
        return cls(EmbeddingModel(options), max_waiting_inputs=options.max_waiting_inputs)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="embedding-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; jobs still waiting fail with ``EmbeddingEngineStopped``."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._cond:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            _settle(job, EmbeddingEngineStopped("the engine is shutting down"))

    def close(self) -> None:
        self.stop()
        self.model.close()

    def check_running(self) -> None:
        if not self._running:
            raise EmbeddingEngineStopped("the engine is not running")

    @property
    def alive(self) -> bool:
        return self._running and self._thread is not None and self._thread.is_alive()

    def stats(self) -> EmbeddingStats:
        with self._cond:
            waiting = sum(job.waiting for job in self._jobs)
            return EmbeddingStats(self._batches, self._embedded, waiting, self._cancelled)

    # -- called from the event loop -------------------------------------------------------
    async def embed(self, inputs: Sequence[Sequence[int]], *, tenant: str = "") -> list[Vector]:
        """Pooled vectors of ``inputs`` (validated token lists), in order. Cancelling the
        caller drops the inputs not yet decoded."""
        loop = asyncio.get_running_loop()
        job = _Job([list(tokens) for tokens in inputs], tenant, loop.create_future(), loop)
        job.vectors = [None] * len(job.inputs)
        with self._cond:
            self.check_running()
            waiting = sum(j.waiting for j in self._jobs)
            if waiting and waiting + len(job.inputs) > self._max_waiting:
                raise EmbeddingQueueFull(f"{waiting} inputs are waiting")
            self._jobs.append(job)
            self._cond.notify()
        try:
            return await job.future
        finally:
            if not job.future.done() or job.future.cancelled():
                job.cancelled = True  # read by the worker before it plans the next batch

    # -- the worker thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while self._running and not self._pending():
                    self._cond.wait()
                if not self._running:
                    return
                plan = self._plan()
            self._decode(plan)

    def _pending(self) -> bool:
        """Drop cancelled jobs; True if some job has inputs to schedule. Holds the lock."""
        kept = []
        for job in self._jobs:
            if job.cancelled:
                self._cancelled += 1
            else:
                kept.append(job)
        self._jobs = kept
        return any(job.waiting for job in kept)

    def _plan(self) -> list[tuple[_Job, int]]:
        """The next batch: inputs round-robin over tenants, each tenant's oldest job first,
        until ``batch_tokens`` or ``n_seq_max`` is reached (the first input always goes: it
        fits ``n_batch``). The tenant that goes first rotates from batch to batch, so a long
        input is never crowded out for good."""
        by_tenant: dict[str, deque[_Job]] = {}
        for job in self._jobs:  # in arrival order
            if job.waiting:
                by_tenant.setdefault(job.tenant, deque()).append(job)
        queues = list(by_tenant.values())
        first = self._rotation % len(queues)
        self._rotation += 1
        queues = queues[first:] + queues[:first]
        model = self.model
        plan: list[tuple[_Job, int]] = []
        tokens = 0
        progressed = True
        while progressed:
            progressed = False
            for queue in queues:
                if not queue or len(plan) == model.n_seq_max:
                    continue
                job = queue[0]
                size = len(job.inputs[job.next])
                if plan and tokens + size > model.batch_tokens:
                    continue  # this tenant waits for the next batch; others may still fit
                plan.append((job, job.next))
                tokens += size
                job.next += 1
                progressed = True
                if not job.waiting:
                    queue.popleft()
        return plan

    def _decode(self, plan: list[tuple[_Job, int]]) -> None:
        if not plan:
            return
        try:
            vectors = self.model.embed([job.inputs[index] for job, index in plan])
        except Exception as exc:  # llama.cpp failed: fail these jobs, keep serving others
            log.error("embedding batch failed: %s", type(exc).__name__)
            failed = {job for job, _ in plan}
            with self._cond:
                self._jobs = [job for job in self._jobs if job not in failed]
            for job in failed:
                _settle(job, EmbeddingFailed("the model could not embed the batch"))
            return
        finished: list[_Job] = []
        with self._cond:
            self._batches += 1
            self._embedded += len(plan)
            for (job, index), vector in zip(plan, vectors, strict=True):
                job.vectors[index] = vector
                job.done += 1
                if job.done == len(job.inputs):
                    finished.append(job)
            if finished:
                self._jobs = [job for job in self._jobs if job not in finished]
        for job in finished:
            _settle(job, [v for v in job.vectors if v is not None])
