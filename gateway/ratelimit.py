"""Per-key limits on requests and tokens per minute, over a sliding 60-second window."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError

WINDOW_S = 60.0


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_total: int = 0

    def expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.token_total -= self.tokens.popleft()[1]


def _limited(kind: str, limit: int, retry_after: float) -> GatewayError:
    seconds = max(1, math.ceil(retry_after))
    return GatewayError(
        429,
        f"Rate limit reached: {limit} {kind} per minute for this API key. Try again in {seconds}s.",
        type=kind,
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._usage: dict[str, _Usage] = {}
        self._now = clock

    def admit(self, key: APIKeyConfig) -> None:
        """Count a request against ``key``; raises a 429 when a limit is reached."""
        if key.requests_per_minute is None and key.tokens_per_minute is None:
            return
        now = self._now()
        usage = self._usage.setdefault(key.name, _Usage())
        usage.expire(now)
        if key.requests_per_minute is not None and len(usage.requests) >= key.requests_per_minute:
            raise _limited("requests", key.requests_per_minute, usage.requests[0] + WINDOW_S - now)
        if key.tokens_per_minute is not None and usage.token_total >= key.tokens_per_minute:
            raise _limited("tokens", key.tokens_per_minute, usage.tokens[0][0] + WINDOW_S - now)
        usage.requests.append(now)

    def charge(self, key: APIKeyConfig, tokens: int) -> None:
        """Record the tokens a finished request used (prompt + completion)."""
        if key.tokens_per_minute is None or tokens <= 0:
            return
        now = self._now()
        usage = self._usage.setdefault(key.name, _Usage())
        usage.tokens.append((now, tokens))
        usage.token_total += tokens
