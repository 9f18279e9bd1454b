import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from gateway.auth import APIKeyStore, hash_key
from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from gateway.ratelimit import RateLimiter

T = TypeVar("T")


def run(call: Coroutine[Any, Any, T]) -> T:
    """One limiter call to its end (the limiter's start is async)."""
    return asyncio.run(call)


def key(name: str, secret: str, **extra: object) -> APIKeyConfig:
    return APIKeyConfig(name=name, sha256=hash_key(secret), **extra)


def test_known_key_authenticates_and_others_get_401() -> None:
    store = APIKeyStore([key("a", "alpha"), key("b", "beta")])
    assert store.authenticate("Bearer beta").name == "b"
    for header in (None, "", "Bearer", "Basic beta", "Bearer gamma"):
        with pytest.raises(GatewayError) as info:
            store.authenticate(header)
        assert info.value.status == 401


def test_revoked_key_is_refused() -> None:
    store = APIKeyStore([key("a", "alpha", revoked=True)])
    with pytest.raises(GatewayError):
        store.authenticate("Bearer alpha")


def test_model_allow_list_answers_404() -> None:
    narrow = key("a", "alpha", models=["m1"])
    APIKeyStore.authorize(narrow, "m1", known=True)
    with pytest.raises(GatewayError) as info:
        APIKeyStore.authorize(narrow, "m2", known=True)
    assert info.value.status == 404


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_limit_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limited = key("a", "alpha", requests_per_minute=2)
    run(limiter.admit(limited))
    clock.now += 10
    run(limiter.admit(limited))
    with pytest.raises(GatewayError) as info:
        run(limiter.admit(limited))
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "50"
    clock.now += 50.5
    run(limiter.admit(limited))


def test_tokens_are_reserved_up_front_so_a_burst_cannot_overrun_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limited = key("a", "alpha", tokens_per_minute=200)
    held = []
    refused = 0
    for _ in range(10):  # ten concurrent requests of 20 prompt + 64 completion tokens
        try:
            held.append(run(limiter.begin(limited, 20, 64)))
        except GatewayError as error:
            assert error.status == 429 and error.type == "tokens"
            refused += 1
    assert len(held) == 2 and refused == 8
    # Settling to the real usage gives the difference back.
    limiter.finish(held[0], 30)
    limiter.finish(held[1], 30)
    held.append(run(limiter.begin(limited, 20, 64)))
    clock.now += 61
    run(limiter.begin(limited, 20, 64))


def test_a_request_larger_than_the_whole_limit_is_told_so() -> None:
    limiter = RateLimiter(Clock())
    limited = key("a", "alpha", tokens_per_minute=100)
    with pytest.raises(GatewayError) as info:
        run(limiter.begin(limited, 20, 500))
    assert info.value.status == 429 and "Request too large" in info.value.message


def test_in_flight_places_are_per_key() -> None:
    limiter = RateLimiter(Clock(), default_max_in_flight=2)
    a, b = key("a", "alpha"), key("b", "beta", max_in_flight=1)
    first = run(limiter.begin(a, 10, None))
    run(limiter.begin(a, 10, None))
    with pytest.raises(GatewayError) as info:
        run(limiter.begin(a, 10, None))
    assert info.value.status == 429 and info.value.code == "concurrency_limit_exceeded"
    run(limiter.begin(b, 10, None))  # another key is unaffected
    limiter.finish(first, None)
    limiter.finish(first, None)  # once per admission
    run(limiter.begin(a, 10, None))
    with pytest.raises(GatewayError):
        run(limiter.begin(a, 10, None))


def test_a_request_refused_a_place_stays_counted_and_reserves_nothing() -> None:
    limiter = RateLimiter(Clock())
    limited = key("a", "alpha", requests_per_minute=3, tokens_per_minute=200, max_in_flight=1)
    run(limiter.begin(limited, 20, 64))
    with pytest.raises(GatewayError) as info:
        run(limiter.begin(limited, 20, 64))
    assert info.value.code == "concurrency_limit_exceeded"
    run(limiter.admit(limited))  # the third request: the refused one was counted
    with pytest.raises(GatewayError) as info:
        run(limiter.admit(limited))
    assert info.value.type == "requests"
    other = RateLimiter(Clock(), default_max_in_flight=1)
    tokens = key("b", "beta", tokens_per_minute=200)
    held = run(other.begin(tokens, 20, 64))
    with pytest.raises(GatewayError):
        run(other.begin(tokens, 20, 64))  # no place: its 84 tokens are not held
    other.finish(held, 84)
    run(other.begin(tokens, 20, 64))  # 84 + 84: had the refused one held its 84, 252 > 200


def test_a_limited_key_without_max_tokens_is_held_to_what_it_reserved() -> None:
    limiter = RateLimiter(Clock())
    limited = key("a", "alpha", tokens_per_minute=2000)
    charge = run(limiter.begin(limited, 100, None))
    assert charge.completion_budget == 1024 and charge.tokens == 1124
    small = key("b", "beta", tokens_per_minute=300)
    assert run(limiter.begin(small, 100, None)).completion_budget == 200  # what is left
    with pytest.raises(GatewayError):
        run(limiter.begin(key("c", "gamma", tokens_per_minute=50), 100, None))
    unlimited = run(limiter.begin(key("d", "delta"), 100, None))
    assert unlimited.completion_budget is None and unlimited.tokens == 0


def test_unknown_usage_keeps_the_reservation() -> None:
    limiter = RateLimiter(Clock())
    limited = key("a", "alpha", tokens_per_minute=200)
    charge = run(limiter.begin(limited, 20, 100))
    limiter.finish(charge, None)  # e.g. the client left mid-stream
    with pytest.raises(GatewayError):
        run(limiter.begin(limited, 20, 100))
