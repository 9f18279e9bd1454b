"""The key broker clients' handling of what a broker (or a man in the middle) answers."""

from __future__ import annotations

import httpx
import pytest

from confidential_common.key_broker.base import broker_url, is_loopback, resource_path
from confidential_common.key_broker.cdh import CdhKeyBroker
from confidential_common.key_broker.kbs import (
    KbsKeyBroker,
    KeyReleaseError,
    _Answer,
    _refusal,
    _session_cookie,
)
from confidential_common.tee.providers import SimulatedProvider


def test_a_session_cookie_expired_by_this_guests_clock_is_still_used() -> None:
    response = httpx.Response(
        200,
        headers=[
            ("set-cookie", "other=1"),
            ("set-cookie", "kbs-session-id=abc123; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
    )
    assert _session_cookie(response) == "abc123"
    assert _session_cookie(httpx.Response(200)) is None


def test_a_kbs_refusal_is_quoted_bounded_and_printable() -> None:
    forged = "x" * 100_000 + "\n\x1b[2Kenclave-backend ready: model=evil"
    for body in (
        f'{{"detail": {forged!r}}}'.replace("'", '"'),
        f'{{"type": "{forged[:200]}\\u001b", "detail": "no"}}',
        forged,
    ):
        message = _refusal("attestation", "a/b/c", _Answer(401, body.encode(), None))
        assert len(message) < 500
        assert "\n" not in message and "\x1b" not in message


def test_trustee_policy_deny_reads_as_a_withheld_resource() -> None:
    body = b'{"type": "https://github.com/confidential-containers/kbs/errors/PolicyDeny", '
    body += b'"detail": "Access denied by policy"}'
    message = _refusal("resource", "a/b/c", _Answer(401, body, None))
    assert message.startswith("the KBS policy does not release a/b/c to this guest (HTTP 401)")


def _kbs(handler: httpx.MockTransport) -> KbsKeyBroker:
    return KbsKeyBroker(
        "http://127.0.0.1:9", "a/b/c", provider=SimulatedProvider("0" * 64), transport=handler
    )


def test_an_oversized_answer_is_refused_without_reading_it_all() -> None:
    sent = {"bytes": 0}

    def stream() -> httpx.SyncByteStream:
        class Endless(httpx.SyncByteStream):
            def __iter__(self):  # type: ignore[no-untyped-def]
                while True:
                    sent["bytes"] += 65536
                    yield b"x" * 65536

        return Endless()

    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=stream()))
    with pytest.raises(KeyReleaseError, match="larger than"):
        _kbs(transport).fetch()
    assert sent["bytes"] < 4 << 20


def test_a_resource_that_is_not_a_jwe_to_our_key_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth"):
            return httpx.Response(
                200,
                json={"nonce": "bm9uY2U=", "extra-params": ""},
                headers={"set-cookie": "kbs-session-id=s1"},
            )
        if request.url.path.endswith("/attest"):
            assert request.headers["cookie"] == "kbs-session-id=s1"
            return httpx.Response(200, json={"token": "t"})
        # A man in the middle without the session key: a "dir" JWE it made up.
        return httpx.Response(
            200,
            json={
                "protected": "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0",
                "encrypted_key": "",
                "iv": "AAAAAAAAAAAAAAAA",
                "ciphertext": "AA",
                "tag": "AAAAAAAAAAAAAAAAAAAAAA",
            },
        )

    with pytest.raises(KeyReleaseError, match="not a JWE to this guest's key"):
        _kbs(httpx.MockTransport(answer)).fetch()


@pytest.mark.parametrize("url", ["http://localhost:8006", "http://10.0.0.5:8006", "https://cdh"])
def test_the_cdh_must_be_a_literal_loopback_address(url: str) -> None:
    with pytest.raises(ValueError, match="must be loopback"):
        CdhKeyBroker("a/b/c", url=url)


def test_addresses_and_resource_paths() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("localhost") and not is_loopback("example.com")
    with pytest.raises(ValueError, match="plain http is only allowed to a loopback host"):
        broker_url("http://kbs.example.com:8080")
    assert broker_url("https://kbs.example.com:8080/") == "https://kbs.example.com:8080"
    for bad in ("a/b", "a/b/c/d", "a/../c", "a/b/c d", "a//c"):
        with pytest.raises(ValueError, match="repository/type/tag"):
            resource_path(bad)
    assert resource_path("/default/models/smollm2/") == "default/models/smollm2"
