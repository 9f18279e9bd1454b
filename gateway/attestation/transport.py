"""httpx transports that verify every response of an attested gateway.

    transport = AttestedTransport("https://gw:8443", verify=ssl_context, policy=policy)
    client = OpenAI(base_url="https://gw:8443/v1", api_key=key,
                    http_client=httpx.Client(transport=transport))

Before the first request the transport fetches ``/v1/attestation`` with a fresh nonce and
verifies it. Every response must then come over a TLS connection whose certificate key is the
one the evidence binds. Each request to a signed endpoint (chat, completions, embeddings,
responses) carries a fresh ``X-Attestation-Nonce``;
its token must be signed by the attested key and cover exactly the request bytes sent and
the response bytes received. A plain response is checked before it is returned; a stream is
checked when its token chunk arrives, and ``VerificationError`` is raised from the stream if
anything is wrong (so act on streamed text only once the stream completed). A stream that
reaches ``data: [DONE]`` or its end without a valid token raises before that ``[DONE]`` is
handed on (the OpenAI SDK stops reading there), and so does anything but ``[DONE]`` after the
token, which the token does not cover. A Responses API stream has no ``[DONE]``: its token
comment follows the terminal event, and the stream's end is where a missing token raises.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from gateway.attestation.token import STREAM_TOKEN_COMMENT
from gateway.attestation.verifier import (
    VerificationError,
    VerificationPolicy,
    VerifiedGateway,
    spki_sha256_of_der_certificate,
    verify_evidence,
    verify_token,
)

TOKEN_HEADER = "x-attestation-token"
NONCE_HEADER = "x-attestation-nonce"
# Every endpoint whose answers the gateway signs (chat, legacy completions, embeddings,
# responses); other routes (models, evidence) carry no response token.
ATTESTED_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")
# A "data: [DONE]" line however the lines are broken (SSE accepts CR, LF and CRLF).
_DONE_LINE = re.compile(rb"(?:^|[\r\n])data: ?\[DONE\]")
_DONE_LINE_MAX = len(b"\r\ndata: [DONE]")
NO_TOKEN_AT_DONE = "the stream reached [DONE] without a valid attestation token"
NO_TOKEN_AT_END = "the stream ended without a valid attestation token"


def _peer_spki(response: httpx.Response) -> str:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        raise VerificationError("the response did not come over TLS")
    der = ssl_object.getpeercert(True)
    if not der:
        raise VerificationError("the server presented no certificate")
    return spki_sha256_of_der_certificate(der)


class _Verifier:
    """State shared by the sync and async transports: the attested gateway and the checks."""

    def __init__(self, base_url: str, policy: VerificationPolicy) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.gateway: VerifiedGateway | None = None
        self.lock = threading.Lock()

    def attestation_request(self) -> tuple[httpx.Request, bytes]:
        nonce = secrets.token_bytes(32)
        url = f"{self.base_url}/v1/attestation?nonce={nonce.hex()}"
        return httpx.Request("GET", url), nonce

    def accept_attestation(self, response: httpx.Response, nonce: bytes) -> VerifiedGateway:
        if response.status_code != 200:
            raise VerificationError(f"attestation endpoint answered HTTP {response.status_code}")
        gateway = verify_evidence(json.loads(response.content), nonce, self.policy)
        self.check_tls(response, gateway)
        self.gateway = gateway
        return gateway

    @staticmethod
    def check_tls(response: httpx.Response, gateway: VerifiedGateway) -> None:
        if _peer_spki(response) != gateway.keyset.tls_spki_sha256:
            raise VerificationError("the TLS key of this connection is not the attested one")

    def prepare(self, request: httpx.Request) -> tuple[str, bytes] | None:
        if request.method != "POST" or not request.url.path.endswith(ATTESTED_PATHS):
            return None
        nonce = secrets.token_urlsafe(24)
        request.headers[NONCE_HEADER] = nonce
        return nonce, request.content

    def stream_checker(self, gateway: VerifiedGateway, prepared: tuple[str, bytes]) -> _SSEVerifier:
        nonce, body = prepared
        return _SSEVerifier(self, gateway, nonce, body)

    def check_plain(
        self,
        response: httpx.Response,
        content: bytes,
        gateway: VerifiedGateway,
        prepared: tuple[str, bytes],
    ) -> None:
        nonce, body = prepared
        digest = hashlib.sha256(content).hexdigest()
        self.check_token(response.headers.get(TOKEN_HEADER), gateway, digest, nonce, body)

    def check_token(
        self, token: str | None, gateway: VerifiedGateway, digest: str, nonce: str, body: bytes
    ) -> dict[str, Any]:
        if not token:
            raise VerificationError("the response carries no attestation token")
        return verify_token(
            token,
            gateway,
            response_sha256=digest,
            request_body=body,
            nonce=nonce,
            policy=self.policy,
        )


def _is_stream(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("text/event-stream")


def _restreamed(
    response: httpx.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=stream,
        extensions=response.extensions,
    )


class _SSEVerifier:
    """Follows an SSE byte stream: hashes what precedes the token chunk, then checks it."""

    def __init__(
        self, verifier: _Verifier, gateway: VerifiedGateway, nonce: str, body: bytes
    ) -> None:
        self._verifier = verifier
        self._gateway = gateway
        self._nonce = nonce
        self._body = body
        self._digest = hashlib.sha256()
        self._buffer = b""
        self.verified = False

    def feed(self, data: bytes) -> None:
        """Check ``data`` before it is handed on; raise VerificationError to withhold it."""
        tail = self._buffer[-_DONE_LINE_MAX:]
        self._buffer += data
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            self._event(event + b"\n\n")
        # A [DONE] the SDK would act on although it is not framed as this stream's events are.
        if not self.verified and _DONE_LINE.search(tail + data):
            raise VerificationError(NO_TOKEN_AT_DONE)

    def _event(self, event: bytes) -> None:
        if self.verified:
            if not self._ignorable_after_token(event):
                raise VerificationError(
                    "the stream carries data after its attestation token, which the token "
                    "does not cover"
                )
            return
        if _DONE_LINE.search(event):
            raise VerificationError(NO_TOKEN_AT_DONE)
        token = self._token_in(event)
        if token is None:
            self._digest.update(event)
            return
        self._verifier.check_token(
            token, self._gateway, self._digest.hexdigest(), self._nonce, self._body
        )
        self.verified = True

    @staticmethod
    def _ignorable_after_token(event: bytes) -> bool:
        """[DONE], SSE comments and blank lines: nothing an SSE client turns into data."""
        lines = [line for line in re.split(rb"\r\n|\r|\n", event) if line]
        return all(line.startswith(b":") or _DONE_LINE.match(line) for line in lines)

    @staticmethod
    def _token_in(event: bytes) -> str | None:
        """The token of a token event: the usage chunk's field, or the SSE comment a stream
        without usage ends with."""
        if event.startswith(STREAM_TOKEN_COMMENT):
            return event[len(STREAM_TOKEN_COMMENT) :].strip().decode("ascii", "replace")
        if b'"attestation_token"' not in event or not event.startswith(b"data: "):
            return None
        try:
            return str(json.loads(event[6:])["attestation_token"])
        except (ValueError, KeyError):
            return None

    def finish(self) -> None:
        """At the end of the bytes: the token must have been seen and checked."""
        if self._buffer.strip():
            self._event(self._buffer)
            self._buffer = b""
        if not self.verified:
            raise VerificationError(NO_TOKEN_AT_END)


class _VerifiedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, checker: _SSEVerifier) -> None:
        self._inner = inner
        self._checker = checker

    def __iter__(self) -> Iterator[bytes]:
        for data in self._inner:
            self._checker.feed(data)
            yield data
        self._checker.finish()

    def close(self) -> None:
        self._inner.close()


class _AsyncVerifiedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, checker: _SSEVerifier) -> None:
        self._inner = inner
        self._checker = checker

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data in self._inner:
            self._checker.feed(data)
            yield data
        self._checker.finish()

    async def aclose(self) -> None:
        await self._inner.aclose()


class AttestedTransport(httpx.BaseTransport):
    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | bool = True,
        policy: VerificationPolicy | None = None,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self._verifier = _Verifier(base_url, policy or VerificationPolicy())
        self._inner = inner or httpx.HTTPTransport(verify=verify)

    @property
    def gateway(self) -> VerifiedGateway:
        with self._verifier.lock:
            if self._verifier.gateway is None:
                request, nonce = self._verifier.attestation_request()
                response = self._inner.handle_request(request)
                response.read()
                self._verifier.accept_attestation(response, nonce)
            assert self._verifier.gateway is not None
            return self._verifier.gateway

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        gateway = self.gateway
        prepared = self._verifier.prepare(request)
        response = self._inner.handle_request(request)
        try:
            self._verifier.check_tls(response, gateway)
            if prepared is None:
                return response
            if _is_stream(response):
                assert isinstance(response.stream, httpx.SyncByteStream)
                checker = self._verifier.stream_checker(gateway, prepared)
                return _restreamed(response, _VerifiedStream(response.stream, checker))
            self._verifier.check_plain(response, response.read(), gateway, prepared)
            return response
        except BaseException:
            response.close()
            raise

    def close(self) -> None:
        self._inner.close()


class AsyncAttestedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | bool = True,
        policy: VerificationPolicy | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._verifier = _Verifier(base_url, policy or VerificationPolicy())
        self._inner = inner or httpx.AsyncHTTPTransport(verify=verify)

    async def _gateway(self) -> VerifiedGateway:
        if self._verifier.gateway is None:
            request, nonce = self._verifier.attestation_request()
            response = await self._inner.handle_async_request(request)
            await response.aread()
            self._verifier.accept_attestation(response, nonce)
        assert self._verifier.gateway is not None
        return self._verifier.gateway

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        gateway = await self._gateway()
        prepared = self._verifier.prepare(request)
        response = await self._inner.handle_async_request(request)
        try:
            self._verifier.check_tls(response, gateway)
            if prepared is None:
                return response
            if _is_stream(response):
                assert isinstance(response.stream, httpx.AsyncByteStream)
                checker = self._verifier.stream_checker(gateway, prepared)
                return _restreamed(response, _AsyncVerifiedStream(response.stream, checker))
            self._verifier.check_plain(response, await response.aread(), gateway, prepared)
            return response
        except BaseException:
            await response.aclose()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
