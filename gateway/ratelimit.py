"""Per-key limits: requests and tokens per minute (a sliding 60-second window), and requests
in flight.

Tokens are reserved before a request goes anywhere (its estimated prompt plus the most it
may generate) and settled to what it really used when it finishes, so a burst of
concurrent requests cannot overrun a limit that is only charged afterwards. Every
authenticated request counts toward requests per minute, including those that then fail
validation or name an unknown model.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError

WINDOW_S = 60.0
# Answer tokens reserved (and allowed) for a request of a token-limited key that sets no
# max_tokens; settled to the real usage afterwards.
DEFAULT_COMPLETION_RESERVATION = 1024
# A prompt's tokens, bounded from its body before any tokenizer has seen it. A byte-level
# tokenizer (BPE, or SentencePiece with byte fallback) makes at most one token per UTF-8 byte,
# so the body's length bounds its text, whatever the script or however adversarial (digits,
# rare characters). The template adds what the body does not hold (a default system prompt,
# role markers). It over-reserves ordinary text about 3-4x; settling gives the rest back.
TEMPLATE_OVERHEAD_TOKENS = 64


def estimate_prompt_tokens(body: bytes) -> int:
    return len(body) + TEMPLATE_OVERHEAD_TOKENS


@dataclass(eq=False)
class TokenCharge:
    """Tokens counted against a key at ``at``: a reservation until settled."""

    at: float
    tokens: int
    # The most answer tokens the request may ask its upstream for when the client set none.
    completion_budget: int | None = None
    settled: bool = False


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    charges: deque[TokenCharge] = field(default_factory=deque)
    token_total: int = 0
    in_flight: int = 0

    def expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.charges and self.charges[0].at <= now - WINDOW_S:
            self.token_total -= self.charges.popleft().tokens


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

    def admit(self, key: APIKeyConfig) -> None:
        """Count a request against ``key``; a 429 when its requests per minute are used up,
        or when its tokens are (nothing left to reserve)."""
        if key.requests_per_minute is None and key.tokens_per_minute is None:
            return
        now = self._now()
        usage = self._of(key)
        if key.requests_per_minute is not None and len(usage.requests) >= key.requests_per_minute:
            raise _limited("requests", key.requests_per_minute, usage.requests[0] + WINDOW_S - now)
        usage.requests.append(now)
        if key.tokens_per_minute is not None and usage.token_total >= key.tokens_per_minute:
            raise _limited("tokens", key.tokens_per_minute, usage.charges[0].at + WINDOW_S - now)

    def reserve(self, key: APIKeyConfig, prompt_tokens: int, max_tokens: int | None) -> TokenCharge:
        """Reserve what a request may use, or a 429 if that does not fit the key's limit.

        Without ``max_tokens`` a key with a token limit reserves (and its request is held
        to, through ``completion_budget``) at most DEFAULT_COMPLETION_RESERVATION tokens of
        answer, so no request can use more than it reserved.
        """
        limit = key.tokens_per_minute
        if limit is None:
            return TokenCharge(self._now(), 0)  # nothing to count against
        completion = DEFAULT_COMPLETION_RESERVATION if max_tokens is None else max_tokens
        wanted = prompt_tokens + completion
        if max_tokens is None and wanted > limit:
            completion = limit - prompt_tokens  # what is left of the limit for the answer
            wanted = limit
        if wanted > limit or completion < 1:
            raise GatewayError(
                429,
                f"Request too large: it may use up to {prompt_tokens + max(completion, 1)} "
                f"tokens (its messages and max_tokens), more than this API key's limit of "
                f"{limit} tokens per minute. Lower max_tokens or shorten the messages.",
                type="tokens",
                code="rate_limit_exceeded",
            )
        now = self._now()
        usage = self._of(key)
        if usage.token_total + wanted > limit:
            retry = usage.charges[0].at + WINDOW_S - now if usage.charges else WINDOW_S
            raise _limited("tokens", limit, retry)
        charge = TokenCharge(now, wanted, completion_budget=None if max_tokens else completion)
        usage.charges.append(charge)
        usage.token_total += wanted
        return charge

    def settle(self, key: APIKeyConfig, charge: TokenCharge, used: int | None) -> None:
        """Replace a reservation with what the request used (``None``: unknown, keep it)."""
        if charge.settled:
            return
        charge.settled = True
        if used is None or key.tokens_per_minute is None:
            return
        usage = self._of(key)
        if charge in usage.charges:  # still inside the window
            usage.token_total += used - charge.tokens
        charge.tokens = used

    def enter(self, key: APIKeyConfig) -> None:
        """Take one of the key's in-flight places; a 429 when all are taken."""
        limit = key.max_in_flight if key.max_in_flight is not None else self._default_in_flight
        usage = self._usage.setdefault(key.name, _Usage())
        if usage.in_flight >= limit:
            raise GatewayError(
                429,
                f"Too many concurrent requests: this API key may have {limit} requests in "
                "flight at once. Retry when one of them has finished.",
                type="requests",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        usage.in_flight += 1

    def leave(self, key: APIKeyConfig) -> None:
        usage = self._usage.get(key.name)
        if usage is not None and usage.in_flight > 0:
            usage.in_flight -= 1
