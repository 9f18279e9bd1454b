"""A real DNS server on loopback whose records a test changes while it runs.

    python -m tests.support.dns_server --zone ZONE.json [--port N]

``ZONE.json`` maps names to lists of addresses, ``{"engines.test.": ["127.0.0.2", ...]}``;
it is read again for every query, so a test rewrites it (atomically) to add or remove a
record, as a Kubernetes headless Service changes with its pods. A (and AAAA) queries for a
listed name get one record per address (TTL 1); other names get NXDOMAIN. UDP and TCP on
the same port; prints ``dns-test-server listening on 127.0.0.1:<port>`` once both listen.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class ZoneFileResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Path) -> None:
        self._zone = zone

    def _records(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self._zone.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k).rstrip(".").lower() + ".": list(v) for k, v in data.items()}

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> Any:
        reply = request.reply()
        name = str(request.q.qname).lower()
        records = self._records()
        if name not in records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for address in records[name]:
            ip = ipaddress.ip_address(address)
            if request.q.qtype == QTYPE.A and ip.version == 4:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
            elif request.q.qtype == QTYPE.AAAA and ip.version == 6:
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=1))
        return reply


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-data", prefix=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.dns_server")
    parser.add_argument("--zone", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    port = args.port or _free_port()
    resolver = ZoneFileResolver(args.zone)
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=_QuietLogger())
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    print(f"dns-test-server listening on 127.0.0.1:{port}", flush=True)
    try:
        while all(server.isAlive() for server in servers):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
