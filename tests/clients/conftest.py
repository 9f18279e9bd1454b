"""A gateway as `make run` serves it (config/gateway.yaml: TLS, PII tokenization, the default
model at 2048 tokens per slot), for the real clients: SDKs, agent frameworks, frontends.

It runs in a scratch directory laid out like the repository after `make run`
(``.run/api-key``, ``.run/gateway-cert.pem``), so README snippets run there unchanged but
for the port."""

from __future__ import annotations

import hashlib
import secrets
import ssl
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.attestation.token import STREAM_TOKEN_COMMENT
from gateway.attestation.transport import AttestedTransport
from gateway.attestation.verifier import (
    SimulatedEvidenceWarning,
    VerificationError,
    VerificationPolicy,
    VerifiedGateway,
    verify_evidence,
    verify_token,
)
from gateway.auth import hash_key
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    RunningGateway,
    echo_gateway_config,
    free_port,
    start_gateway,
    stop_gateway,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"
KEY = "sk-clients-0123456789abcdef"


def default_config(run_dir: Path, port: int) -> dict:
    config = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    config["listener"]["port"] = port
    config["tls"]["cert_out"] = str(run_dir / "gateway-cert.pem")
    config["run_dir"] = str(run_dir)
    config["api_keys"] = [{"name": "local", "sha256": hash_key(KEY)}]
    config["models"][0]["deployments"][0]["slots"] = 2
    return config


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("served")
    run_dir = home / ".run"
    run_dir.mkdir()
    (run_dir / "api-key").write_text(KEY + "\n")
    running = start_gateway(home, default_config(run_dir, free_port()))
    try:
        yield running
    finally:
        stop_gateway(running)


def _embedding_model_name() -> str:
    """The embedding model config/gateway.yaml serves (the deployment marked ``embedding``)."""
    config = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    for model in config["models"]:
        if any(d.get("embedding") for d in model["deployments"]):
            return str(model["name"])
    raise AssertionError("config/gateway.yaml serves no embedding model")


EMBED_MODEL = _embedding_model_name()
# The capture double behind `capture_served`: it records every byte it gets and echoes.
ECHO_MODEL = "echo"


@pytest.fixture(scope="session")
def capture_served(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    """A gateway whose model "echo" is the capture upstream, PII tokenized: what the upstream
    received and what the client got back can both be checked exactly."""
    home = tmp_path_factory.mktemp("capture-served")
    config = echo_gateway_config(home, capture.url)
    config["api_keys"] = [{"name": "local", "sha256": hash_key(KEY)}]
    config["models"][0]["pii"] = {"mode": "tokenize"}
    running = start_gateway(home, config)
    try:
        yield running
    finally:
        stop_gateway(running)


class RecordingTransport(httpx.BaseTransport):
    """Keeps every request body sent and response body received, byte for byte, as the SDK
    above it reads them (streams included), so the response token can be checked after."""

    def __init__(self, verify: ssl.SSLContext) -> None:
        self._inner = httpx.HTTPTransport(verify=verify)
        self.exchanges: list[tuple[httpx.Request, httpx.Response, bytearray]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["x-attestation-nonce"] = secrets.token_urlsafe(16)
        response = self._inner.handle_request(request)
        received = bytearray()
        self.exchanges.append((request, response, received))
        inner = response.stream
        assert isinstance(inner, httpx.SyncByteStream)

        class Tee(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in inner:
                    received.extend(chunk)
                    yield chunk

            def close(self) -> None:
                inner.close()

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=Tee(),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """`RecordingTransport` for async clients (the Agents SDK's AsyncOpenAI)."""

    def __init__(self, verify: ssl.SSLContext) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=verify)
        self.exchanges: list[tuple[httpx.Request, httpx.Response, bytearray]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["x-attestation-nonce"] = secrets.token_urlsafe(16)
        response = await self._inner.handle_async_request(request)
        received = bytearray()
        self.exchanges.append((request, response, received))
        inner = response.stream
        assert isinstance(inner, httpx.AsyncByteStream)

        class Tee(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner:
                    received.extend(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await inner.aclose()

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=Tee(),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture(scope="session")
def served_evidence(served: RunningGateway) -> VerifiedGateway:
    """The served gateway's attestation, verified once (simulated evidence allowed)."""
    return attested_gateway(served)


def attested_gateway(gateway: RunningGateway) -> VerifiedGateway:
    nonce = secrets.token_bytes(32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulatedEvidenceWarning)
        with gateway.client(key=None) as client:
            document = client.get("/v1/attestation", params={"nonce": nonce.hex()}).json()
        return verify_evidence(document, nonce, VerificationPolicy(allow_simulated=True))


def verified_claims(
    evidence: VerifiedGateway, request: httpx.Request, received: bytes, token: str | None = None
) -> dict[str, Any]:
    """The claims of the token that came with ``received`` (the header's, or for a stream the
    token comment at its end, covering every byte before it), checked against the request
    bytes sent and the nonce the recording transport put on it."""
    if token is None:
        start = received.rfind(b"\n" + STREAM_TOKEN_COMMENT)
        assert start >= 0, "the stream carries no attestation token comment"
        covered = received[: start + 1]
        token = received[start + 1 + len(STREAM_TOKEN_COMMENT) :].split(b"\n", 1)[0].decode()
    else:
        covered = received
    return verify_token(
        token,
        evidence,
        response_sha256=hashlib.sha256(covered).hexdigest(),
        request_body=request.content,
        nonce=request.headers.get("x-attestation-nonce"),
        policy=VerificationPolicy(allow_simulated=True),
    )


class TamperingTransport(httpx.BaseTransport):
    """A man in the middle that changes no meaning, only bytes: a space after a JSON body, an
    SSE comment before a stream's first event. A verifying client must notice."""

    def __init__(self, verify: ssl.SSLContext) -> None:
        self._inner = httpx.HTTPTransport(verify=verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path.endswith("/attestation"):
            return response
        body = response.read()
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        body = b": hello\n\n" + body if streamed else body + b" "
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=body,
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


def tampered_attested_sdk(gateway: RunningGateway) -> openai.OpenAI:
    """openai-python over the project's verifying transport, with a tamperer below it."""
    transport = AttestedTransport(
        gateway.url,
        policy=VerificationPolicy(allow_simulated=True),
        inner=TamperingTransport(gateway.tls_context()),
    )
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport, timeout=300),
    )


def raises_verification_error(call: Callable[[], object]) -> VerificationError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulatedEvidenceWarning)
        with pytest.raises(Exception) as info:
            call()
    error: BaseException | None = info.value
    while error is not None and not isinstance(error, VerificationError):
        error = error.__cause__ or error.__context__
    assert isinstance(error, VerificationError), f"not a verification failure: {info.value!r}"
    return error
