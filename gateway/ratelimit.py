"""Per-key limits: requests and tokens per minute (a sliding 60-second window), and requests
in flight.

Tokens are reserved before a request goes anywhere (its estimated prompt plus the most it
may generate) and settled to what it really used when it finishes, so a burst of
concurrent requests cannot overrun a limit that is only charged afterwards. Every
authenticated request counts toward requests per minute, including those that then fail
validation or name an unknown model.

The limiters live in ``gateway.shared_state`` (one process's memory, or Redis shared by
replicas); these names stay here for the modules that know them from here.
"""

from __future__ import annotations

from gateway.shared_state.base import (
    DEFAULT_COMPLETION_RESERVATION,
    TEMPLATE_OVERHEAD_TOKENS,
    WINDOW_S,
    Limiter,
    TokenCharge,
    estimate_prompt_tokens,
)
from gateway.shared_state.memory import MemoryRateLimiter

RateLimiter = MemoryRateLimiter

__all__ = [
    "DEFAULT_COMPLETION_RESERVATION",
    "TEMPLATE_OVERHEAD_TOKENS",
    "WINDOW_S",
    "Limiter",
    "RateLimiter",
    "TokenCharge",
    "estimate_prompt_tokens",
]
