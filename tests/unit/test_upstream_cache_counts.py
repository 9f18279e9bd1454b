"""Which upstreams may tell a client how much of its prompt was cached."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway.upstreams.base import TENANT_HEADER, Tenant
from gateway.upstreams.openai_http import OpenAIUpstream

USAGE = {"prompt_tokens": 30, "total_tokens": 31, "prompt_tokens_details": {"cached_tokens": 28}}


def upstream(forward_tenant: bool, seen: list[httpx.Request]) -> OpenAIUpstream:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if json.loads(request.content).get("stream"):
            chunk = {"id": "c", "choices": [], "usage": USAGE}
            body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={"id": "c", "choices": [], "usage": USAGE})

    return OpenAIUpstream(
        "u",
        base_url="http://upstream/v1",
        model="m",
        transport=httpx.MockTransport(answer),
        forward_tenant=forward_tenant,
    )


async def _both(up: OpenAIUpstream) -> list[dict[str, Any]]:
    tenant = Tenant("0" * 32, 2)
    done = await up.complete("chat/completions", {"model": "m"}, request_id="r", tenant=tenant)
    async with up.stream(
        "chat/completions", {"model": "m", "stream": True}, request_id="r", tenant=tenant
    ) as ev:
        chunks = [chunk async for chunk in ev]
    await up.close()
    return [done["usage"], chunks[0]["usage"]]


@pytest.mark.parametrize("forward_tenant", [True, False])
def test_cached_counts_reach_clients_only_from_upstreams_that_scope_them(
    forward_tenant: bool,
) -> None:
    seen: list[httpx.Request] = []
    usages = asyncio.run(_both(upstream(forward_tenant, seen)))
    for usage in usages:
        assert ("cached_tokens" in usage["prompt_tokens_details"]) is forward_tenant
    # And only such an upstream hears who the request is for.
    assert all((TENANT_HEADER in r.headers) is forward_tenant for r in seen)
