"""The in-memory backend: one process's view, exact for a single replica.

Also the local half of the degradation policy (``fallback``) while Redis is unreachable.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import APIKeyConfig
from gateway.shared_state.base import (
    WINDOW_S,
    Admission,
    in_flight_limit,
    plan_reservation,
    rate_limited,
    too_many_failures,
    too_many_in_flight,
)


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    charges: deque[Admission] = field(default_factory=deque)
    token_total: int = 0
    in_flight: int = 0

    def expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.charges and self.charges[0].at <= now - WINDOW_S:
            self.token_total -= self.charges.popleft().tokens


class MemoryRateLimiter:
    """Requests and tokens per minute and requests in flight, per key name.

    Tokens are reserved before a request goes anywhere (its estimated prompt plus the most
    it may generate) and settled to what it really used when it finishes, so a burst of
    concurrent requests cannot overrun a limit that is only charged afterwards.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, default_max_in_flight: int = 64
    ) -> None:
        self._usage: dict[str, _Usage] = {}
        self._now = clock
        self._default_in_flight = default_max_in_flight

    def _of(self, key: APIKeyConfig) -> _Usage:
        usage = self._usage.setdefault(key.name, _Usage())
        usage.expire(self._now())
        return usage

    def _count(self, key: APIKeyConfig, usage: _Usage, now: float) -> None:
        if key.requests_per_minute is not None and len(usage.requests) >= key.requests_per_minute:
            raise rate_limited(
                "requests", key.requests_per_minute, usage.requests[0] + WINDOW_S - now
            )
        usage.requests.append(now)
        if key.tokens_per_minute is not None and usage.token_total >= key.tokens_per_minute:
            raise rate_limited(
                "tokens", key.tokens_per_minute, usage.charges[0].at + WINDOW_S - now
            )

    async def admit(self, key: APIKeyConfig) -> None:
        if key.requests_per_minute is None and key.tokens_per_minute is None:
            return
        self._count(key, self._of(key), self._now())

    async def begin(
        self, key: APIKeyConfig, prompt_tokens: int, max_tokens: int | None
    ) -> Admission:
        now = self._now()
        usage = self._of(key)
        limit = key.tokens_per_minute
        if key.requests_per_minute is not None or limit is not None:
            self._count(key, usage, now)
        admission = Admission(key, now, 0)
        if limit is not None:
            plan = plan_reservation(limit, prompt_tokens, max_tokens)
            if usage.token_total + plan.wanted > limit:
                retry = usage.charges[0].at + WINDOW_S - now if usage.charges else WINDOW_S
                raise rate_limited("tokens", limit, retry)
            admission.tokens, admission.completion_budget = plan.wanted, plan.budget
        places = in_flight_limit(key, self._default_in_flight)
        if usage.in_flight >= places:
            raise too_many_in_flight(places)  # nothing reserved: as if settled to 0
        usage.in_flight += 1
        if limit is not None:
            usage.charges.append(admission)
            usage.token_total += admission.tokens
        return admission

    def finish(self, admission: Admission, used: int | None) -> None:
        if admission.finished:
            return
        admission.finished = True
        key = admission.key
        usage = self._usage.get(key.name)
        if usage is None:
            return
        if usage.in_flight > 0:
            usage.in_flight -= 1
        if used is None or key.tokens_per_minute is None:
            return
        now = self._now()
        usage.expire(now)
        # Still inside the window (expire drops charges oldest first): O(1), not a search.
        if admission.at > now - WINDOW_S:
            usage.token_total += used - admission.tokens
        admission.tokens = used

    async def flush(self) -> None:
        return  # every finish is applied at once


class MemoryAuthFailureGuard:
    """Refuses an address for a while after too many failed authentications (brute force).

    A sliding window per client address: more than ``max_failures`` failures within
    ``window_s`` answer 429 with ``Retry-After`` until the window has room again. The table is
    bounded so that spraying addresses cannot exhaust memory.
    """

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._max_clients = max_clients
        self._now = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        now = self._now()
        entries = self._failures.get(client)
        if entries is None:
            return deque()
        while entries and entries[0] <= now - self._window:
            entries.popleft()
        return entries

    async def check(self, client: str) -> None:
        entries = self._recent(client)
        if len(entries) >= self._max:
            raise too_many_failures(entries[0] + self._window - self._now())

    async def failed(self, client: str) -> None:
        entries = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        entries.append(self._now())
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)


class MemoryTokenStore:
    """Recent tokens by completion id, in memory, for ``GET /v1/attestations/{id}``.

    Each entry belongs to the API key whose request caused it (``owner``, its digest): only
    that key reads it back. An id is stored once and never overwritten.
    """

    def __init__(self, *, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._tokens: OrderedDict[str, tuple[float, str, str]] = OrderedDict()
        self._lock = threading.Lock()

    async def put(self, completion_id: str, owner: str, token: str) -> bool:
        with self._lock:
            entry = self._tokens.get(completion_id)
            if entry is not None and entry[0] >= time.monotonic():
                return False
            self._tokens[completion_id] = (time.monotonic() + self._ttl, owner, token)
            self._tokens.move_to_end(completion_id)
            while len(self._tokens) > self._max:
                self._tokens.popitem(last=False)
            return True

    async def get(self, completion_id: str, owner: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(completion_id)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._tokens[completion_id]
                return None
            return entry[2] if hmac.compare_digest(entry[1], owner) else None
