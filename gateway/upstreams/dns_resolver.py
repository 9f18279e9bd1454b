"""Resolve a name to its current addresses by asking a DNS server directly.

A Kubernetes headless Service answers its name with one A (or AAAA) record per ready pod;
the set changes as pods come and go, so it is asked again every few seconds. The system
resolver (``getaddrinfo``) may cache and cannot be pointed at a given server, so this sends
the query itself (dnslib builds and parses the packets) to the configured server, or to the
first ``nameserver`` of ``/etc/resolv.conf``. A truncated UDP answer is asked again over TCP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord
from dnslib.dns import DNSError

RESOLV_CONF = Path("/etc/resolv.conf")
DNS_PORT = 53
_MAX_CNAME_HOPS = 8


class ResolveError(Exception):
    """The name could not be resolved (no server, no answer, a malformed answer)."""


@dataclass(frozen=True)
class Nameserver:
    host: str
    port: int = DNS_PORT

    @classmethod
    def parse(cls, value: str) -> Nameserver:
        """``host``, ``host:port`` or ``[v6]:port``."""
        text = value.strip()
        if text.startswith("["):
            host, closed, rest = text[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                raise ValueError(f"not [v6]:port: {value!r}")
            port = int(rest[1:]) if rest.startswith(":") else DNS_PORT
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text)
        else:
            host, port = text, DNS_PORT
        ipaddress.ip_address(host)  # a literal address: resolving the resolver would loop
        if not 0 < port < 65536:
            raise ValueError(f"DNS port out of range in {value!r}")
        return cls(host, port)


def system_nameserver(path: Path = RESOLV_CONF) -> Nameserver:
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return Nameserver(parts[1].split("%", 1)[0])
    except OSError:
        pass
    raise ResolveError(f"no nameserver in {path}; configure dns_server")


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._id = query_id

    def datagram_received(self, data: bytes, _addr: object) -> None:
        ours = len(data) >= 2 and struct.unpack(">H", data[:2])[0] == self._id
        if ours and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _udp(server: Nameserver, packet: bytes, query_id: int, timeout_s: float) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Datagram(query_id), remote_addr=(server.host, server.port)
    )
    try:
        transport.sendto(packet)
        return await asyncio.wait_for(protocol.answer, timeout_s)
    finally:
        transport.close()


async def _tcp(server: Nameserver, packet: bytes, timeout_s: float) -> bytes:
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack(">H", len(packet)) + packet)
            await writer.drain()
            (length,) = struct.unpack(">H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout_s)


async def _query(name: str, qtype: str, server: Nameserver, timeout_s: float) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    query.header.id = secrets.randbelow(1 << 16)
    packet = query.pack()
    try:
        raw = await _udp(server, packet, query.header.id, timeout_s)
        reply = _parse(raw)
        if reply.header.tc:
            reply = _parse(await _tcp(server, packet, timeout_s))
    except (OSError, TimeoutError, DNSError, struct.error, asyncio.IncompleteReadError) as exc:
        raise ResolveError(
            f"DNS query for {name} ({qtype}) to {server.host}:{server.port} failed: "
            f"{type(exc).__name__}"
        ) from None
    asked = (str(query.q.qname).lower(), query.q.qtype)
    if reply.header.id != query.header.id or [
        (str(q.qname).lower(), q.qtype) for q in reply.questions
    ] != [asked]:
        raise ResolveError(f"DNS answer for {name} does not match the query")
    return reply


def _parse(raw: bytes) -> DNSRecord:
    try:
        return DNSRecord.parse(raw)
    except DNSError:
        raise
    except Exception as exc:  # a hostile packet can trip dnslib in other ways
        raise DNSError(f"unparseable answer ({type(exc).__name__})") from None


async def resolve(
    name: str, server: Nameserver, *, timeout_s: float = 2.0, ipv6: bool = False
) -> list[str]:
    """The name's current addresses (A, or AAAA with ``ipv6``), sorted; [] for NXDOMAIN or
    no records (a Service with no ready pods), ResolveError when the server cannot say."""
    qtype = "AAAA" if ipv6 else "A"
    wanted = QTYPE.AAAA if ipv6 else QTYPE.A
    reply = await _query(name, qtype, server, timeout_s)
    if reply.header.rcode == RCODE.NXDOMAIN:
        return []
    if reply.header.rcode != RCODE.NOERROR:
        raise ResolveError(f"DNS server answered {RCODE[reply.header.rcode]} for {name}")
    # Follow a CNAME chain inside the answer (an ExternalName Service, or a search alias).
    names = {name.rstrip(".").lower()}
    for _ in range(_MAX_CNAME_HOPS):
        grown = names | {
            str(rr.rdata).rstrip(".").lower()
            for rr in reply.rr
            if rr.rtype == QTYPE.CNAME and str(rr.rname).rstrip(".").lower() in names
        }
        if grown == names:
            break
        names = grown
    addresses = set()
    for rr in reply.rr:
        if rr.rtype == wanted and str(rr.rname).rstrip(".").lower() in names:
            try:
                addresses.add(str(ipaddress.ip_address(str(rr.rdata))))
            except ValueError:
                raise ResolveError(f"DNS answer for {name} holds a malformed address") from None
    return sorted(addresses, key=lambda a: ipaddress.ip_address(a))
