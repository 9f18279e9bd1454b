"""Attestation hardening (issue 13): one test per finding, each asserting the guarantee.

1. A debug guest is refused by default, and a TCB floor holds whatever measurements are pinned.
2. Response tokens are verified by jwcrypto against an algorithm allow-list.
3. A stream that lost its token fails in the verifying transport, before the SDK sees [DONE].
4. The certificate the gateway serves is a leaf (CA:FALSE, serverAuth) that clients can still
   pin, and nothing signed with its key is trusted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from confidential_common.tee.keys import KeySet, SigningKey
from confidential_common.tee.providers import SimulatedProvider
from confidential_common.tls import self_signed
from gateway.attestation.service import AttestationService
from gateway.attestation.token import STREAM_TOKEN_COMMENT, ResponseFacts
from gateway.attestation.transport import AttestedTransport
from gateway.attestation.verifier import (
    VerificationError,
    VerificationPolicy,
    verify_evidence,
    verify_token,
)
from gateway.upstreams.attested_remote import pinned_context
from tests.conftest import CaptureUpstream
from tests.gateway.conftest import (
    KEY,
    RunningGateway,
    echo_gateway_config,
    start_gateway,
    stop_gateway,
)
from tests.support.shared_data import shared_data

pytestmark = pytest.mark.filterwarnings(
    "ignore::gateway.attestation.verifier.SimulatedEvidenceWarning"
)
DEV = VerificationPolicy(allow_simulated=True)
MESSAGES = [{"role": "user", "content": "Say blue."}]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, capture: CaptureUpstream
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("attestation-hardening")
    config = echo_gateway_config(tmp, capture.url)
    running = start_gateway(tmp, config)
    try:
        yield running
    finally:
        stop_gateway(running)


# 1. Debug guests and the TCB floor ----------------------------------------------------------


def _evidence_document(blob: bytes, evidence_format: str) -> dict[str, Any]:
    return {
        "keyset": KeySet(SigningKey().jwk, "ab" * 32).document(),
        "evidence": base64.b64encode(blob).decode(),
        "evidence_format": evidence_format,
    }


def test_debug_guests_are_refused_by_default_and_the_tcb_floor_holds_whatever_is_pinned() -> None:
    data = shared_data("attestation")
    expected = json.loads((data / "expected.json").read_text())
    snp = next(v for v in expected["snp"] if v["file"] == "snp/go-sev-guest/attestation.bin")
    assert snp["policy_debug_allowed"] and snp["signature_valid"]  # a real, signed debug guest
    inside = datetime.datetime.fromisoformat(snp["vcek_not_before"].replace("Z", "+00:00"))
    pinned = {
        "snp_vcek": (data / snp["vcek"]).read_bytes(),
        "snp_ask_ark": (data / snp["ask_ark_chain"]).read_bytes(),
        "now": lambda: inside.timestamp() + 86400,
        "expected_measurements": {"measurement": snp["fields"]["measurement"]},
    }
    document = _evidence_document((data / snp["file"]).read_bytes(), "sev-snp-report")
    with pytest.raises(VerificationError) as info:
        verify_evidence(document, b"\x00" * 32, VerificationPolicy(**pinned))
    assert str(info.value).startswith(
        "guest policy allows debugging (DEBUG bit set); a debug guest's memory is readable by "
        "the host"
    )
    with pytest.raises(VerificationError, match="does not bind"):  # the opt-in moves on
        verify_evidence(document, b"\x00" * 32, VerificationPolicy(allow_debug=True, **pinned))

    spr = next(v for v in expected["tdx"] if v["file"].endswith("tdx_prod_quote_SPR_E4.dat"))
    quote = _evidence_document((data / spr["file"]).read_bytes(), "tdx-quote")
    mrtd_pinned = VerificationPolicy(expected_measurements={"mrtd": spr["td_report"]["mr_td"]})
    with pytest.raises(VerificationError, match=r"TEE_TCB_SVN 03000400.* is below the minimum"):
        verify_evidence(quote, b"\x00" * 32, mrtd_pinned)


# 2. Token verification through jwcrypto with an allow-list ---------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tokens_with_alg_none_hs256_confusion_or_another_key_are_refused() -> None:
    service = AttestationService(
        SimulatedProvider("c0de" * 16),
        tls_spki_sha256="ab" * 32,
        issuer="t",
        token_ttl_s=60,
        store_ttl_s=60,
    )
    nonce = b"\x01" * 32
    attested = verify_evidence(service.evidence_document(nonce.hex()), nonce, DEV)
    body = b'{"answer":"blue"}'
    digest = hashlib.sha256(body).hexdigest()
    token = service.sign(ResponseFacts("c1", None, digest, 200))
    verify_token(token, attested, response_sha256=digest)  # the genuine one passes
    payload = token.split(".")[1]

    def header(alg: str) -> str:
        text = json.dumps({"alg": alg, "typ": "JWT", "kid": attested.kid}, separators=(",", ":"))
        return _b64(text.encode())

    none = f"{header('none')}.{payload}."
    secret = json.dumps(attested.keyset.signing_jwk).encode()
    signing_input = f"{header('HS256')}.{payload}"
    hs256 = f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), 'sha256').digest())}"
    claims = base64.urlsafe_b64decode(payload + "==")
    plain_header = json.dumps({"alg": "ES256", "typ": "JWT", "kid": attested.kid})
    other_key = SigningKey().sign_compact(plain_header, claims)
    for forged, reason in (
        (none, "algorithm 'none' is not accepted"),
        (hs256, "algorithm 'HS256' is not accepted"),
        (other_key, "signature is invalid"),
    ):
        with pytest.raises(VerificationError, match=reason):
            verify_token(forged, attested, response_sha256=digest)


# 3. A stream without its token --------------------------------------------------------------


class StripToken(httpx.BaseTransport):
    """A man in the middle that removes the token from every stream (both carriers)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        events = response.read().split(b"\n\n")
        kept = []
        for e in events:
            if e.startswith(STREAM_TOKEN_COMMENT):
                continue
            if e.startswith(b"data: {") and b'"attestation_token"' in e:
                chunk = json.loads(e[6:])
                del chunk["attestation_token"]
                e = b"data: " + json.dumps(chunk).encode()
            kept.append(e)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=b"\n\n".join(kept),
            extensions=response.extensions,
        )


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_stripped_of_its_token_fails_through_the_transport(
    gateway: RunningGateway, include_usage: bool
) -> None:
    def sdk(inner: httpx.BaseTransport) -> openai.OpenAI:
        transport = AttestedTransport(gateway.url, policy=DEV, inner=inner)
        return openai.OpenAI(
            base_url=gateway.url + "/v1",
            api_key=KEY,
            max_retries=0,
            http_client=httpx.Client(transport=transport),
        )

    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}

    def read(client: openai.OpenAI) -> str:
        text = ""
        for chunk in client.chat.completions.create(
            model="echo", messages=MESSAGES, stream=True, **options
        ):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        return text

    direct = httpx.HTTPTransport(verify=gateway.tls_context())
    assert read(sdk(direct)) == "Say blue."
    stripped = StripToken(httpx.HTTPTransport(verify=gateway.tls_context()))
    with pytest.raises(VerificationError, match=r"reached \[DONE\] without a valid attestation"):
        read(sdk(stripped))


# 4. The served certificate is a leaf --------------------------------------------------------


def _served_certificate(gateway: RunningGateway) -> x509.Certificate:
    port = int(gateway.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        gateway.tls_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(True)
    assert der
    return x509.load_der_x509_certificate(der)


class _TLSServer:
    """A one-page HTTPS server on loopback serving ``chain_pem`` with ``key_pem``."""

    def __init__(self, tmp: Path, chain_pem: bytes, key_pem: bytes) -> None:
        (tmp / "chain.pem").write_bytes(chain_pem)
        (tmp / "key.pem").write_bytes(key_pem)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self) -> None:
        self._listener.close()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _signed_by(issuer_cert: bytes, issuer_key: bytes) -> tuple[bytes, bytes]:
    """A localhost certificate issued with another certificate's key (PEM chain, PEM key)."""
    parent = x509.load_pem_x509_certificate(issuer_cert)
    signer = serialization.load_pem_private_key(issuer_key, None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    child = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(parent.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _pem(child) + issuer_cert, key_pem


def _trusted_by_clients(port: int, cafile: Path) -> dict[str, bool]:
    """Whether Python's ssl, httpx, curl and Node trust the server when pinning ``cafile``."""
    url = f"https://localhost:{port}/"
    verdicts = {}
    try:
        httpx.get(url, verify=ssl.create_default_context(cafile=str(cafile)), timeout=30)
        verdicts["python"] = True
    except httpx.ConnectError:
        verdicts["python"] = False
    if shutil.which("curl"):
        run = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--cacert", str(cafile), url], timeout=60
        )
        verdicts["curl"] = run.returncode == 0
    if shutil.which("node"):
        ca = json.dumps(str(cafile))
        script = (
            f"require('https').get({{host:'localhost',port:{port},"
            f"ca:require('fs').readFileSync({ca})}},r=>process.exit(r.statusCode===200?0:3))"
            ".on('error',()=>process.exit(2))"
        )
        verdicts["node"] = subprocess.run(["node", "-e", script], timeout=60).returncode == 0
    return verdicts


def test_the_served_certificate_is_a_pinnable_leaf_that_cannot_sign(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    cert = _served_certificate(gateway)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    assert not usage.key_encipherment  # an EC key: no RSA key transport
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _pem(cert) == gateway.cert.read_bytes()  # the file clients pin is the served leaf

    # The attested key set binds this leaf's key: the verifying transport checks it per response.
    transport = AttestedTransport(
        gateway.url, policy=DEV, inner=httpx.HTTPTransport(verify=gateway.tls_context())
    )
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert transport.gateway.keyset.tls_spki_sha256 == hashlib.sha256(spki).hexdigest()

    # The same kind of leaf, with its key in hand: pinned, it is trusted by every client ...
    leaf_pem, leaf_key = self_signed(["localhost", "127.0.0.1"])
    (tmp_path / "pinned.pem").write_bytes(leaf_pem)
    server = _TLSServer(tmp_path, leaf_pem, leaf_key)
    try:
        verdicts = _trusted_by_clients(server.port, tmp_path / "pinned.pem")
        assert verdicts and all(verdicts.values()), verdicts
        der = x509.load_pem_x509_certificate(leaf_pem).public_bytes(serialization.Encoding.DER)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
            pinned_context(der).wrap_socket(raw, server_hostname="localhost"),
        ):
            pass  # an attested remote engine's pinned key still connects
    finally:
        server.close()
    # ... but a certificate issued with its key is trusted by none of them.
    chain_pem, child_key = _signed_by(leaf_pem, leaf_key)
    server = _TLSServer(tmp_path, chain_pem, child_key)
    try:
        verdicts = _trusted_by_clients(server.port, tmp_path / "pinned.pem")
        assert verdicts and not any(verdicts.values()), verdicts
    finally:
        server.close()
