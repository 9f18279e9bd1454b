"""Signed, attested responses end to end: the official OpenAI SDK over a verifying transport."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from gateway.attestation.transport import AsyncAttestedTransport, AttestedTransport
from gateway.attestation.verifier import (
    SimulatedEvidenceWarning,
    VerificationError,
    VerificationPolicy,
    verify_evidence,
    verify_token,
)
from tests.gateway.conftest import KEY, MODEL, RunningGateway

pytestmark = pytest.mark.filterwarnings(
    "ignore::gateway.attestation.verifier.SimulatedEvidenceWarning"
)
DEV = VerificationPolicy(allow_simulated=True)
MESSAGES = [{"role": "user", "content": "Name a colour."}]


class Tamper(httpx.BaseTransport):
    """A man in the middle: changes requests or responses passing through."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        on_request: Callable[[httpx.Request], None] | None = None,
        on_response: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None,
    ) -> None:
        self._inner = inner
        self._on_request = on_request
        self._on_response = on_response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._on_request:
            self._on_request(request)
        response = self._inner.handle_request(request)
        return self._on_response(request, response) if self._on_response else response


def sdk(gateway: RunningGateway, transport: httpx.BaseTransport) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )


def attested(
    gateway: RunningGateway, policy: VerificationPolicy = DEV, **tamper: object
) -> AttestedTransport:
    inner = httpx.HTTPTransport(verify=gateway.tls_context())
    if tamper:
        inner = Tamper(inner, **tamper)  # type: ignore[arg-type]
    return AttestedTransport(gateway.url, policy=policy, inner=inner)


def fails_verification(call: Callable[[], object]) -> VerificationError:
    with pytest.raises(Exception) as info:
        call()
    error: BaseException | None = info.value
    while error is not None and not isinstance(error, VerificationError):
        error = error.__cause__ or error.__context__
    assert isinstance(error, VerificationError), f"not a verification failure: {info.value!r}"
    return error


def test_sdk_gets_verified_responses_streamed_and_not(gateway: RunningGateway) -> None:
    client = sdk(gateway, attested(gateway))
    result = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
    assert result.choices[0].message.content
    pieces = []
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert pieces
    for _chunk in client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=4, stream=True
    ):
        pass


def test_async_sdk_gets_verified_responses(gateway: RunningGateway) -> None:
    import asyncio

    async def run() -> str:
        transport = AsyncAttestedTransport(
            gateway.url,
            policy=DEV,
            inner=httpx.AsyncHTTPTransport(verify=gateway.tls_context()),
        )
        client = openai.AsyncOpenAI(
            base_url=gateway.url + "/v1",
            api_key=KEY,
            max_retries=0,
            http_client=httpx.AsyncClient(transport=transport),
        )
        result = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
        text = ""
        async for chunk in await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=6, stream=True
        ):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        return (result.choices[0].message.content or "") + text

    assert asyncio.run(run())


def flip_a_byte(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    if not request.url.path.endswith("/chat/completions"):
        return response
    body = bytearray(response.read())
    index = body.index(b'"content":"') + len(b'"content":"')
    body[index] ^= 0x01
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=bytes(body),
        extensions=response.extensions,
    )


def test_a_flipped_byte_in_the_body_fails(gateway: RunningGateway) -> None:
    client = sdk(gateway, attested(gateway, on_response=flip_a_byte))
    fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
    )


def test_a_flipped_byte_in_a_stream_fails(gateway: RunningGateway) -> None:
    def flip_stream(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):
            return response
        body = bytearray(response.read())
        index = body.index(b'"content":"', 200) + len(b'"content":"')
        body[index] ^= 0x01
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=bytes(body),
            extensions=response.extensions,
        )

    client = sdk(gateway, attested(gateway, on_response=flip_stream))

    def consume() -> None:
        for _ in client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=8, stream=True
        ):
            pass

    fails_verification(consume)


def test_a_token_replayed_onto_another_response_fails(gateway: RunningGateway) -> None:
    saved: list[str] = []

    def replay(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if "x-attestation-token" in response.headers:
            if not saved:
                saved.append(response.headers["x-attestation-token"])
            else:
                headers = dict(response.headers)
                headers["x-attestation-token"] = saved[0]
                return httpx.Response(
                    response.status_code,
                    headers=headers,
                    content=response.read(),
                    extensions=response.extensions,
                )
        return response

    client = sdk(gateway, attested(gateway, on_response=replay))
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    )


def test_a_wrong_nonce_fails(gateway: RunningGateway) -> None:
    def swap_nonce(request: httpx.Request) -> None:
        if "x-attestation-nonce" in request.headers:
            request.headers["x-attestation-nonce"] = "someone-elses-nonce"

    client = sdk(gateway, attested(gateway, on_request=swap_nonce))
    fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    )


def test_a_key_not_bound_in_the_evidence_fails(gateway: RunningGateway) -> None:
    def swap_key(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if not request.url.path.endswith("/v1/attestation"):
            return response
        document = json.loads(response.read())
        document["keyset"]["signing_key"]["x"] = document["keyset"]["signing_key"]["y"]
        return httpx.Response(
            200,
            headers={"content-type": "application/json"},
            content=json.dumps(document).encode(),
            extensions=response.extensions,
        )

    client = sdk(gateway, attested(gateway, on_response=swap_key))
    fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    )


def test_an_expired_token_fails(gateway: RunningGateway) -> None:
    future = VerificationPolicy(allow_simulated=True, now=lambda: time.time() + 7200)
    client = sdk(gateway, attested(gateway, policy=future))
    fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    )


def test_simulated_evidence_without_the_flag_fails(gateway: RunningGateway) -> None:
    client = sdk(gateway, attested(gateway, policy=VerificationPolicy()))
    error = fails_verification(
        lambda: client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    )
    assert "SIMULATED" in str(error)


def test_error_responses_are_signed_and_tokens_are_retrievable(gateway: RunningGateway) -> None:
    nonce = "00" * 32
    with gateway.client(None) as client:
        document = client.get(f"/v1/attestation?nonce={nonce}").json()
        assert document["tee"] == "simulated" and document["simulated"] is True
        assert "SIMULATED" in document["warning"]
        jwks = client.get("/.well-known/jwks.json").json()
    with pytest.warns(SimulatedEvidenceWarning):
        verified = verify_evidence(document, bytes.fromhex(nonce), DEV)
    assert jwks["keys"][0]["kid"] == verified.kid

    body = json.dumps({"model": MODEL, "messages": MESSAGES, "temperature": 7}).encode()
    with gateway.client() as client:
        response = client.post(
            "/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", "x-attestation-nonce": "nonce-for-error"},
        )
    assert response.status_code == 400
    claims = verify_token(
        response.headers["x-attestation-token"],
        verified,
        response_sha256=hashlib.sha256(response.content).hexdigest(),
        request_body=body,
        nonce="nonce-for-error",
    )
    assert claims["status"] == 400

    with gateway.client() as client:
        ok = client.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "max_tokens": 3}
        )
        completion_id = ok.json()["id"]
        stored = client.get(f"/v1/attestations/{completion_id}").json()
        missing = client.get("/v1/attestations/chatcmpl-none")
    assert stored["attestation_token"] == ok.headers["x-attestation-token"]
    claims = verify_token(
        stored["attestation_token"],
        verified,
        response_sha256=hashlib.sha256(ok.content).hexdigest(),
    )
    assert claims["jti"] == completion_id
    assert claims["model"]["weights_sha256"] and claims["upstream"]["in_guest"] is True
    assert claims["pii"]["policy_digest"]
    assert missing.status_code == 404


def test_invalid_nonces_are_rejected(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        assert client.get("/v1/attestation?nonce=xyz").status_code == 400
        bad = client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": MESSAGES},
            headers={"x-attestation-nonce": "bad nonce\twith spaces"},
        )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-attestation-nonce"


def test_verify_cli_refuses_simulated_unless_allowed(gateway: RunningGateway) -> None:
    base = [
        sys.executable,
        "-m",
        "gateway",
        "verify",
        "--url",
        gateway.url,
        "--cacert",
        str(gateway.cert),
    ]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "SIMULATED" in refused.stderr
    allowed = subprocess.run(
        [*base, "--allow-simulated"], capture_output=True, text=True, timeout=60
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "SIMULATED EVIDENCE" in allowed.stderr
    assert json.loads(allowed.stdout)["tee"] == "simulated"
