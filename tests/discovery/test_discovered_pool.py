"""Engines found through a real DNS server on loopback, whose records change during the test.

Three real engine processes listen on the same TLS port at 127.0.0.2, .3 and .4 (all
loopback), like pods behind a headless Service. The pool resolves the name, attests each
engine before it may take a prompt, takes in one added to DNS, drains one removed without
failing its request in flight, keeps its engines when DNS stops answering, and never admits
an engine whose evidence does not match the policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import RemoteAttestationConfig
from gateway.upstreams.discovered import DiscoveredPool, DiscoverySettings
from gateway.upstreams.dns_resolver import Nameserver
from gateway.upstreams.router import Group
from tests.gateway.conftest import free_port

ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
NAME = "engines.test"


@dataclass
class DnsServer:
    zone: Path
    port: int
    process: subprocess.Popen[bytes]

    def publish(self, *addresses: str) -> None:
        partial = self.zone.with_suffix(".partial")
        partial.write_text(json.dumps({NAME: list(addresses)}))
        os.replace(partial, self.zone)


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    tmp = tmp_path_factory.mktemp("dns")
    zone = tmp / "zone.json"
    zone.write_text("{}")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.dns_server",
            "--zone",
            str(zone),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    assert b"listening" in process.stdout.readline()
    try:
        yield DnsServer(zone, port, process)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Three engines on one port at three loopback addresses; yields the port."""
    tmp = tmp_path_factory.mktemp("engines")
    port = free_port()
    processes = []
    for address in ADDRESSES:
        command = [
            sys.executable, "-m", "enclave_backend", "--host", address, "--tls-port", str(port),
            "--tls-name", address, "--attestation", "simulated", "--slots", "2",
            "--ctx-per-slot", "512", "--model-name", "smollm2", "--threads", "1",
        ]  # fmt: skip
        log = (tmp / f"{address}.log").open("wb")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 90
        for address, process in zip(ADDRESSES, processes, strict=True):
            while b"enclave-backend ready" not in (tmp / f"{address}.log").read_bytes():
                assert process.poll() is None, (tmp / f"{address}.log").read_text()
                assert time.monotonic() < deadline, f"engine at {address} did not start"
                time.sleep(0.1)
        yield port
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def pool_for(dns: DnsServer, port: int, **policy: object) -> tuple[DiscoveredPool, Group]:
    settings = DiscoverySettings(
        dns_name=NAME,
        port=port,
        model="smollm2",
        attestation=RemoteAttestationConfig(allow_simulated=True, **policy),  # type: ignore[arg-type]
        resolve_interval_s=0.2,
        nameserver=Nameserver("127.0.0.1", dns.port),
        drain_timeout_s=60,
    )
    pool = DiscoveredPool("smollm2/discovered-0", settings)
    group = Group("smollm2", [])
    pool.attach(group)
    return pool, group


async def ready_addresses(group: Group, want: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ready = sorted(m.name.rsplit("/", 1)[1] for m in group.candidates(time.monotonic()))
        if len(ready) >= want or time.monotonic() > deadline:
            return ready
        await asyncio.sleep(0.1)


BODY = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Count to twenty."}],
    "max_tokens": 48,
}


def test_engines_join_after_attestation_and_leave_by_draining(dns: DnsServer, engines: int) -> None:
    async def scenario() -> None:
        pool, group = pool_for(dns, engines)
        try:
            dns.publish(*ADDRESSES[:2])
            await pool.refresh()
            assert pool.addresses == ADDRESSES[:2]
            assert await ready_addresses(group, 2) == ADDRESSES[:2]
            for member in group.members:
                assert (await member.upstream.complete("chat/completions", BODY, request_id="r"))[
                    "choices"
                ]

            # A third pod appears: it takes traffic only once attested.
            dns.publish(*ADDRESSES)
            await pool.refresh()
            third = pool.engine(ADDRESSES[2])
            assert third is not None and third.member in group.members
            assert await ready_addresses(group, 3) == ADDRESSES
            await pool.refresh()  # polls /health: free slots reported
            assert third.free_slots == 2
            figures = pool.figures()[f"smollm2/discovered-0/{ADDRESSES[2]}"]
            assert figures == {"busy": 0.0, "total": 2.0, "queue": 0.0}

            # The first pod leaves DNS while it serves a request: the request completes.
            first = pool.engine(ADDRESSES[0])
            assert first is not None
            first.member.outstanding += 1  # what the router does around a request
            in_flight = asyncio.create_task(
                first.upstream.complete("chat/completions", BODY, request_id="long")
            )
            await asyncio.sleep(0.05)
            dns.publish(*ADDRESSES[1:])
            await pool.refresh()
            assert first.draining
            assert ADDRESSES[0] not in await ready_addresses(group, 2)
            answer = await in_flight
            assert answer["choices"][0]["message"]["content"]
            first.member.outstanding -= 1
            deadline = time.monotonic() + 10
            while first.member in group.members:
                assert time.monotonic() < deadline, "the drained engine was not removed"
                await asyncio.sleep(0.1)
            assert pool.addresses == ADDRESSES[1:]
            assert f"smollm2/discovered-0/{ADDRESSES[0]}" not in pool.figures()

            # DNS stops answering: the pool keeps what it has.
            dns.process.send_signal(__import__("signal").SIGSTOP)
            try:
                await pool.refresh()
                assert pool.addresses == ADDRESSES[1:]
                assert len(await ready_addresses(group, 2)) == 2
            finally:
                dns.process.send_signal(__import__("signal").SIGCONT)
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_an_engine_whose_evidence_is_not_expected_never_gets_a_prompt(
    dns: DnsServer, engines: int
) -> None:
    async def scenario() -> None:
        pool, group = pool_for(dns, engines, expected_measurements={"code_sha256": "0" * 64})
        try:
            dns.publish(ADDRESSES[0])
            await pool.refresh()
            await asyncio.sleep(1.0)  # several attestation rounds
            assert group.candidates(time.monotonic()) == []
            engine = pool.engine(ADDRESSES[0])
            assert engine is not None and not engine.upstream.verified
            assert "measurement" in (engine.upstream.last_error or "")
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_free_slots_order_the_candidates() -> None:
    from gateway.upstreams.router import Member

    class Idle:
        name = "x"

    busy, roomy = Member(Idle()), Member(Idle())  # type: ignore[arg-type]
    busy.free_slots = lambda: 0
    roomy.free_slots = lambda: 3
    roomy.outstanding = 1
    assert Group("g", [busy, roomy]).candidates(time.monotonic())[0] is roomy


def test_a_gateway_serves_through_engines_it_discovers(
    tmp_path: Path, dns: DnsServer, engines: int
) -> None:
    import base64

    from gateway.auth import hash_key
    from tests.gateway.conftest import KEY, start_gateway, stop_gateway

    dns.publish(*ADDRESSES[:2])
    config = {
        "listener": {"host": "127.0.0.1", "port": free_port()},
        "tls": {"names": ["127.0.0.1"], "cert_out": str(tmp_path / "run" / "cert.pem")},
        "api_keys": [{"name": "k", "sha256": hash_key(KEY)}],
        "models": [
            {
                "name": "smollm2",
                "deployments": [
                    {
                        "kind": "discovered",
                        "dns_name": NAME,
                        "port": engines,
                        "dns_server": f"127.0.0.1:{dns.port}",
                        "resolve_interval_s": 0.5,
                        "attestation": {"allow_simulated": True},
                    }
                ],
            }
        ],
        "attestation": {"provider": "simulated"},
        "pii": {"ner": "off"},
        "run_dir": str(tmp_path / "run"),
    }
    gateway = start_gateway(tmp_path, config)
    try:
        served = set()
        with gateway.client() as client:
            for _ in range(6):
                reply = client.post(
                    "/v1/chat/completions",
                    json={**BODY, "max_tokens": 4},
                )
                assert reply.status_code == 200, reply.text
                token = reply.headers["x-attestation-token"].split(".")[1]
                claims = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                assert claims["upstream"]["kind"] == "attested-remote"
                served.add(claims["upstream"]["name"].rsplit("/", 1)[1])
        assert served <= set(ADDRESSES[:2]) and served
        assert "discovered engines engines.test" in gateway.log_path.read_text()
    finally:
        stop_gateway(gateway)
