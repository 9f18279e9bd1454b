"""Scripts sent to Redis in batches: one network round trip for many requests.

A request awaits one script at its start (``call``) and none at its finish (``send``). One
writer task owns the sending: every call made while it was busy, or in the same tick of the
event loop, goes out as one pipeline (still one atomic script per operation), preceded by
the finishes queued so far, so this replica's finishes reach Redis before its later starts.
Finishes alone wait ``send_delay_s`` for a start to ride along with.

A batch that Redis does not answer fails its callers with ``SharedStateUnavailable`` and is
reported to ``on_lost`` (the degradation policy); queued finishes marked ``retry`` (they are
idempotent) go out again after ``retry_interval_s``, the others are dropped for the caller's
own repair (``resync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.shared_state.base import SharedStateUnavailable

log = logging.getLogger("gateway.shared_state")
Arg = str | int | float
# Called with a script's answer once it arrives, and whether its caller stopped waiting.
OnResult = Callable[[Any, bool], None]


@dataclass(eq=False)
class _Call:
    script: str
    keys: Sequence[str]
    args: Sequence[Arg] | Callable[[], Sequence[Arg]]
    future: asyncio.Future[Any] | None = None  # None: nobody waits (a finish)
    retry: bool = False
    on_result: OnResult | None = None
    barrier: bool = False

    def arguments(self) -> Sequence[Arg]:
        return self.args() if callable(self.args) else self.args


class ScriptBatcher:
    def __init__(
        self,
        client: Redis,
        scripts: Mapping[str, str],
        *,
        send_delay_s: float = 0.002,
        retry_interval_s: float = 1.0,
        max_queued: int = 100_000,
        max_batch: int = 1024,
    ) -> None:
        self._client = client
        self._bodies = dict(scripts)
        self._shas = {
            name: hashlib.sha1(body.encode()).hexdigest() for name, body in scripts.items()
        }
        self._send_delay = send_delay_s
        self._retry_interval = retry_interval_s
        self._max_queued = max_queued
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._due = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._retrying: list[_Call] = []  # finishes Redis did not take, for the retry timer
        self._retry_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.on_lost: Callable[[SharedStateUnavailable], None] | None = None
        self.on_answer: Callable[[], None] | None = None  # each batch Redis answered
        self.dropped = 0  # finishes given up on (not retried, or over max_queued)

    async def call(
        self,
        script: str,
        keys: Sequence[str],
        args: Sequence[Arg] | Callable[[], Sequence[Arg]],
        on_result: OnResult | None = None,
        *,
        barrier: bool = False,
    ) -> Any:
        """Run ``script`` in the next batch and return its answer.

        ``args`` may be a function, called when the batch is built (after every earlier
        batch's answers were applied). A ``barrier`` runs after every finish queued before
        it and before the other calls of its batch (whose answers are not known yet).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future, on_result=on_result, barrier=barrier))
        self._wake()
        return await future

    def send(self, script: str, keys: Sequence[str], args: Sequence[Arg], *, retry: bool) -> None:
        """Queue ``script`` without waiting for it (``retry``: again after a failure)."""
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        self._queue.append(_Call(script, keys, args, retry=retry))
        self._idle.clear()
        self._ensure_writer()
        if self._timer is None and not self._due.is_set():
            self._timer = asyncio.get_running_loop().call_later(self._send_delay, self._wake)

    async def flush(self) -> None:
        """Wait until everything queued so far has been sent (or given up on)."""
        if self._queue:
            self._wake()
        await self._idle.wait()

    async def close(self) -> None:
        with contextlib.suppress(SharedStateUnavailable):
            if self._writer is not None and not self._writer.done():
                await asyncio.wait_for(self.flush(), timeout=5.0)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for timer in (self._timer, self._retry_timer):
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._idle.clear()
        self._ensure_writer()
        self._due.set()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._send(_ordered(batch))
            self._idle.set()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            answers = await self._execute(batch)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(batch, await self._lost(exc))
            return
        # Our scripts never answer with an error: one is the server's state (out of memory,
        # read-only replica, busy, misconfigured), so those calls fail as if unreachable.
        failed = [item for item, answer in zip(batch, answers, strict=True) if _error(answer)]
        if len(failed) < len(batch) and self.on_answer is not None:
            self.on_answer()
        if failed:
            first = next(answer for answer in answers if _error(answer))
            log.warning("shared state store answered with an error: %s", type(first).__name__)
            self._failed(failed, SharedStateUnavailable(type(first).__name__))
        for item, answer in zip(batch, answers, strict=True):
            if not _error(answer):
                self._answer(item, answer)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        answers = await self._pipeline(batch)
        missing = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:  # the server lost its scripts (a restart): load them, run those again
            for body in self._bodies.values():
                await self._client.script_load(body)
            again = await self._pipeline([batch[i] for i in missing])
            for i, answer in zip(missing, again, strict=True):
                answers[i] = answer
        return answers

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:  # one script: a plain call costs about half a pipeline's work
            item = batch[0]
            try:
                answer = await self._client.evalsha(
                    self._shas[item.script], len(item.keys), *item.keys, *item.arguments()
                )
            except ResponseError as exc:  # the script's own error: an answer, as below
                return [exc]
            return [answer]
        pipe = self._client.pipeline(transaction=False)
        for item in batch:
            pipe.evalsha(self._shas[item.script], len(item.keys), *item.keys, *item.arguments())
        answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers

    def _answer(self, item: _Call, answer: Any) -> None:
        future = item.future
        abandoned = future is not None and future.done()  # its caller was cancelled
        if item.on_result is not None and not isinstance(answer, Exception):
            item.on_result(answer, abandoned)
        if future is None or abandoned:
            return
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    def _failed(self, batch: list[_Call], lost: SharedStateUnavailable) -> None:
        kept = [item for item in batch if item.future is None and item.retry]
        self.dropped += sum(1 for item in batch if item.future is None and not item.retry)
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(SharedStateUnavailable(str(lost)))
        if self.on_lost is not None:
            self.on_lost(lost)
        room = max(0, self._max_queued - len(self._retrying))
        self.dropped += max(0, len(kept) - room)
        self._retrying += kept[:room]
        if self._retrying and self._retry_timer is None:
            self._retry_timer = asyncio.get_running_loop().call_later(
                self._retry_interval, self._retry
            )

    def _retry(self) -> None:
        self._retry_timer = None
        self._queue[:0], self._retrying = self._retrying, []
        self._wake()

    async def _lost(self, error: BaseException) -> SharedStateUnavailable:
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect()
        return SharedStateUnavailable(type(error).__name__)


def _error(answer: Any) -> bool:
    return isinstance(answer, Exception)


def _ordered(batch: list[_Call]) -> list[_Call]:
    """``batch`` with its first barrier moved before every call (a future) queued ahead of
    it; finishes queued ahead of it stay ahead (their effect is already in its arguments)."""
    at = next((i for i, item in enumerate(batch) if item.barrier), None)
    if at is None:
        return batch
    ahead = batch[:at]
    finishes = [item for item in ahead if item.future is None]
    calls = [item for item in ahead if item.future is not None]
    return [*finishes, batch[at], *calls, *batch[at + 1 :]]
