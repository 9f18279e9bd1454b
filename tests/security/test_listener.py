"""The listener against idle, trickling and flooding clients (issue 13), on a real gateway.

Every wait is bounded but generous; no test asserts how long anything took. Attackers bind
their own loopback source addresses (127.0.0.x, all loopback on Linux) so the per-address and
the global caps can be told apart.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import GatewayError
from gateway.listener import ConnectionLimits, ConnectionTable, address_key, error_response
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    KEY,
    RunningGateway,
    echo_gateway_config,
    start_gateway,
    stop_gateway,
)

MAX_CONNECTIONS = 8
PER_ADDRESS = 4
WAIT_S = 30.0  # the most any single wait below may take; never a timing assertion

# A request whose headers are complete and whose body never comes: the gateway waits for it
# (body_timeout_s, long here), so the connection stays open and counted.
HOLD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 64\r\n\r\n"
)


def listener_config(tmp: Path, capture: CaptureUpstream, **listener: object) -> dict[str, Any]:
    # A remote upstream (the capture double), not an engine: the listener is what is tested.
    limits: dict[str, object] = {
        "max_connections": MAX_CONNECTIONS,
        "max_connections_per_address": PER_ADDRESS,
        "handshake_timeout_s": 1,
        "header_timeout_s": 1,
        "body_timeout_s": 60,
    }
    return echo_gateway_config(tmp, capture.url, **{**limits, **listener})


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("listener")
    running = start_gateway(tmp, listener_config(tmp, capture))
    try:
        yield running
    finally:
        stop_gateway(running)


def _port(gateway: RunningGateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def tcp_connect(gateway: RunningGateway, source: str) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", _port(gateway)), timeout=WAIT_S, source_address=(source, 0)
    )


def tls_connect(gateway: RunningGateway, source: str) -> ssl.SSLSocket:
    raw = tcp_connect(gateway, source)
    return gateway.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")


def read_all(sock: socket.socket, timeout: float = WAIT_S) -> bytes:
    """Everything until the gateway closes; fails if it never does."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            return data
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the gateway did not close the connection; got {data!r}")


def parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_refusal(raw: bytes, status: int, code: str) -> dict[str, str]:
    got, headers, body = parse(raw)
    assert got == status, raw
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["code"] == code
    return headers


def hold(gateway: RunningGateway, source: str) -> tuple[ssl.SSLSocket, bytes]:
    """A connection held open by a body that never comes; with whatever came back at once
    (a refusal), or b"" when it was admitted."""
    sock = tls_connect(gateway, source)
    sock.sendall(HOLD)
    sock.settimeout(0.5)
    try:
        early = sock.recv(65536)
    except TimeoutError:
        return sock, b""
    except (ConnectionResetError, ssl.SSLEOFError):
        early = b"<reset>"
    sock.settimeout(WAIT_S)
    return sock, early or b"<eof>"


def close_all(socks: list[ssl.SSLSocket]) -> None:
    for sock in socks:
        sock.close()
    socks.clear()


@pytest.fixture
def held() -> Iterator[list[ssl.SSLSocket]]:
    socks: list[ssl.SSLSocket] = []
    yield socks
    close_all(socks)


def hold_many(gateway: RunningGateway, sources: dict[str, int], socks: list[ssl.SSLSocket]) -> None:
    """Open and hold ``count`` admitted connections from each source address; connections
    still closing from an earlier test may refuse some at first, so retry a while."""
    deadline = time.monotonic() + WAIT_S
    while True:
        refused = b""
        for source, count in sources.items():
            for _ in range(count):
                sock, early = hold(gateway, source)
                socks.append(sock)
                refused = refused or early
        if not refused:
            return
        close_all(socks)
        if time.monotonic() > deadline:
            raise AssertionError(f"could not hold {sources}: {refused!r}")
        time.sleep(0.5)


def local_client(gateway: RunningGateway, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(verify=gateway.tls_context(), local_address=source)
    return httpx.Client(
        base_url=gateway.url,
        transport=transport,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=WAIT_S,
    )


def get_eventually(client: httpx.Client, path: str) -> httpx.Response:
    """GET until it is not refused by a cap (released connections close asynchronously)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            response = client.get(path)
            if response.status_code not in {429, 503}:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still refused")
        time.sleep(0.2)


# --- against the running gateway -----------------------------------------------------------


def test_tcp_connection_that_never_starts_tls_is_dropped(guarded: RunningGateway) -> None:
    with tcp_connect(guarded, "127.0.0.2") as sock:
        assert read_all(sock) == b""


def test_tls_connection_that_sends_nothing_gets_408_and_is_closed(guarded: RunningGateway) -> None:
    with tls_connect(guarded, "127.0.0.3") as sock:
        raw = read_all(sock)
    assert_refusal(raw, 408, "request_timeout")


def test_trickled_headers_get_408_and_are_closed(guarded: RunningGateway) -> None:
    with tls_connect(guarded, "127.0.0.3") as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = b""
        deadline = time.monotonic() + WAIT_S
        while not answer and time.monotonic() < deadline:
            try:
                sock.sendall(b"a")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer = sock.recv(65536) or b"<eof>"
            except TimeoutError:
                continue
            except OSError:
                answer = b"<reset>"
        assert answer, "the gateway kept reading trickled headers"
        assert_refusal(answer + read_all(sock), 408, "request_timeout")


def test_connections_past_the_per_address_cap_get_429(
    guarded: RunningGateway, held: list[ssl.SSLSocket]
) -> None:
    hold_many(guarded, {"127.0.0.5": PER_ADDRESS}, held)
    with tls_connect(guarded, "127.0.0.5") as extra:
        headers = assert_refusal(read_all(extra), 429, "too_many_connections")
    assert int(headers["retry-after"]) >= 1
    close_all(held)
    with local_client(guarded, "127.0.0.5") as client:
        assert get_eventually(client, "/v1/models").status_code == 200


def test_an_attacker_at_its_cap_does_not_lock_out_others(
    guarded: RunningGateway, held: list[ssl.SSLSocket]
) -> None:
    hold_many(guarded, {"127.0.0.6": PER_ADDRESS}, held)
    with guarded.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/v1/models").status_code == 200
    extra, early = hold(guarded, "127.0.0.6")
    with extra:
        assert_refusal(early + read_all(extra), 429, "too_many_connections")


def test_the_global_cap_answers_503(guarded: RunningGateway, held: list[ssl.SSLSocket]) -> None:
    hold_many(guarded, {"127.0.0.7": PER_ADDRESS, "127.0.0.8": MAX_CONNECTIONS - PER_ADDRESS}, held)
    with tls_connect(guarded, "127.0.0.9") as extra:
        headers = assert_refusal(read_all(extra), 503, "server_overloaded")
    assert int(headers["retry-after"]) >= 1
    close_all(held)
    with guarded.client() as client:
        assert get_eventually(client, "/health").status_code == 200


def test_sigterm_drains_a_request_in_flight_and_closes_idle_connections(
    tmp_path: Path, capture: CaptureUpstream
) -> None:
    gateway = start_gateway(tmp_path, listener_config(tmp_path, capture, header_timeout_s=60))
    try:
        body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
        idle = tls_connect(gateway, "127.0.0.11")
        busy = tls_connect(gateway, "127.0.0.10")
        busy.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        # "100 Continue": the gateway has the headers and is reading the body.
        busy.settimeout(WAIT_S)
        assert busy.recv(65536).startswith(b"HTTP/1.1 100")
        gateway.process.terminate()
        assert read_all(idle) == b""
        busy.sendall(body.encode())
        status, _, answer = parse(read_all(busy))
        assert status == 200, answer
        assert answer["choices"]
        assert gateway.process.wait(timeout=WAIT_S) is not None
        idle.close()
        busy.close()
    finally:
        stop_gateway(gateway)


# --- the pieces, without a gateway -----------------------------------------------------------

LIMITS = ConnectionLimits(
    max_connections=3, max_per_address=2, handshake_timeout_s=1, header_timeout_s=1
)


def test_table_counts_per_address_then_in_all() -> None:
    table = ConnectionTable(LIMITS)
    assert table.admit("a") is None
    assert table.admit("a") is None
    refused = table.admit("a")
    assert refused is not None and refused.status == 429
    assert table.admit("b") is None
    full = table.admit("c")
    assert full is not None and full.status == 503
    table.release("a")
    assert table.admit("c") is None
    for key in ("a", "b", "c"):
        table.release(key)
    assert table.total == 0 and table.count("a") == 0


def test_address_key_is_the_peer_ipv4_or_ipv6_slash_64() -> None:
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")


def test_error_response_is_complete_http_in_openai_shape() -> None:
    error = GatewayError(429, "slow down", type="requests", code="x", headers={"Retry-After": "1"})
    raw = error_response(error, [(b"server", b"uvicorn")])
    headers = assert_refusal(raw, 429, "x")
    assert headers["retry-after"] == "1" and headers["server"] == "uvicorn"
    assert parse(raw)[2] == error.body()


def test_limits_cap_per_address_at_the_global_cap() -> None:
    from gateway.config import ListenerConfig

    listener = ListenerConfig(max_connections=4, max_connections_per_address=32)
    assert ConnectionLimits.of(listener).max_per_address == 4
    defaults = ListenerConfig()
    assert defaults.handshake_timeout_s == 10 and defaults.header_timeout_s == 10
    assert defaults.max_connections_per_address == 64


def test_trusted_proxies_are_held_to_the_global_cap_only() -> None:
    from gateway.config import ListenerConfig

    limits = ConnectionLimits.of(
        ListenerConfig(
            max_connections=4, max_connections_per_address=1, trusted_proxies=["10.0.0.0/8"]
        )
    )
    table = ConnectionTable(limits)
    proxy = limits.per_address_cap_applies("10.1.2.3")
    assert proxy is False and limits.per_address_cap_applies("192.0.2.1") is True
    assert all(table.admit("10.1.2.3", capped=proxy) is None for _ in range(4))
    assert table.admit("10.1.2.3", capped=proxy) is not None  # the global cap still holds
