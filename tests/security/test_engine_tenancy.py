"""Tenant isolation inside a real engine: fair admission across API keys, a wait queue one key
cannot crowd, and a prompt cache that never tells one key what another sent (issue 13).

The gateway marks each request with ``x-gateway-tenant`` (an opaque id of the API key) and
``x-gateway-tenant-weight``; these tests send the headers directly to the engine's socket.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engine.conftest import MODEL, RunningEngine, start_engine, stop_engine

SLOTS = 2
QUEUE = 4
NEVER_ENDING: dict[str, Any] = {"max_tokens": 400, "logit_bias": {"0": -100, "2": -100}}
SHARED_SYSTEM = (
    "You are the assistant of the Example Corporation help desk. Answer questions about "
    "printers, laptops, e-mail accounts and the VPN politely, briefly and in plain English. "
    "If a question is about something else, say that you can only help with IT matters."
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("tenancy")
    shared = tmp / "shared-system.txt"
    shared.write_text(SHARED_SYSTEM, encoding="utf-8")
    running = start_engine(
        tmp,
        "--slots",
        str(SLOTS),
        "--queue",
        str(QUEUE),
        "--ctx-per-slot",
        "512",
        "--shareable-prefix-file",
        str(shared),
        "--log-level",
        "info",
        # Admission order and queue shares alone; the slot kept free for recently active
        # tenants has its own engine below.
        "--tenant-active-s",
        "0",
    )
    try:
        yield running
    finally:
        stop_engine(running)


@pytest.fixture(scope="module")
def reserving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("reserving")
    running = start_engine(
        tmp, "--slots", str(SLOTS), "--queue", str(QUEUE), "--ctx-per-slot", "512"
    )
    try:
        yield running
    finally:
        stop_engine(running)


def test_a_recently_active_tenant_finds_a_slot_kept_free_for_it(reserving: RunningEngine) -> None:
    flooder, returning = new_tenant(), new_tenant()
    long_body = chat("Count from one to one thousand.", **NEVER_ENDING)

    async def scenario() -> list[str]:
        order: list[str] = []
        async with reserving.async_client() as client:
            # The returning tenant was here a moment ago (one short request).
            first = await client.post(
                "/v1/chat/completions",
                json=chat("Say hi.", max_tokens=2),
                headers=headers(returning),
            )
            assert first.status_code == 200
            floods = [Stream(client, f"A-{i}", flooder, long_body) for i in range(SLOTS + 2)]
            back = Stream(client, "B", returning, chat("Say hi.", max_tokens=3))
            try:
                for stream in floods:
                    assert (await stream.open(order)).status_code == 200
                # The flooder gets every slot but the one kept for the other tenant.
                await wait_for(
                    client,
                    lambda h: h["slots"]["busy"] == SLOTS - 1 and h["queue"]["depth"] == 3,
                    "a slot kept free",
                )
                assert (await back.open(order)).status_code == 200
                await asyncio.wait_for(back.done.wait(), timeout=120)  # no flood ended first
                health = (await client.get("/health")).json()
                assert health["requests"]["completed"] == 2  # its two; the flood still runs
                return order
            finally:
                for stream in [*floods, back]:
                    await stream.close()

    order = asyncio.run(scenario())
    assert "B" in order
    reserving.wait_idle(timeout=60)


def new_tenant() -> str:
    return uuid.uuid4().hex


def headers(tenant: str, weight: int | None = None) -> dict[str, str]:
    out = {"x-gateway-tenant": tenant}
    if weight is not None:
        out["x-gateway-tenant-weight"] = str(weight)
    return out


def chat(content: str, *, system: str | None = None, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": content})
    return {"model": MODEL, "messages": messages, **extra}


def cached_tokens(engine: RunningEngine, tenant: str, body: dict[str, Any]) -> int:
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body, headers=headers(tenant))
    assert response.status_code == 200, response.text
    count: int = response.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    return count


def shareable_prefix_lengths(engine: RunningEngine) -> list[int]:
    found = re.search(r"shareable prefixes \(tokens\): \[([0-9, ]*)\]", engine.log_path.read_text())
    assert found, "the engine did not log its shareable prefixes"
    return [int(n) for n in found.group(1).split(",") if n.strip()]


async def wait_for(client: httpx.AsyncClient, predicate: Any, what: str) -> dict[str, Any]:
    for _ in range(600):
        health: dict[str, Any] = (await client.get("/health")).json()
        if predicate(health):
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"engine never reached: {what}; last /health: {health}")


class Stream:
    """One open streaming request and the moment (in a shared order) it first made progress."""

    def __init__(self, client: httpx.AsyncClient, name: str, tenant: str, body: dict[str, Any]):
        self.name = name
        self._cm = client.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers(tenant)
        )
        self.response: httpx.Response | None = None
        self._reader: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    async def open(self, order: list[str]) -> httpx.Response:
        self.response = await self._cm.__aenter__()
        if self.response.status_code == 200:
            self._reader = asyncio.create_task(self._read(order))
        return self.response

    async def _read(self, order: list[str]) -> None:
        assert self.response is not None
        started = False
        async for line in self.response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            choice = (chunk.get("choices") or [{}])[0]
            progress = bool(choice.get("delta", {}).get("content")) or choice.get("finish_reason")
            if progress and not started:
                started = True
                order.append(self.name)
        self.done.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.response is not None:
            await self._cm.__aexit__(None, None, None)


def test_a_new_tenant_gets_the_next_free_slot_ahead_of_a_flooders_backlog(
    engine: RunningEngine,
) -> None:
    engine.wait_idle()
    flooder, newcomer = new_tenant(), new_tenant()
    long_body = chat("Count from one to one thousand.", **NEVER_ENDING)

    async def scenario() -> list[str]:
        order: list[str] = []
        async with engine.async_client() as client:
            running = [Stream(client, f"A-run-{i}", flooder, long_body) for i in range(SLOTS)]
            backlog = [Stream(client, f"A-queued-{i}", flooder, long_body) for i in range(3)]
            late = Stream(client, "B", newcomer, chat("Say hi.", max_tokens=3))
            streams = [*running, *backlog, late]
            try:
                for stream in running:
                    assert (await stream.open(order)).status_code == 200
                await wait_for(client, lambda h: h["slots"]["busy"] == SLOTS, "A holds every slot")
                for stream in backlog:
                    assert (await stream.open(order)).status_code == 200
                await wait_for(client, lambda h: h["queue"]["depth"] == 3, "A's backlog queued")
                assert (await late.open(order)).status_code == 200
                health = await wait_for(
                    client, lambda h: h["queue"]["depth"] == 4, "B queued behind A's backlog"
                )
                assert health["queue"]["tenants_waiting"] == 2
                assert flooder not in json.dumps(health) and newcomer not in json.dumps(health)
                # One of A's running requests goes away: the freed slot is B's, not A's backlog's.
                await running[0].close()
                await asyncio.wait_for(late.done.wait(), timeout=120)
                # After B the slot goes back to A's backlog, oldest first.
                await wait_for(client, lambda h: h["queue"]["depth"] == 2, "A's backlog resumed")
                for _ in range(2400):
                    if "A-queued-0" in order:
                        break
                    await asyncio.sleep(0.05)
                return order
            finally:
                for stream in streams:
                    await stream.close()

    order = asyncio.run(scenario())
    assert order.index("B") < order.index("A-queued-0")
    assert "A-queued-1" not in order and "A-queued-2" not in order
    engine.wait_idle(timeout=30)


def test_one_tenant_cannot_crowd_another_out_of_the_queue(engine: RunningEngine) -> None:
    engine.wait_idle()
    flooder, other = new_tenant(), new_tenant()
    long_body = chat("Count from one to one thousand.", **NEVER_ENDING)

    async def scenario() -> tuple[list[int], int, int]:
        order: list[str] = []
        async with engine.async_client() as client:
            streams: list[Stream] = []
            try:
                statuses = []
                for i in range(SLOTS + QUEUE + 3):  # more than the flooder may have waiting
                    stream = Stream(client, f"A-{i}", flooder, long_body)
                    streams.append(stream)
                    statuses.append((await stream.open(order)).status_code)
                    if i == SLOTS - 1:
                        await wait_for(client, lambda h: h["slots"]["busy"] == SLOTS, "A running")
                b = Stream(client, "B", other, chat("Say hi.", max_tokens=3))
                streams.append(b)
                b_status = (await b.open(order)).status_code
                again = Stream(client, "A-again", flooder, long_body)
                streams.append(again)
                again_status = (await again.open(order)).status_code
                return statuses, b_status, again_status
            finally:
                for stream in streams:
                    await stream.close()

    statuses, b_status, again_status = asyncio.run(scenario())
    assert statuses[: SLOTS + QUEUE] == [200] * (SLOTS + QUEUE)
    assert set(statuses[SLOTS + QUEUE :]) == {503}
    assert b_status == 200
    assert again_status == 503
    engine.wait_idle(timeout=30)


def test_prompt_cache_hits_only_for_the_tenant_that_sent_the_prompt(engine: RunningEngine) -> None:
    engine.wait_idle()
    alice, bob = new_tenant(), new_tenant()
    body = chat(f"My secret code word is {uuid.uuid4().hex[:8]}. Repeat it.", max_tokens=4)
    assert cached_tokens(engine, alice, body) == 0
    assert cached_tokens(engine, bob, body) == 0  # the exact prompt alice just sent
    assert cached_tokens(engine, alice, body) > 0  # alice's own repeat still hits
    # The anonymous tenant (no header) is a tenant like any other.
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_shareable_system_prompt_is_reused_across_tenants_but_nothing_past_it(
    engine: RunningEngine,
) -> None:
    engine.wait_idle()
    (shared,) = shareable_prefix_lengths(engine)
    assert shared > 20
    alice, bob, carol = new_tenant(), new_tenant(), new_tenant()
    body = chat(f"My printer {uuid.uuid4().hex[:8]} is jammed.", system=SHARED_SYSTEM, max_tokens=4)
    assert cached_tokens(engine, alice, body) == 0
    assert cached_tokens(engine, alice, body) > shared  # alice's own conversation
    # bob sends alice's exact prompt: only the operator's shareable part counts (and is reused).
    assert cached_tokens(engine, bob, body) == shared
    other = chat("How do I reset my VPN password?", system=SHARED_SYSTEM, max_tokens=4)
    assert cached_tokens(engine, carol, other) == shared
    # A system prompt that merely starts like the shared one shares nothing.
    near = chat("Hello.", system=SHARED_SYSTEM[:-20] + " Also about phones.", max_tokens=4)
    assert cached_tokens(engine, new_tenant(), near) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-gateway-tenant", "ABCDEF0123456789ABCDEF0123456789"),
        ("x-gateway-tenant", "abc"),
        ("x-gateway-tenant", "g" * 32),
        ("x-gateway-tenant", "a" * 33),
        ("x-gateway-tenant-weight", "0"),
        ("x-gateway-tenant-weight", "101"),
        ("x-gateway-tenant-weight", "1.5"),
        ("x-gateway-tenant-weight", "-1"),
        ("x-gateway-tenant-weight", "ten"),
    ],
)
def test_malformed_tenant_headers_are_400_naming_the_header(
    engine: RunningEngine, name: str, value: str
) -> None:
    sent = {"x-gateway-tenant": new_tenant(), name: value}
    with engine.client() as client:
        response = client.post("/v1/chat/completions", json=chat("hi", max_tokens=2), headers=sent)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name and name in error["message"]
    if len(value) > 3:
        assert value not in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_weights_are_accepted(engine: RunningEngine) -> None:
    with engine.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json=chat("hi", max_tokens=2),
            headers=headers(new_tenant(), weight=100),
        )
    assert response.status_code == 200, response.text


def test_engine_command_writes_shareable_prefixes_owner_only(tmp_path: Path) -> None:
    from enclave_backend.cli import build_parser, settings_from_args
    from gateway.config import LocalDeployment
    from gateway.engines import engine_command

    deployment = LocalDeployment(kind="local", shareable_prefixes=["Be brief.", "Line\r\nTwo"])
    socket = tmp_path / "engines" / "m-0-0.sock"
    command = engine_command(deployment, served_name="m", socket=socket, threads=1)
    paths = [Path(command[i + 1]) for i, a in enumerate(command) if a == "--shareable-prefix-file"]
    assert len(paths) == 2
    for path in paths:
        assert path.parent == socket.parent
        assert path.stat().st_mode & 0o777 == 0o600
    settings = settings_from_args(build_parser().parse_args(command[3:]))
    assert settings.shareable_prefixes == ("Be brief.", "Line\r\nTwo")
