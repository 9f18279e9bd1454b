"""The Redis backend against a real redis-server: the in-memory semantics, held by several
replicas at once."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import GatewayError
from gateway.shared_state.base import Admission
from tests.shared_state.conftest import Clock, everything_stored, flush, key, replica
from tests.support.redis_process import RedisProcess


@pytest.fixture(autouse=True)
def empty(redis_server: RedisProcess) -> None:
    asyncio.run(flush(redis_server))


async def refused(call: object) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await call  # type: ignore[misc]
    return info.value


def test_requests_per_minute_slide_with_the_callers_clock(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a:
            limited = key("a", "alpha", requests_per_minute=2)
            await a.limiter.admit(limited)
            clock.now += 10
            await a.limiter.admit(limited)
            error = await refused(a.limiter.admit(limited))
            assert error.status == 429 and error.headers["Retry-After"] == "50"
            assert error.code == "rate_limit_exceeded" and error.type == "requests"
            clock.now += 50.5
            await a.limiter.admit(limited)

    asyncio.run(scenario())


def test_a_concurrent_burst_on_two_replicas_gets_exactly_the_limit(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            limited = key("a", "alpha", requests_per_minute=25)
            calls = [(a if i % 2 else b).limiter.admit(limited) for i in range(200)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(r is None for r in results) == 25
            assert all(isinstance(r, GatewayError) and r.status == 429 for r in results if r)

    asyncio.run(scenario())


def test_a_burst_of_begins_on_two_replicas_admits_exactly_the_limit(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            limited = key("a", "alpha", requests_per_minute=25, max_in_flight=1000)
            calls = [(a if i % 2 else b).limiter.begin(limited, 10, 10) for i in range(200)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert sum(isinstance(r, Admission) for r in results) == 25
            refusals = [r for r in results if not isinstance(r, Admission)]
            assert all(isinstance(r, GatewayError) and r.type == "requests" for r in refusals)

    asyncio.run(scenario())


def test_tokens_reserved_on_one_replica_count_on_the_other_and_settle_back(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            limited = key("a", "alpha", tokens_per_minute=200)
            owners = [a if i % 2 else b for i in range(10)]
            bursts = [owner.limiter.begin(limited, 20, 64) for owner in owners]
            results = await asyncio.gather(*bursts, return_exceptions=True)
            held = [
                (o, r) for o, r in zip(owners, results, strict=True) if isinstance(r, Admission)
            ]
            assert len(held) == 2
            refusals = [r for r in results if not isinstance(r, Admission)]
            assert all(isinstance(r, GatewayError) and r.type == "tokens" for r in refusals)
            # Settling (by the replica that reserved) gives the difference back to everyone.
            for owner, charge in held:
                owner.limiter.finish(charge, 30)
            await a.limiter.flush()
            await b.limiter.flush()
            await b.limiter.begin(limited, 20, 64)
            await refused(a.limiter.begin(limited, 20, 64))
            # Tokens used up: admit says so too (nothing left to reserve).
            await a.limiter.begin(limited, 20, 36)  # 60 + 84 + 56: all 200 used
            error = await refused(a.limiter.admit(limited))
            assert error.type == "tokens"
            clock.now += 61  # charges expire with the window
            await a.limiter.admit(limited)
            await a.limiter.begin(limited, 20, 64)

    asyncio.run(scenario())


def test_a_finish_nobody_awaited_is_applied_once_the_writer_flushes(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a, replica(redis_server, Clock()) as b:
            limited = key("a", "alpha", tokens_per_minute=200, max_in_flight=2)
            first = await a.limiter.begin(limited, 20, 80)
            await a.limiter.begin(limited, 10, 10)
            await refused(b.limiter.begin(limited, 1, 1))  # both places taken
            a.limiter.finish(first, 10)  # returns at once: nothing sent yet
            a.limiter.finish(first, 10)  # once per admission
            await a.limiter.flush()
            # The other replica sees the place back and 90 of the 100 tokens returned.
            await b.limiter.begin(limited, 20, 150)  # 10 + 20 + 170 = 200
            await refused(b.limiter.begin(limited, 1, 1))

    asyncio.run(scenario())


def test_a_refused_place_keeps_the_request_counted_and_reserves_nothing(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a:
            limited = key(
                "a", "alpha", requests_per_minute=3, tokens_per_minute=200, max_in_flight=1
            )
            held = await a.limiter.begin(limited, 20, 64)
            error = await refused(a.limiter.begin(limited, 20, 64))
            assert error.code == "concurrency_limit_exceeded"
            a.limiter.finish(held, 84)
            await a.limiter.begin(limited, 20, 64)  # 168: the refused one held no tokens
            error = await refused(a.limiter.admit(limited))  # but it was counted: 3 of 3
            assert error.type == "requests"
            # Too large for the limit: counted, then told so; a used-up limit answers first.
            error = await refused(a.limiter.begin(key("b", "beta", tokens_per_minute=10), 5, 50))
            assert "Request too large" in error.message
            error = await refused(a.limiter.begin(limited, 20, 500))
            assert error.type == "requests"

    asyncio.run(scenario())


def test_unknown_usage_keeps_the_reservation_and_large_requests_are_told_so(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a:
            limited = key("a", "alpha", tokens_per_minute=200)
            charge = await a.limiter.begin(limited, 20, 100)
            a.limiter.finish(charge, None)
            await a.limiter.flush()
            await refused(a.limiter.begin(limited, 20, 100))
            error = await refused(a.limiter.begin(limited, 20, 500))
            assert "Request too large" in error.message
            budget = await a.limiter.begin(key("b", "beta", tokens_per_minute=300), 100, None)
            assert budget.completion_budget == 200 and budget.tokens == 300
            free = await a.limiter.begin(key("c", "gamma"), 100, None)
            assert free.tokens == 0 and free.completion_budget is None

    asyncio.run(scenario())


def test_in_flight_places_are_shared_and_a_dead_replicas_places_are_dropped(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock, liveness_ttl_s=1) as a:
            async with replica(redis_server, clock, liveness_ttl_s=1) as b:
                limited, other = key("a", "alpha", max_in_flight=3), key("b", "beta")
                first = await a.limiter.begin(limited, 1, 1)
                await a.limiter.begin(limited, 1, 1)
                await b.limiter.begin(limited, 1, 1)
                error = await refused(a.limiter.begin(limited, 1, 1))
                assert error.code == "concurrency_limit_exceeded"
                await b.limiter.begin(other, 1, 1)  # another key is unaffected
                a.limiter.finish(first, 2)
                await a.limiter.flush()
                await b.limiter.begin(limited, 1, 1)
                await refused(b.limiter.begin(limited, 1, 1))
            # b stops (no heartbeat): once its liveness lapses its places are no one's.
            await asyncio.sleep(1.2)
            held = [await a.limiter.begin(limited, 1, 1) for _ in range(2)]
            await refused(a.limiter.begin(limited, 1, 1))
            # A finish given again gives nothing more back (one place of a's is still held).
            for _ in range(3):
                for admission in held:
                    a.limiter.finish(admission, 2)
            await a.limiter.flush()
            for _ in range(2):
                await a.limiter.begin(limited, 1, 1)
            await refused(a.limiter.begin(limited, 1, 1))

    asyncio.run(scenario())


def test_the_guard_counts_failures_from_every_replica(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            await a.guard.failed("203.0.113.7")
            await b.guard.failed("203.0.113.7")
            await a.guard.check("203.0.113.7")
            await b.guard.failed("203.0.113.7")
            error = await refused(a.guard.check("203.0.113.7"))
            assert error.status == 429 and error.headers["Retry-After"] == "60"
            await b.guard.check("198.51.100.1")  # another address is unaffected
            clock.now += 61
            await a.guard.check("203.0.113.7")

    asyncio.run(scenario())


def test_a_token_stored_by_one_replica_is_read_from_another_by_its_owner_only(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a, replica(redis_server, Clock()) as b:
            owner, stranger = "a" * 64, "b" * 64
            assert await a.tokens.put("chatcmpl-1", owner, "header.payload.sig")
            assert await b.tokens.get("chatcmpl-1", owner) == "header.payload.sig"
            assert await b.tokens.get("chatcmpl-1", stranger) is None
            assert not await b.tokens.put("chatcmpl-1", stranger, "other")  # never replaced
            assert await a.tokens.get("chatcmpl-1", owner) == "header.payload.sig"
            assert await a.tokens.get("chatcmpl-unknown", owner) is None

    asyncio.run(scenario())


def test_redis_holds_no_key_names_keys_or_client_addresses(redis_server: RedisProcess) -> None:
    secret, name, address = "sk-secret-0123456789", "acme-production", "203.0.113.77"

    async def scenario() -> bytes:
        async with replica(redis_server, Clock()) as a:
            limited = key(name, secret, requests_per_minute=5, tokens_per_minute=5000)
            await a.limiter.admit(limited)
            charge = await a.limiter.begin(limited, 10, 10)
            a.limiter.finish(charge, 12)
            await a.limiter.flush()
            await a.guard.failed(address)
            await a.tokens.put("chatcmpl-9", limited.sha256, "t.o.k")
            return await everything_stored(redis_server)

    stored = asyncio.run(scenario())
    assert b"rl:" in stored and b"af:" in stored and b"tok:" in stored  # it did write
    for forbidden in (secret, name, address, key(name, secret).sha256):
        assert forbidden.encode() not in stored, forbidden
