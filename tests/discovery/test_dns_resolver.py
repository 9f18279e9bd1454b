"""The resolver against a DNS server on loopback that answers as the test tells it to:
well-formed, over TCP after truncation, or hostile (wrong id, another question, garbage,
a CNAME loop, records for other names, a server failure)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

import pytest
from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord

from gateway.upstreams.dns_resolver import Nameserver, ResolveError, resolve

NAME = "engines.test"
Answer = Callable[[DNSRecord], bytes]


def records(*rrs: RR, rcode: int = RCODE.NOERROR, tc: bool = False) -> Answer:
    def answer(query: DNSRecord) -> bytes:
        reply = query.reply()
        reply.header.rcode = rcode
        reply.header.tc = int(tc)
        for rr in rrs:
            reply.add_answer(rr)
        return bytes(reply.pack())

    return answer


def a(name: str, address: str) -> RR:
    return RR(name, QTYPE.A, rdata=A(address), ttl=1)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.answer(DNSRecord.parse(data)), addr)


@asynccontextmanager
async def dns_server(udp: Answer, tcp: Answer | None = None) -> AsyncIterator[Nameserver]:
    loop = asyncio.get_running_loop()

    async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack(">H", await reader.readexactly(2))
        query = DNSRecord.parse(await reader.readexactly(length))
        body = (tcp or udp)(query)
        writer.write(struct.pack(">H", len(body)) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve_tcp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(udp), local_addr=("127.0.0.1", port)
    )
    try:
        yield Nameserver("127.0.0.1", port)
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


def run(answer: Answer, tcp: Answer | None = None, **options: object) -> list[str]:
    async def scenario() -> list[str]:
        async with dns_server(answer, tcp) as server:
            return await resolve(NAME, server, timeout_s=0.5, **options)  # type: ignore[arg-type]

    return asyncio.run(scenario())


def test_addresses_come_sorted_and_only_for_the_name_asked() -> None:
    answer = records(
        a(NAME, "10.0.0.10"), a(NAME, "10.0.0.9"), a(NAME, "10.0.0.9"), a("other.test", "10.9.9.9")
    )
    assert run(answer) == ["10.0.0.9", "10.0.0.10"]


def test_nxdomain_and_no_records_are_an_empty_pool_and_a_failure_is_an_error() -> None:
    assert run(records(rcode=RCODE.NXDOMAIN)) == []
    assert run(records()) == []
    with pytest.raises(ResolveError, match="SERVFAIL"):
        run(records(rcode=RCODE.SERVFAIL))


def test_a_truncated_answer_is_asked_again_over_tcp() -> None:
    assert run(records(tc=True), tcp=records(a(NAME, "10.0.0.7"))) == ["10.0.0.7"]


def test_cname_chains_are_followed_and_loops_end() -> None:
    chain = records(
        RR(NAME, QTYPE.CNAME, rdata=CNAME("pods.test"), ttl=1), a("pods.test", "10.0.0.5")
    )
    assert run(chain) == ["10.0.0.5"]
    loop = records(
        RR(NAME, QTYPE.CNAME, rdata=CNAME("b.test"), ttl=1),
        RR("b.test", QTYPE.CNAME, rdata=CNAME(NAME), ttl=1),
    )
    assert run(loop) == []


def test_hostile_answers_are_refused_not_believed() -> None:
    def wrong_id(query: DNSRecord) -> bytes:
        reply = query.reply()
        reply.header.id = (query.header.id + 1) % 65536
        reply.add_answer(a(NAME, "10.6.6.6"))
        return bytes(reply.pack())

    def other_question(query: DNSRecord) -> bytes:
        reply = DNSRecord.question("evil.test", "A").reply()
        reply.header.id = query.header.id
        reply.add_answer(a("evil.test", "10.6.6.6"))
        return bytes(reply.pack())

    def garbage(query: DNSRecord) -> bytes:
        return struct.pack(">H", query.header.id) + b"\xff" * 40

    with pytest.raises(ResolveError, match="failed"):  # ignored, so the query times out
        run(wrong_id)
    with pytest.raises(ResolveError, match="does not match"):
        run(other_question)
    with pytest.raises(ResolveError):
        run(garbage)


@pytest.mark.parametrize("value", ["dns.example", "10.0.0.1:0", "10.0.0.1:70000", "[::1"])
def test_a_nameserver_must_be_a_literal_address(value: str) -> None:
    with pytest.raises(ValueError):
        Nameserver.parse(value)


def test_nameserver_forms() -> None:
    assert Nameserver.parse("10.0.0.1") == Nameserver("10.0.0.1", 53)
    assert Nameserver.parse("10.0.0.1:5353") == Nameserver("10.0.0.1", 5353)
    assert Nameserver.parse("[fd00::1]:5353") == Nameserver("fd00::1", 5353)
