"""The listening socket: connection caps and timeouts that uvicorn does not have on its own.

uvicorn holds a connection until it sends a request and only counts connections once a
request's headers are in, so idle or trickling clients (slowloris) can hold every slot
forever, and its over-limit answer is a plain-text 503. Here, at connection level:

- the TLS handshake must finish within ``handshake_timeout_s`` (asyncio's
  ``ssl_handshake_timeout``; uvicorn does not pass one, so :class:`GatewayServer` creates the
  listening socket itself). The same bound applies to the TLS close (``ssl_shutdown_timeout``),
  so a client that never answers our close_notify does not keep its slot for 30 s;
- a request's headers must be complete within ``header_timeout_s`` of the connection being
  made (first request) or of the request's first byte (later keep-alive requests; the idle
  time between requests is uvicorn's ``timeout_keep_alive``); otherwise 408, then close;
- at most ``max_per_address`` connections per client address (the TCP peer: never a header a
  client chooses; IPv6 counted per /64) get 429 with ``Retry-After``; past ``max_connections``
  in all, 503. Both are complete HTTP/1.1 answers in OpenAI's error shape, then a close;
- requests in flight (ASGI tasks, which can outlive their connection) are bounded by
  ``max_connections`` too: past it a request is answered 503 in the same shape.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import json
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config import ListenerConfig

logger = logging.getLogger("uvicorn.error")

RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_per_address: int
    handshake_timeout_s: float
    header_timeout_s: float
    # Reverse proxies carry many clients on their connections: only the global cap applies.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(cls, listener: ListenerConfig) -> ConnectionLimits:
        return cls(
            max_connections=listener.max_connections,
            max_per_address=min(listener.max_connections_per_address, listener.max_connections),
            handshake_timeout_s=listener.handshake_timeout_s,
            header_timeout_s=listener.header_timeout_s,
            trusted_proxies=tuple(
                ipaddress.ip_network(entry, strict=False) for entry in listener.trusted_proxies
            ),
        )

    def per_address_cap_applies(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return True
        return not any(address in network for network in self.trusted_proxies)


def address_key(host: str) -> str:
    """The unit a per-address cap counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    usual allocation, so rotating through it buys nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def too_many_from_address(limit: int) -> GatewayError:
    return GatewayError(
        429,
        f"Too many open connections from this address (at most {limit}); close idle "
        f"connections or retry in {RETRY_AFTER_S}s.",
        type="requests",
        code="too_many_connections",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def server_full() -> GatewayError:
    return GatewayError(
        503,
        "The gateway is at its connection limit right now; retry shortly.",
        type="server_error",
        code="server_overloaded",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def too_many_requests_in_flight() -> GatewayError:
    return GatewayError(
        503,
        "The gateway has too many requests in progress right now; retry shortly.",
        type="server_error",
        code="server_overloaded",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def header_timeout(seconds: float) -> GatewayError:
    return GatewayError(
        408,
        f"The request headers did not arrive within {seconds:g} s.",
        code="request_timeout",
    )


def _error_headers(error: GatewayError, body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()),
    ]


def error_response(
    error: GatewayError, default_headers: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    """A complete HTTP/1.1 answer carrying ``error`` in OpenAI's shape, ending the connection."""
    body = json.dumps(error.body()).encode("utf-8")
    phrase = http.HTTPStatus(error.status).phrase.encode("ascii")
    lines = [b"HTTP/1.1 %d %s\r\n" % (error.status, phrase)]
    for name, value in [*default_headers, *_error_headers(error, body)]:
        lines.append(name + b": " + value + b"\r\n")
    return b"".join([*lines, b"\r\n", body])


def error_app(error: GatewayError) -> Any:
    """An ASGI app answering every request with ``error`` (and closing the connection)."""
    body = json.dumps(error.body()).encode("utf-8")

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": _error_headers(error, body),
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


class ConnectionTable:
    """Open connections, in all and per client address; only admitted ones are counted."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self.total = 0
        self._by_address: dict[str, int] = {}

    def admit(self, key: str, *, capped: bool = True) -> GatewayError | None:
        """Count a new connection from ``key``, or say why it is refused (not counted);
        ``capped`` False: a trusted proxy's, held to the global cap only."""
        if capped and self._by_address.get(key, 0) >= self._limits.max_per_address:
            return too_many_from_address(self._limits.max_per_address)
        if self.total >= self._limits.max_connections:
            return server_full()
        self.total += 1
        self._by_address[key] = self._by_address.get(key, 0) + 1
        return None

    def release(self, key: str) -> None:
        self.total -= 1
        left = self._by_address[key] - 1
        if left:
            self._by_address[key] = left
        else:
            del self._by_address[key]

    def count(self, key: str) -> int:
        return self._by_address.get(key, 0)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the caps and header timeout of this module."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        table: ConnectionTable,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._table = table
        self._limits = limits
        self._key: str | None = None  # set while this connection is counted
        self._finished = False  # answered and closing: whatever else arrives is dropped
        self._header_timer: asyncio.TimerHandle | None = None
        self._gateway_app = self.app
        self._busy_app = error_app(too_many_requests_in_flight())

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        peer = get_remote_addr(transport)
        key = address_key(peer[0]) if peer else ""
        capped = self._limits.per_address_cap_applies(peer[0]) if peer else True
        refusal = self._table.admit(key, capped=capped)
        if refusal is not None:
            self.transport = transport
            self._finish(refusal)
            return
        self._key = key
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._key is None:  # refused: uvicorn never saw it
            return
        self._table.release(self._key)
        self._key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._finished:
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The first request's clock runs from connection_made; a later one's from its first
        # byte (the idle time before it is uvicorn's keep-alive timeout).
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        # Tasks can outlive their connection (a client gone mid-request): bound them too.
        busy = len(self.tasks) >= self._limits.max_connections
        self.app = self._busy_app if busy else self._gateway_app
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self._limits.header_timeout_s, self._headers_timed_out
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request trickles while an earlier response is still being sent:
            # finish that response, then close, reading nothing more.
            self.cycle.keep_alive = False
            self._finished = True
            return
        self._finish(header_timeout(self._limits.header_timeout_s))

    def _finish(self, error: GatewayError) -> None:
        self._finished = True
        self.transport.write(error_response(error, self.server_state.default_headers))
        self.transport.close()


class GatewayServer(uvicorn.Server):
    """uvicorn's server, binding its own socket so the TLS handshake has a deadline and every
    connection goes through :class:`GuardedHttpProtocol`. Serving, signals and the graceful
    drain on shutdown are uvicorn's own."""

    def __init__(
        self,
        config: Config,
        limits: ConnectionLimits,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.limits = limits
        self.connection_table = ConnectionTable(limits)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        if sockets is not None or config.fd is not None or config.uds is not None:
            raise ValueError("GatewayServer listens on host and port only")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        loop = asyncio.get_running_loop()

        def create_protocol() -> asyncio.Protocol:
            return GuardedHttpProtocol(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
                table=self.connection_table,
                limits=self.limits,
            )

        try:
            if config.ssl is not None:
                server = await loop.create_server(
                    create_protocol,
                    host=config.host,
                    port=config.port,
                    ssl=config.ssl,
                    backlog=config.backlog,
                    ssl_handshake_timeout=self.limits.handshake_timeout_s,
                    ssl_shutdown_timeout=self.limits.handshake_timeout_s,
                )
            else:
                server = await loop.create_server(
                    create_protocol, host=config.host, port=config.port, backlog=config.backlog
                )
        except OSError as exc:
            logger.error(exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        self.servers = [server]
        self._log_started_message(server.sockets)
        self.started = True
        if self._on_listening is not None:
            self._on_listening()
