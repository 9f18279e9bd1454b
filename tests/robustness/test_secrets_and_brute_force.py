"""Brute force is rate limited; keys are compared in constant time; no secret is written."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from gateway.auth import APIKeyStore, hash_key
from gateway.config import APIKeyConfig
from gateway.errors import GatewayError
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    KEY,
    RunningGateway,
    echo_gateway_config,
    start_gateway,
    stop_gateway,
)

MAX_FAILURES = 5


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("guarded")
    gateway = start_gateway(
        tmp, echo_gateway_config(tmp, capture.url, max_auth_failures_per_minute=MAX_FAILURES)
    )
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def test_no_secret_is_written_anywhere(guarded: RunningGateway) -> None:
    with guarded.client() as client:
        assert (
            client.post(
                "/v1/chat/completions",
                json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
            ).status_code
            == 200
        )
    with guarded.client("sk-guess-1") as client:
        response = client.post("/v1/chat/completions", json={"model": "echo", "messages": []})
        assert "sk-guess-1" not in response.text
    written = [p for p in guarded.run_dir.rglob("*") if p.is_file()] + [guarded.log_path]
    for path in written:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path
        assert KEY.encode() not in data and b"sk-guess-1" not in data, path


def test_repeated_failures_from_one_address_are_rate_limited(guarded: RunningGateway) -> None:
    statuses = []
    for attempt in range(MAX_FAILURES + 3):
        with guarded.client(f"sk-guess-{attempt}") as client:
            response = client.post("/v1/chat/completions", json={"model": "echo"})
            statuses.append(response.status_code)
    assert statuses[: MAX_FAILURES - 1] == [401] * (MAX_FAILURES - 1)
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    # The right key from the same address is held back too while the window is full:
    # a guesser cannot tell a hit from a miss.
    with guarded.client() as client:
        assert client.get("/v1/models").status_code == 429


def test_keys_are_compared_in_constant_time() -> None:
    keys = [APIKeyConfig(name=f"k{i}", sha256=hash_key(f"key-{i}")) for i in range(8)]
    store = APIKeyStore(keys)
    real = __import__("hmac").compare_digest
    with mock.patch("gateway.auth.hmac.compare_digest", side_effect=real) as compare:
        store.authenticate("Bearer key-0")
        first = compare.call_count
        compare.reset_mock()
        with pytest.raises(GatewayError):
            store.authenticate("Bearer nope")
        miss = compare.call_count
    # Every stored key is compared whether the first matches or none does: no early exit.
    assert first == miss == len(keys)
