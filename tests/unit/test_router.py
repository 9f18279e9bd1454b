"""Router behaviour with scripted upstreams (a unit test of routing alone)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.config import RoutingConfig
from gateway.upstreams.base import Operation, SealedWeights, Tenant, UpstreamError, Weights
from gateway.upstreams.router import Group, Member, NoUpstream, Router


class ScriptedUpstream:
    def __init__(self, name: str, failures: list[UpstreamError | None] | None = None) -> None:
        self.name = name
        self.model = name
        self.failures = list(failures or [])
        self.calls = 0
        self.healthy_probe = True

    def _next_failure(self) -> UpstreamError | None:
        self.calls += 1
        return self.failures.pop(0) if self.failures else None

    async def complete(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> dict[str, Any]:
        failure = self._next_failure()
        if failure:
            raise failure
        return {"served_by": self.name, "model": body["model"]}

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        body: dict[str, Any],
        *,
        request_id: str,
        tenant: Tenant | None = None,
    ) -> AsyncIterator[Any]:
        failure = self._next_failure()
        if failure:
            raise failure

        async def events() -> AsyncIterator[dict[str, Any]]:
            yield {"served_by": self.name}
            yield {"done": True}

        yield events()

    async def probe(self) -> bool:
        return self.healthy_probe

    async def close(self) -> None:
        pass


def down() -> UpstreamError:
    return UpstreamError("down", retryable=True)


def router(
    groups: dict[str, list[ScriptedUpstream]], fallback: dict[str, str] | None = None, **config: Any
) -> Router:
    return Router(
        {
            name: Group(name, [Member(u) for u in ups], (fallback or {}).get(name))  # type: ignore[arg-type]
            for name, ups in groups.items()
        },
        RoutingConfig(**config),
    )


def test_failure_before_output_is_retried_on_another_member() -> None:
    a, b = ScriptedUpstream("a", [down()]), ScriptedUpstream("b")
    r = router({"m": [a, b]})
    results = [
        asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))[0]["served_by"]
        for _ in range(2)
    ]
    assert "b" in results
    assert a.calls + b.calls == 3


def test_client_errors_are_not_retried() -> None:
    bad = UpstreamError("bad", retryable=False, status=400, body={"error": {}})
    a, b = ScriptedUpstream("a", [bad]), ScriptedUpstream("b", [bad])
    r = router({"m": [a, b]})
    with pytest.raises(UpstreamError):
        asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert a.calls + b.calls == 1


def test_fallback_group_serves_when_every_member_fails() -> None:
    primary, backup = ScriptedUpstream("p", [down(), down()]), ScriptedUpstream("b")
    r = router({"m": [primary], "n": [backup]}, fallback={"m": "n"})
    result, routed = asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert result["served_by"] == "b" and routed.model_group == "n"
    assert result["model"] == "b"  # the fallback upstream's own model id


def test_repeated_failures_take_a_member_out_until_a_probe_succeeds() -> None:
    a = ScriptedUpstream("a", [down(), down()])
    r = router({"m": [a]}, failure_threshold=2, retries=0, probe_interval_s=0.01, cooldown_s=0.01)
    for _ in range(2):
        with pytest.raises(NoUpstream):
            asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert r.ready() == {"m": False}

    async def probe_back() -> None:
        r.start_probing()
        await asyncio.sleep(0.1)
        await r.close()

    asyncio.run(probe_back())
    assert r.ready() == {"m": True}


def test_least_outstanding_member_is_preferred() -> None:
    a, b = ScriptedUpstream("a"), ScriptedUpstream("b")
    r = router({"m": [a, b]})
    r.groups["m"].members[0].outstanding = 5
    for _ in range(3):
        assert (
            asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))[0]["served_by"]
            == "b"
        )


def test_stream_failing_before_first_chunk_moves_on() -> None:
    a, b = ScriptedUpstream("a", [down()]), ScriptedUpstream("b")
    r = router({"m": [a, b]})

    async def first_two() -> list[dict[str, Any]]:
        out = []
        for _ in range(2):
            async with r.stream("m", "chat/completions", {}, request_id="x") as (events, _):
                out.append(await anext(events))
        return out

    served = [e["served_by"] for e in asyncio.run(first_two())]
    assert "b" in served
    assert all(m.outstanding == 0 for m in r.groups["m"].members)


@pytest.mark.parametrize(
    "answer",
    [
        UpstreamError("queue full", retryable=True, status=503, body={"error": {}}),
        UpstreamError("overloaded", retryable=True, status=429, body={"error": {}}),
        UpstreamError("this request broke it", retryable=True, status=500, body={"error": {}}),
    ],
)
def test_overload_and_request_caused_errors_never_take_a_member_out(answer: UpstreamError) -> None:
    a = ScriptedUpstream("a", [answer] * 10)
    r = router({"m": [a]}, failure_threshold=2, retries=0)
    for _ in range(10):
        with pytest.raises(NoUpstream):
            asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert r.ready() == {"m": True}
    assert (
        asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))[0]["served_by"] == "a"
    )


def test_a_timeout_counts_only_when_the_upstream_then_fails_its_probe() -> None:
    def timed_out() -> UpstreamError:
        return UpstreamError("timed out", retryable=False, timed_out=True)

    async def three_timeouts(r: Router) -> None:
        for _ in range(3):
            with pytest.raises(NoUpstream):
                await r.complete("m", "chat/completions", {}, request_id="x")
        await asyncio.sleep(0.05)  # the confirming probes

    alive = ScriptedUpstream("a", [timed_out() for _ in range(3)])
    r = router({"m": [alive]}, failure_threshold=2, retries=0)
    asyncio.run(three_timeouts(r))
    assert r.ready() == {"m": True}  # long requests, healthy upstream: stays in

    hung = ScriptedUpstream("b", [timed_out() for _ in range(3)])
    hung.healthy_probe = False
    r = router({"m": [hung]}, failure_threshold=2, retries=0)
    asyncio.run(three_timeouts(r))
    assert r.ready() == {"m": False}


def test_the_routed_answer_carries_the_weights_its_member_serves_now() -> None:
    a = ScriptedUpstream("a")
    served = [Weights("ab" * 32), Weights("ab" * 32, SealedWeights("cd" * 32, "ef" * 16, "kbs"))]
    member = Member(a, weights=lambda: served[0])  # type: ignore[arg-type]
    r = Router({"m": Group("m", [member])}, RoutingConfig())
    _, routed = asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert routed.weights == Weights("ab" * 32)
    served.pop(0)  # the engine restarted with other weights: the next answer says so
    _, routed = asyncio.run(r.complete("m", "chat/completions", {}, request_id="x"))
    assert routed.weights is not None and routed.weights.sealed is not None
    assert routed.weights.claim()["sealed"]["key_broker"] == "kbs"
    assert Member(a).weights() is None  # type: ignore[arg-type]
