"""Fifty streaming clients drop at once: every sequence is cancelled and every slot freed."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.gateway.conftest import KEY, MODEL, RunningGateway

CLIENTS = 50
NEVER_ENDING = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}


def test_fifty_dropped_streams_free_their_slots_within_a_few_steps(
    gateway: RunningGateway,
) -> None:
    gateway.wait_engine_idle()
    before = gateway.engine_health()

    async def scenario() -> float:
        limits = httpx.Limits(max_connections=CLIENTS + 5)
        async with httpx.AsyncClient(
            base_url=gateway.url,
            verify=gateway.tls_context(),
            limits=limits,
            timeout=60,
            headers={"Authorization": f"Bearer {KEY}"},
        ) as client:
            body = {
                "model": MODEL,
                "stream": True,
                **NEVER_ENDING,
                "messages": [{"role": "user", "content": "Count to a thousand."}],
            }
            requests = [
                client.build_request("POST", "/v1/chat/completions", json=body)
                for _ in range(CLIENTS)
            ]
            sends = [asyncio.create_task(client.send(r, stream=True)) for r in requests]
            # The first responses stream; the rest wait in the engine's queue.
            deadline = time.monotonic() + 60
            while True:
                health = gateway.engine_health()
                if health["slots"]["busy"] == health["slots"]["total"]:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            dropped_at = time.monotonic()
            for task in sends:
                task.cancel()
            responses = await asyncio.gather(*sends, return_exceptions=True)
            for response in responses:
                if isinstance(response, httpx.Response):
                    await response.aclose()
            return dropped_at

    asyncio.run(scenario())
    steps_at_drop = gateway.engine_health()["decode_steps"]
    health = gateway.wait_engine_idle(timeout=30)
    assert health["slots"]["busy"] == 0 and health["queue"]["depth"] == 0
    assert health["requests"]["cancelled"] - before["requests"]["cancelled"] >= 1
    # Freed within a few decode steps of the drop, not after 400 tokens each.
    assert health["decode_steps"] - steps_at_drop <= 10
