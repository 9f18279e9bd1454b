"""What every shared-state backend offers, and the facts both backends share.

Three interfaces, each with an in-memory implementation (``memory``) and a Redis one
(``redis_backend``), composed with a degradation policy in ``fallback``:

- ``Limiter``: a key's requests and tokens per minute (a sliding 60-second window, tokens
  reserved up front and settled afterwards) and its requests in flight, taken together at
  a request's start (``begin``, one round trip to Redis) and given back at its finish
  (``finish``, which never waits);
- ``FailureGuard``: failed authentications per client address per minute (brute force);
- ``TokenKeeper``: response tokens by completion id, readable only by the key that caused
  them.

Every method but ``Limiter.finish`` is a coroutine: the Redis backend does I/O, the memory
one never suspends.
A refusal is a ``GatewayError`` (OpenAI's error shape); a backend that cannot be reached
raises ``SharedStateUnavailable`` for the policy above it to handle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from gateway.shared_state.leases import Grant

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


class SharedStateUnavailable(Exception):
    """The shared store did not answer (refused, timed out, lost); the message is the
    exception's type only, never a value."""


def estimate_prompt_tokens(body: bytes) -> int:
    return len(body) + TEMPLATE_OVERHEAD_TOKENS


@dataclass(eq=False)
class Admission:
    """A request let in by ``Limiter.begin``: counted, its tokens reserved (``tokens`` at
    ``at``, settled by ``finish``) and one of its key's places in flight taken.

    ``grant`` is the Redis backend's grant its tokens were drawn from (None: none there);
    ``local``: taken in this replica's memory while the store was unreachable.
    """

    key: APIKeyConfig
    at: float
    tokens: int
    # The most answer tokens the request may ask its upstream for when the client set none.
    completion_budget: int | None = None
    grant: Grant | None = None
    local: bool = False
    finished: bool = False


TokenCharge = Admission  # the name the request's exchange knows it by


@dataclass(frozen=True)
class Reservation:
    """What a request reserves: ``wanted`` tokens, ``completion`` of them for its answer."""

    wanted: int
    completion: int
    budget: int | None  # completion_budget of the charge (None: the client set max_tokens)


def plan_reservation(limit: int, prompt_tokens: int, max_tokens: int | None) -> Reservation:
    """What to reserve under ``limit``, or a 429 if the request can never fit it.

    Without ``max_tokens`` a key with a token limit reserves (and its request is held to,
    through ``completion_budget``) at most DEFAULT_COMPLETION_RESERVATION tokens of answer,
    so no request can use more than it reserved.
    """
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
    return Reservation(wanted, completion, None if max_tokens else completion)


def rate_limited(kind: str, limit: int, retry_after: float) -> GatewayError:
    seconds = max(1, math.ceil(retry_after))
    return GatewayError(
        429,
        f"Rate limit reached: {limit} {kind} per minute for this API key. Try again in {seconds}s.",
        type=kind,
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


def too_many_in_flight(limit: int) -> GatewayError:
    return GatewayError(
        429,
        f"Too many concurrent requests: this API key may have {limit} requests in "
        "flight at once. Retry when one of them has finished.",
        type="requests",
        code="concurrency_limit_exceeded",
        headers={"Retry-After": "1"},
    )


def too_many_failures(retry_after: float) -> GatewayError:
    retry = max(1, math.ceil(retry_after))
    return GatewayError(
        429,
        f"Too many failed authentication attempts from this address; try again in {retry}s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry)},
    )


def in_flight_limit(key: APIKeyConfig, default: int) -> int:
    return key.max_in_flight if key.max_in_flight is not None else default


class Limiter(Protocol):
    """Per-key limits. Every authenticated request is counted, once: by ``begin`` when it
    gets that far, else by ``admit``."""

    async def admit(self, key: APIKeyConfig) -> None:
        """Count a request refused before ``begin`` (invalid, a model it may not use); a 429
        (which then wins) when its requests per minute are used up, or its tokens are."""
        ...

    async def begin(
        self, key: APIKeyConfig, prompt_tokens: int, max_tokens: int | None
    ) -> Admission:
        """Count a request, reserve what it may use and take one of its key's places in
        flight, atomically: a 429 for the first that does not fit, in that order (requests
        per minute, tokens, a request too large for the limit, places); the request is
        counted whenever its requests per minute let it in."""
        ...

    def finish(self, admission: Admission, used: int | None) -> None:
        """Give the place back and settle the reservation to ``used`` (``None``: unknown,
        keep it), without waiting: applied in the background (once per admission)."""
        ...

    async def flush(self) -> None:
        """Wait until every ``finish`` so far is applied (or given up on)."""
        ...


class FailureGuard(Protocol):
    """Refuses a client address for a while after too many failed authentications."""

    async def check(self, client: str) -> None:
        """A 429 with Retry-After while ``client`` has used up its failures."""
        ...

    async def failed(self, client: str) -> None:
        """Count one failed authentication from ``client``."""
        ...


class TokenKeeper(Protocol):
    """Response tokens by completion id, each readable only by its ``owner`` (a key digest).

    An id is stored once and never overwritten: ids are the gateway's own, and a second
    writer for one id would be a bug or an attack.
    """

    async def put(self, completion_id: str, owner: str, token: str) -> bool:
        """Keep ``token``; False (and nothing changed) if the id is already taken."""
        ...

    async def get(self, completion_id: str, owner: str) -> str | None:
        """The token if ``owner`` caused it; else None, as for an unknown id."""
        ...
