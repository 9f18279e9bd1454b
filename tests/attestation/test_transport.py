"""The verifying transport on real signed streams: a stream without its token never completes.

The "gateway" here is an ``httpx.MockTransport`` that signs exactly as the gateway's stream
writer does (every byte before the token is hashed; the token rides an SSE comment or the usage
chunk; then ``[DONE]``), with a stand-in for the TLS connection that presents the certificate
the key set binds. Each test then takes something away on the way to the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from confidential_common.tee.providers import SimulatedProvider
from confidential_common.tls import self_signed
from gateway.attestation.service import AttestationService
from gateway.attestation.token import STREAM_TOKEN_COMMENT, ResponseFacts
from gateway.attestation.transport import (
    NO_TOKEN_AT_DONE,
    NO_TOKEN_AT_END,
    AsyncAttestedTransport,
    AttestedTransport,
)
from gateway.attestation.verifier import (
    VerificationError,
    VerificationPolicy,
    spki_sha256_of_der_certificate,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::gateway.attestation.verifier.SimulatedEvidenceWarning"
)
BASE = "https://gateway.test"
DEV = VerificationPolicy(allow_simulated=True)
DONE = b"data: [DONE]\n\n"
Rewrite = Callable[[list[bytes]], list[bytes]]


class _TLS:
    def __init__(self, der: bytes) -> None:
        self._der = der

    def getpeercert(self, binary_form: bool = False) -> bytes:
        return self._der


class _NetworkStream:
    def __init__(self, der: bytes) -> None:
        self._tls = _TLS(der)

    def get_extra_info(self, name: str) -> Any:
        return self._tls if name == "ssl_object" else None


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class SigningGateway:
    """Streams one answer, signed as the gateway signs it, through ``rewrite``."""

    def __init__(self) -> None:
        cert_pem, _ = self_signed(["gateway.test"])
        self.der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        self.service = AttestationService(
            SimulatedProvider("c0de" * 16),
            tls_spki_sha256=spki_sha256_of_der_certificate(self.der),
            issuer="test",
            token_ttl_s=60,
            store_ttl_s=60,
        )
        self.rewrite: Rewrite = lambda events: events
        self.sent: list[bytes] = []

    def events(self, request: httpx.Request) -> list[bytes]:
        body = json.loads(request.content)
        chunks = [
            event({"id": "c1", "choices": [{"index": 0, "delta": {"content": piece}}]})
            for piece in ("Bl", "ue", ".")
        ]
        digest = hashlib.sha256(b"".join(chunks))
        usage = (body.get("stream_options") or {}).get("include_usage")
        token = self.service.sign(
            ResponseFacts(
                jti="c1",
                request_sha256=hashlib.sha256(request.content).hexdigest(),
                response_sha256=digest.hexdigest(),
                status=200,
                nonce=request.headers["x-attestation-nonce"],
            )
        )
        if usage:
            carrier = {"id": "c1", "choices": [], "usage": {"total_tokens": 3}}
            tail = event({**carrier, "attestation_token": token})
        else:
            tail = STREAM_TOKEN_COMMENT + token.encode() + b"\n\n"
        return [*chunks, tail, DONE]

    def handle(self, request: httpx.Request) -> httpx.Response:
        extensions = {"network_stream": _NetworkStream(self.der)}
        if request.url.path == "/v1/attestation":
            document = self.service.evidence_document(request.url.params["nonce"])
            return httpx.Response(200, json=document, extensions=extensions)
        pieces = self.rewrite(self.events(request))

        def stream() -> Iterator[bytes]:
            for piece in pieces:
                self.sent.append(piece)
                yield piece

        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=stream(),
            extensions=extensions,
        )


@pytest.fixture
def upstream() -> SigningGateway:
    return SigningGateway()


def sdk(upstream: SigningGateway) -> openai.OpenAI:
    transport = AttestedTransport(BASE, policy=DEV, inner=httpx.MockTransport(upstream.handle))
    return openai.OpenAI(
        base_url=BASE + "/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )


def read_stream(client: openai.OpenAI, **options: Any) -> str:
    text = ""
    for chunk in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, **options
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    return text


def raw_chunks(upstream: SigningGateway, received: list[bytes]) -> None:
    transport = AttestedTransport(BASE, policy=DEV, inner=httpx.MockTransport(upstream.handle))
    with (
        httpx.Client(transport=transport) as client,
        client.stream("POST", BASE + "/v1/chat/completions", json={"stream": True}) as response,
    ):
        for data in response.iter_raw():
            received.append(data)


def without_token(events: list[bytes]) -> list[bytes]:
    return [e for e in events if not e.startswith(STREAM_TOKEN_COMMENT)]


@pytest.mark.parametrize("include_usage", [False, True])
def test_intact_streams_verify(upstream: SigningGateway, include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    assert read_stream(sdk(upstream), **options) == "Blue."


def test_a_stream_whose_token_comment_was_stripped_fails_at_done(upstream: SigningGateway) -> None:
    upstream.rewrite = without_token
    with pytest.raises(VerificationError) as info:
        read_stream(sdk(upstream))
    assert str(info.value) == NO_TOKEN_AT_DONE


def test_the_failure_comes_before_done_is_handed_on(upstream: SigningGateway) -> None:
    upstream.rewrite = without_token
    received: list[bytes] = []
    with pytest.raises(VerificationError, match=r"\[DONE\]"):
        raw_chunks(upstream, received)
    assert upstream.sent[-1] == DONE  # the server did send it ...
    assert not any(b"[DONE]" in data for data in received)  # ... the client never got it


def test_a_stream_whose_usage_token_was_removed_fails(upstream: SigningGateway) -> None:
    def drop_field(events: list[bytes]) -> list[bytes]:
        out = []
        for e in events:
            if b"attestation_token" in e:
                chunk = json.loads(e[6:])
                del chunk["attestation_token"]
                e = event(chunk)
            out.append(e)
        return out

    upstream.rewrite = drop_field
    with pytest.raises(VerificationError, match=r"\[DONE\] without a valid attestation token"):
        read_stream(sdk(upstream), stream_options={"include_usage": True})


def test_a_stream_cut_before_its_token_fails_at_its_end(upstream: SigningGateway) -> None:
    upstream.rewrite = lambda events: events[:-2]
    with pytest.raises(VerificationError) as info:
        read_stream(sdk(upstream))
    assert str(info.value) == NO_TOKEN_AT_END


def test_done_split_across_reads_or_framed_with_crlf_still_fails(
    upstream: SigningGateway,
) -> None:
    upstream.rewrite = lambda events: [*without_token(events)[:-1], b"data: [DO", b"NE]\n\n"]
    with pytest.raises(VerificationError, match=r"\[DONE\]"):
        read_stream(sdk(upstream))
    upstream.rewrite = lambda events: [*without_token(events)[:-1], b"data: [DONE]\r\n\r\n"]
    with pytest.raises(VerificationError, match=r"\[DONE\]"):
        read_stream(sdk(upstream))


def test_content_after_the_token_is_refused(upstream: SigningGateway) -> None:
    injected = event({"id": "c1", "choices": [{"index": 0, "delta": {"content": " Not."}}]})
    upstream.rewrite = lambda events: [*events[:-1], injected, DONE]
    with pytest.raises(VerificationError, match="after its attestation token"):
        read_stream(sdk(upstream))


def test_a_forged_token_fails_where_the_token_was(upstream: SigningGateway) -> None:
    upstream.rewrite = lambda events: [
        *events[:-2],
        STREAM_TOKEN_COMMENT + b"eyJhbGciOiJub25lIn0.e30.\n\n",
        DONE,
    ]
    with pytest.raises(VerificationError, match="algorithm 'none'"):
        read_stream(sdk(upstream))


def test_the_async_transport_refuses_a_stream_without_its_token(upstream: SigningGateway) -> None:
    upstream.rewrite = without_token

    async def handle(request: httpx.Request) -> httpx.Response:
        response = upstream.handle(request)
        content = response.read()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    async def run() -> None:
        transport = AsyncAttestedTransport(BASE, policy=DEV, inner=httpx.MockTransport(handle))
        client = openai.AsyncOpenAI(
            base_url=BASE + "/v1",
            api_key="k",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=transport),
        )
        async for _ in await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(VerificationError, match=r"\[DONE\]"):
            asyncio.run(run())
