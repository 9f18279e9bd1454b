"""Slices of a key's limits leased to each replica (``leases``), against a real redis-server:
far from a limit most requests make no round trip; the sum across replicas never exceeds
a limit; unused slices go back; near a limit every request is decided by Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway.errors import GatewayError
from gateway.shared_state.base import Admission, SharedStateUnavailable
from gateway.shared_state.leases import Grant, KeyLease
from tests.shared_state.conftest import PREFIX, Clock, Replica, flush, key, replica
from tests.support.redis_process import RedisProcess


@pytest.fixture(autouse=True)
def empty(redis_server: RedisProcess) -> None:
    asyncio.run(flush(redis_server))


async def lease_calls(server: RedisProcess) -> int:
    """How many EVALSHA calls the server has run so far."""
    client = Redis(host="127.0.0.1", port=server.port, password=server.password)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def stored_totals(server: RedisProcess, kid: str) -> tuple[int, int]:
    client = Redis(host="127.0.0.1", port=server.port, password=server.password)
    try:
        requests = await client.get(f"{PREFIX}rl:{kid}:rt")
        tokens = await client.get(f"{PREFIX}rl:{kid}:tt")
    finally:
        await client.aclose()
    return int(requests or 0), int(tokens or 0)


def test_far_from_the_limit_most_requests_make_no_round_trip(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a:
            roomy = key(
                "a", "alpha", requests_per_minute=100_000, tokens_per_minute=10**8, max_in_flight=64
            )
            before = await lease_calls(redis_server)
            for _ in range(500):
                admission = await a.limiter.begin(roomy, 50, 20)
                a.limiter.finish(admission, 40)
            await a.limiter.flush()
            calls = await lease_calls(redis_server) - before
            assert calls < 60, calls  # a slice grows with demand: a few dozen grants at most

    asyncio.run(scenario())


def test_a_limit_holds_across_replicas_while_they_lease(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with (
            replica(redis_server, clock) as a,
            replica(redis_server, clock) as b,
            replica(redis_server, clock) as c,
        ):
            limited = key("a", "alpha", requests_per_minute=600, max_in_flight=10**6)
            admitted = 0
            refused = 0
            for round_ in range(40):  # bursts on all three, until the limit is reached
                owners = [a, b, c]
                calls = [owners[i % 3].limiter.begin(limited, 1, 1) for i in range(30 + round_)]
                for result in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(result, Admission):
                        admitted += 1
                    else:
                        assert isinstance(result, GatewayError) and result.type == "requests"
                        refused += 1
            assert admitted <= 600 and refused > 0
            # What a replica holds unused goes back when it stops (or its lease ends); then
            # exactly the rest of the limit is left to take, and no more.
            for owner in (a, b):
                await owner.limiter.close()
            rest = [c.limiter.admit(limited) for _ in range(700)]
            results = await asyncio.gather(*rest, return_exceptions=True)
            await c.limiter.close()
            assert admitted + sum(r is None for r in results) <= 600
            kid = c.limiter._lease(limited).kid
            requests, _ = await stored_totals(redis_server, kid)
            assert requests <= 600

    asyncio.run(scenario())


def test_an_unused_slice_goes_back_at_its_deadline(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with (
            replica(redis_server, clock, lease_s=0.2) as a,
            replica(redis_server, clock, lease_s=0.2) as b,
        ):
            limited = key("a", "alpha", requests_per_minute=400, tokens_per_minute=10**7)
            for _ in range(40):  # demand makes the slices grow
                a.limiter.finish(await a.limiter.begin(limited, 10, 10), 15)
            kid = a.limiter._lease(limited).kid
            leased, _ = await stored_totals(redis_server, kid)
            assert leased > 40  # a slice beyond what was used
            clock.now += 0.25
            await asyncio.sleep(0.3)  # the deadline timer gives the unused part back
            await a.limiter.flush()
            requests, tokens = await stored_totals(redis_server, kid)
            assert requests == 40 and tokens == 40 * 15
            # b can now take everything a did not use.
            taken = [b.limiter.admit(limited) for _ in range(400)]
            results = await asyncio.gather(*taken, return_exceptions=True)
            assert sum(r is None for r in results) == 360

    asyncio.run(scenario())


def test_places_leased_in_slices_never_exceed_the_limit(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            limited = key("a", "alpha", max_in_flight=200)
            held: list[tuple[Replica, Admission]] = []
            for _ in range(10):
                owners = [(a, b)[i % 2] for i in range(60)]
                calls = [owner.limiter.begin(limited, 1, 1) for owner in owners]
                results = await asyncio.gather(*calls, return_exceptions=True)
                for owner, result in zip(owners, results, strict=True):
                    if isinstance(result, Admission):
                        held.append((owner, result))
                    else:
                        assert isinstance(result, GatewayError)
                        assert result.code == "concurrency_limit_exceeded"
            assert 150 <= len(held) <= 200  # what a replica holds spare is bounded
            for owner, admission in held:
                owner.limiter.finish(admission, 1)
            await a.limiter.close()
            await b.limiter.close()
            again = [a.limiter.begin(limited, 1, 1) for _ in range(250)]
            results = await asyncio.gather(*again, return_exceptions=True)
            assert 150 <= sum(isinstance(r, Admission) for r in results) <= 200


def test_tokens_drawn_from_a_slice_settle_to_their_usage() -> None:
    lease = KeyLease("kid", 1.0)
    grant = Grant("g", deadline=10.0, requests=100, tokens=10_000)
    assert lease.granted(grant, 1, 100) is None  # the first slice replaces nothing
    assert lease.local(5.0, 1, 100) and grant.tokens_used == 100
    assert not lease.local(5.0, 1, 10_000)  # more than is left: Redis decides
    assert not lease.local(10.0, 1, 1)  # past its deadline: nothing more is drawn
    newer = Grant("h", deadline=11.0, requests=50, tokens=5_000)
    assert lease.granted(newer, 1, 50) is grant and grant.retired  # settled by the caller
    assert lease.expire(10.5) is None and lease.expire(11.0) is newer


def test_the_guard_refuses_a_client_locked_by_another_replica_once_it_reads_the_set(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with (
            replica(redis_server, clock, guard_refresh_s=60) as a,
            replica(redis_server, clock, guard_refresh_s=60) as b,
        ):
            await a.guard.check("203.0.113.9")  # the first check reads the set
            for _ in range(3):
                await b.guard.failed("203.0.113.9")
            with pytest.raises(GatewayError):
                await b.guard.check("203.0.113.9")  # b caused the lock: it knows at once
            await a.guard.check("203.0.113.9")  # a has not read the set again yet
            await a.guard.refresh()
            with pytest.raises(GatewayError) as info:
                await a.guard.check("203.0.113.9")
            assert info.value.status == 429
            clock.now += 61
            await a.guard.check("203.0.113.9")

    asyncio.run(scenario())


def test_a_begin_that_fails_or_is_cancelled_gives_back_what_it_took(
    redis_server: RedisProcess,
) -> None:
    async def scenario() -> None:
        async with replica(redis_server, Clock()) as a:
            limited = key("a", "alpha", requests_per_minute=10, max_in_flight=64)
            first = await a.limiter.begin(limited, 10, 5)
            lease = a.limiter._lease(limited)
            assert lease.places > 1 and lease.in_use == 1  # a place taken locally next time
            client = Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password)
            try:  # Redis answers with an error (full): the request fails, its place comes back
                await client.config_set("maxmemory", "1")
                with pytest.raises(SharedStateUnavailable):
                    await a.limiter.begin(limited, 10, 5)
                assert lease.in_use == 1
                await client.config_set("maxmemory", "0")
                # Cancelled while waiting for its grant: the same.
                waiting = asyncio.ensure_future(a.limiter.begin(limited, 10, 5))
                await asyncio.sleep(0)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await a.limiter.flush()
                assert lease.in_use == 1
            finally:
                await client.config_set("maxmemory", "0")
                await client.aclose()
            a.limiter.finish(first, 5)
            assert lease.in_use == 0

    asyncio.run(scenario())


def test_resync_counts_the_places_granted_in_its_own_batch(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock, lease_s=5) as a:
            limited = key("a", "alpha", max_in_flight=64)

            async def resync_in_the_same_tick() -> None:
                await asyncio.sleep(0)
                await a.limiter.resync()

            held, _ = await asyncio.gather(
                a.limiter.begin(limited, 10, 5), resync_in_the_same_tick()
            )
            lease = a.limiter._lease(limited)
            client = Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password)
            try:
                stored = await client.hgetall(f"{PREFIX}inflight:{a.limiter.replica_id}")
            finally:
                await client.aclose()
            assert {int(v) for v in stored.values()} == {lease.places}
            a.limiter.finish(held, 5)

    asyncio.run(scenario())


def test_a_flood_of_locked_decoys_does_not_hide_a_new_lock(redis_server: RedisProcess) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with replica(redis_server, clock) as a, replica(redis_server, clock) as b:
            b.guard._max_locked = 5
            for n in range(8):  # decoys locked first
                for _ in range(3):
                    await a.guard.failed(f"2001:db8::{n}")
            clock.now += 1
            for _ in range(3):
                await a.guard.failed("198.51.100.7")
            await b.guard.refresh()
            for client in ("198.51.100.7", "2001:db8::0"):  # newest in the copy; oldest asked
                with pytest.raises(GatewayError):
                    await b.guard.check(client)
            await b.guard.check("192.0.2.1")

    asyncio.run(scenario())
