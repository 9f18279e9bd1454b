"""What a replica does while the shared store (Redis) does not answer.

Limits fail closed (503 ``shared_state_unavailable`` with Retry-After) or, with
``local_share``, each replica enforces ``limit / local_share_replicas`` from its own memory;
the brute-force guard and the token store go on in local memory. Every fallback is counted
(``gateway_shared_state_fallbacks_total``), the availability is a gauge, and each change of
state is logged once (no values, only the error's type). Redis is tried again at most every
``retry_interval_s`` while it is down, so requests do not each wait for a timeout; the first
answer switches the shared path back on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from gateway.shared_state.base import (
    Admission,
    FailureGuard,
    Limiter,
    SharedStateUnavailable,
    TokenKeeper,
)
from gateway.telemetry import GatewayMetrics

log = logging.getLogger("gateway.shared_state")
T = TypeVar("T")
Policy = Literal["fail_closed", "local_share"]
RETRY_AFTER_S = 2


def unavailable() -> GatewayError:
    return GatewayError(
        503,
        "Rate limits cannot be checked right now: this gateway cannot reach its shared state "
        "store. Try again shortly.",
        type="server_error",
        code="shared_state_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class SharedStateHealth:
    """Whether the store answers, as this replica sees it; each transition logged once."""

    def __init__(
        self,
        *,
        policy: Policy,
        metrics: GatewayMetrics | None = None,
        retry_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.available = True
        self.outages = 0
        self._policy = policy
        self._metrics = metrics
        self._retry_interval = retry_interval_s
        self._retry_at = 0.0
        self._now = clock
        self._on_recovery: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        if metrics is not None:
            metrics.shared_state_available.set(1)

    def on_recovery(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_recovery.append(callback)

    def should_try(self) -> bool:
        return self.available or self._now() >= self._retry_at

    def down(self, component: str, error: SharedStateUnavailable) -> None:
        self._retry_at = self._now() + self._retry_interval
        if self._metrics is not None:
            self._metrics.shared_state_fallbacks.labels(component).inc()
        if not self.available:
            return
        self.available = False
        self.outages += 1
        if self._metrics is not None:
            self._metrics.shared_state_available.set(0)
        limits = (
            "limited requests get 503 shared_state_unavailable"
            if self._policy == "fail_closed"
            else "each replica enforces its local share of every limit"
        )
        log.warning(
            "shared state store unreachable (%s): %s; the brute-force guard and stored tokens "
            "use this replica's memory until it answers again",
            error,
            limits,
        )

    def up(self) -> None:
        if self.available:
            return
        self.available = True
        if self._metrics is not None:
            self._metrics.shared_state_available.set(1)
        log.warning("shared state store reachable again; shared limits, guard and tokens resume")
        for callback in self._on_recovery:
            task = asyncio.ensure_future(self._recover(callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _recover(self, callback: Callable[[], Awaitable[None]]) -> None:
        try:
            await callback()
        except SharedStateUnavailable as exc:
            self.down("heartbeat", exc)

    async def attempt(
        self, component: str, call: Callable[[], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """``(True, result)`` from the shared backend, or ``(False, ...)`` when the store did
        not answer (or is known to be down): the caller then uses its fallback. Refusals
        pass through."""
        if not self.should_try():
            if self._metrics is not None:
                self._metrics.shared_state_fallbacks.labels(component).inc()
            return False, None
        try:
            result = await call()
        except SharedStateUnavailable as exc:
            self.down(component, exc)
            return False, None
        # No up() here: a call may be answered without the store (a lease, the guard's copy
        # of the locked set); the connection reports each real answer (``on_answer``).
        return True, result


class SharedLimiter:
    """``Limiter`` on the shared store, with the configured policy while it is down."""

    def __init__(
        self,
        shared: Limiter,
        local: Limiter,
        health: SharedStateHealth,
        *,
        policy: Policy,
        replicas: int = 1,
    ) -> None:
        self._shared = shared
        self._local = local
        self._health = health
        self._policy = policy
        self._replicas = replicas
        self._shares: dict[tuple[str, str], APIKeyConfig] = {}

    def _quota(self, key: APIKeyConfig) -> APIKeyConfig:
        """``key`` for counting its requests and tokens locally, unless that fails closed."""
        if self._policy == "fail_closed":
            raise unavailable()
        return self._share(key)

    def _share(self, key: APIKeyConfig) -> APIKeyConfig:
        """``key`` with each of its limits divided among the replicas (at least 1)."""
        if self._replicas == 1:
            return key
        known = self._shares.get((key.name, key.sha256))
        if known is None:
            n = self._replicas
            update = {
                name: max(1, value // n)
                for name in ("requests_per_minute", "tokens_per_minute", "max_in_flight")
                if (value := getattr(key, name)) is not None
            }
            known = self._shares[(key.name, key.sha256)] = key.model_copy(update=update)
        return known

    async def admit(self, key: APIKeyConfig) -> None:
        if key.requests_per_minute is None and key.tokens_per_minute is None:
            return  # nothing to count, nothing to refuse
        done, _ = await self._health.attempt("limits", lambda: self._shared.admit(key))
        if not done:
            await self._local.admit(self._quota(key))

    async def begin(
        self, key: APIKeyConfig, prompt_tokens: int, max_tokens: int | None
    ) -> Admission:
        done, admission = await self._health.attempt(
            "limits", lambda: self._shared.begin(key, prompt_tokens, max_tokens)
        )
        if done and admission is not None:
            return admission
        limited = key.requests_per_minute is not None or key.tokens_per_minute is not None
        # Places are protection, not a quota: kept locally (at the replica's share) under
        # either policy, so an outage does not refuse a key that has no other limit.
        local_key = self._quota(key) if limited else self._share(key)
        admission = await self._local.begin(local_key, prompt_tokens, max_tokens)
        admission.local = True
        return admission

    def finish(self, admission: Admission, used: int | None) -> None:
        # Given back where it was taken: Redis (queued, retried there) or this replica.
        (self._local if admission.local else self._shared).finish(admission, used)

    async def flush(self) -> None:
        await self._shared.flush()


class SharedFailureGuard:
    """``FailureGuard`` on the shared store; this replica's memory while it is down."""

    def __init__(self, shared: FailureGuard, local: FailureGuard, health: SharedStateHealth):
        self._shared = shared
        self._local = local
        self._health = health

    async def check(self, client: str) -> None:
        done, _ = await self._health.attempt("auth_guard", lambda: self._shared.check(client))
        if not done:
            await self._local.check(client)

    async def failed(self, client: str) -> None:
        done, _ = await self._health.attempt("auth_guard", lambda: self._shared.failed(client))
        if not done:
            await self._local.failed(client)


class SharedTokenStore:
    """``TokenKeeper`` on the shared store; tokens kept in local memory while it is down
    (readable from this replica only, then also after the store is back)."""

    def __init__(self, shared: TokenKeeper, local: TokenKeeper, health: SharedStateHealth):
        self._shared = shared
        self._local = local
        self._health = health
        self._warned_outage = 0

    async def put(self, completion_id: str, owner: str, token: str) -> bool:
        done, stored = await self._health.attempt(
            "tokens", lambda: self._shared.put(completion_id, owner, token)
        )
        if done:
            return bool(stored)
        if self._warned_outage != self._health.outages:
            self._warned_outage = self._health.outages
            log.warning(
                "attestation tokens are kept in this replica's memory only (the shared store "
                "is unreachable): GET /v1/attestations finds them on this replica alone"
            )
        return await self._local.put(completion_id, owner, token)

    async def get(self, completion_id: str, owner: str) -> str | None:
        done, token = await self._health.attempt(
            "tokens", lambda: self._shared.get(completion_id, owner)
        )
        if done and token is not None:
            return token
        return await self._local.get(completion_id, owner)
