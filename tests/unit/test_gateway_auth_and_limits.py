import pytest

from gateway.auth import APIKeyStore, hash_key
from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from gateway.ratelimit import RateLimiter


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
    limiter.admit(limited)
    clock.now += 10
    limiter.admit(limited)
    with pytest.raises(GatewayError) as info:
        limiter.admit(limited)
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "50"
    clock.now += 50.5
    limiter.admit(limited)


def test_tokens_per_minute_limit_uses_charged_usage() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limited = key("a", "alpha", tokens_per_minute=100)
    limiter.admit(limited)
    limiter.charge(limited, 120)
    with pytest.raises(GatewayError) as info:
        limiter.admit(limited)
    assert info.value.type == "tokens"
    clock.now += 61
    limiter.admit(limited)
