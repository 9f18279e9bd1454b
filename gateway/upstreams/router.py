"""Routing: a model name maps to a group of upstreams; each request goes to the healthy
member with the fewest requests in flight.

A failure before anything reached the client is retried on another member (up to
``retries``), then on the model's fallback group if it has one. An upstream that fails
``failure_threshold`` times in a row is taken out for ``cooldown_s`` and then probed back in.
Errors the upstream attributes to the request (4xx) are never retried: they are the
client's to fix and pass through unchanged. Only failures that say something about the
upstream (unreachable, reset, cut off, 502/504) count towards taking it out; an
overloaded upstream (429/503) is skipped for this request only, and a 500 one request
provoked is that request's failure, never everyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.config import RoutingConfig
from gateway.upstreams.base import (
    Operation,
    Tenant,
    Upstream,
    UpstreamDescription,
    UpstreamError,
    Weights,
    unsupported_operation,
)

log = logging.getLogger("gateway.router")


@dataclass
class Member:
    """One upstream inside a group, with the router's view of its health."""

    upstream: Upstream
    description: UpstreamDescription = field(
        default_factory=lambda: UpstreamDescription("remote", in_guest=False, attested=False)
    )
    is_ready: Callable[[], bool] = lambda: True
    # The weights it serves now (a local engine's, from its /health); None when unknown.
    weights: Callable[[], Weights | None] = lambda: None
    # Free slots the upstream last reported (discovered engines), None when it reports none.
    free_slots: Callable[[], int | None] = lambda: None
    # What it serves: an embedding engine serves embeddings only, a chat engine no embeddings.
    operations: frozenset[Operation] = frozenset({"chat/completions", "completions", "embeddings"})
    outstanding: int = 0
    consecutive_failures: int = 0
    # Set while the member is taken out; it only returns after a successful probe.
    out_until: float | None = None
    served: int = 0

    @property
    def name(self) -> str:
        return self.upstream.name

    def available(self, now: float) -> bool:
        return self.out_until is None and self.is_ready()


@dataclass
class Group:
    name: str
    members: list[Member]
    fallback: str | None = None
    _rotation: int = field(default=0, repr=False)

    def candidates(self, now: float) -> list[Member]:
        """Available members, most room first: fewest in flight, less the free slots a member
        reports (discovered engines); ties rotate so load spreads evenly."""
        self._rotation += 1
        ordered = (
            self.members[self._rotation % len(self.members) :]
            + self.members[: self._rotation % len(self.members)]
        )
        return sorted(
            (m for m in ordered if m.available(now)),
            key=lambda m: m.outstanding - (m.free_slots() or 0),
        )

    def healthy(self, now: float) -> bool:
        return any(m.available(now) for m in self.members)


class NoUpstream(Exception):
    """Every upstream of the model (and of its fallbacks) is down or failed."""

    def __init__(self, model: str, last_error: UpstreamError | None) -> None:
        super().__init__(model)
        self.model = model
        self.last_error = last_error


@dataclass(frozen=True)
class Routed:
    """Where a request was served, for the response stages and the response token."""

    model_group: str
    upstream: str
    description: UpstreamDescription
    weights: Weights | None

    @classmethod
    def of(cls, group: Group, member: Member) -> Routed:
        return cls(group.name, member.name, member.description, member.weights())

    @property
    def in_guest(self) -> bool:
        return self.description.in_guest

    def claim(self) -> dict[str, Any]:
        """The response token's ``upstream`` claim."""
        return {
            "name": self.upstream,
            "kind": self.description.kind,
            "in_guest": self.description.in_guest,
            "attested": self.description.confidential,
            "provider": self.description.provider,
        }


class Router:
    def __init__(
        self,
        groups: dict[str, Group],
        config: RoutingConfig,
        on_failure: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._groups = groups
        self._config = config
        self._on_failure = on_failure
        self._prober: asyncio.Task[None] | None = None
        self._confirming: set[asyncio.Task[None]] = set()

    @property
    def groups(self) -> dict[str, Group]:
        return self._groups

    def knows(self, model: str) -> bool:
        return model in self._groups

    def ready(self) -> dict[str, bool]:
        now = time.monotonic()
        return {name: group.healthy(now) for name, group in self._groups.items()}

    def serves(self, model: str, operation: Operation) -> bool:
        """Some member of the model's group (or of its fallbacks) serves ``operation``."""
        return any(operation in m.operations for _, m in self._chain(model))

    def _chain(self, model: str) -> list[tuple[Group, Member]]:
        members: list[tuple[Group, Member]] = []
        seen: set[str] = set()
        name: str | None = model
        while name is not None and name not in seen and name in self._groups:
            seen.add(name)
            group = self._groups[name]
            members += [(group, m) for m in group.members]
            name = group.fallback
        return members

    def _route(self, model: str, operation: Operation) -> list[tuple[Group, Member]]:
        """Members to try, in order: this group's (bounded by retries), then fallbacks'."""
        if not self.serves(model, operation):
            raise unsupported_operation(model, operation)
        plan: list[tuple[Group, Member]] = []
        seen: set[str] = set()
        name: str | None = model
        now = time.monotonic()
        while name is not None and name not in seen:
            seen.add(name)
            group = self._groups[name]
            able = [m for m in group.candidates(now) if operation in m.operations]
            plan += [(group, m) for m in able[: self._config.retries + 1]]
            name = group.fallback
        return plan

    def _failed(self, member: Member, error: UpstreamError) -> None:
        self._on_failure(member.name)
        log.warning("upstream %s failed: %s", member.name, error)
        if error.timed_out and error.status is None:
            # Long request or hung upstream? Its health route decides, not the request.
            task = asyncio.create_task(self._confirm(member))
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)
            return
        if not error.health_signal:
            return  # overloaded, or this request's own failure: the upstream stays in
        self._count_failure(member)

    async def _confirm(self, member: Member) -> None:
        if not await member.upstream.probe():
            log.warning("upstream %s timed out and fails its probe", member.name)
            self._count_failure(member)

    def _count_failure(self, member: Member) -> None:
        member.consecutive_failures += 1
        if member.consecutive_failures >= self._config.failure_threshold:
            member.out_until = time.monotonic() + self._config.cooldown_s
            log.warning(
                "upstream %s taken out for %.0fs after %d failures",
                member.name,
                self._config.cooldown_s,
                member.consecutive_failures,
            )

    @staticmethod
    def _succeeded(member: Member) -> None:
        member.consecutive_failures = 0
        member.served += 1

    async def complete(
        self,
        model: str,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> tuple[dict[str, Any], Routed]:
        last: UpstreamError | None = None
        for group, member in self._route(model, operation):
            member.outstanding += 1
            try:
                result = await member.upstream.complete(
                    operation,
                    {**body, "model": member.upstream.model},
                    request_id=request_id,
                    tenant=tenant,
                )
            except UpstreamError as exc:
                if exc.client_error:
                    raise
                self._failed(member, exc)
                last = exc
                continue
            finally:
                member.outstanding -= 1
            self._succeeded(member)
            return result, Routed.of(group, member)
        raise NoUpstream(model, last)

    @asynccontextmanager
    async def stream(
        self,
        model: str,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AsyncIterator[tuple[AsyncIterator[dict[str, Any]], Routed]]:
        """Open a stream on the first member that produces a first chunk.

        Until that chunk exists nothing has reached the client, so a failure moves on to the
        next member; after it, failures surface to the caller from the iterator.
        """
        last: UpstreamError | None = None
        for group, member in self._route(model, operation):
            stack = AsyncExitStack()
            member.outstanding += 1
            stack.callback(_decrement, member)
            try:
                events = await stack.enter_async_context(
                    member.upstream.stream(
                        operation,
                        {**body, "model": member.upstream.model},
                        request_id=request_id,
                        tenant=tenant,
                    )
                )
                first = await anext(events)
            except StopAsyncIteration:
                await stack.aclose()
                self._failed(member, UpstreamError("empty stream", retryable=True))
                continue
            except UpstreamError as exc:
                await stack.aclose()
                if exc.client_error:
                    raise
                self._failed(member, exc)
                last = exc
                continue
            except BaseException:
                await stack.aclose()
                raise
            self._succeeded(member)
            async with stack:
                yield _prepend(first, events), Routed.of(group, member)
            return
        raise NoUpstream(model, last)

    # -- probing --------------------------------------------------------------------------
    def start_probing(self) -> None:
        self._prober = asyncio.create_task(self._probe_loop(), name="upstream-prober")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.probe_interval_s)
            now = time.monotonic()
            for group in self._groups.values():
                for member in group.members:
                    if member.out_until is not None and now >= member.out_until:
                        if await member.upstream.probe():
                            log.info("upstream %s passed its probe and is back", member.name)
                            member.consecutive_failures = 0
                            member.out_until = None
                        else:
                            member.out_until = now + self._config.cooldown_s

    async def close(self) -> None:
        for task in list(self._confirming):
            task.cancel()
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for group in self._groups.values():
            for member in group.members:
                await member.upstream.close()


def _decrement(member: Member) -> None:
    member.outstanding -= 1


async def _prepend(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for event in rest:
        yield event
