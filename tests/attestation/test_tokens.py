"""Response tokens and evidence documents, verified the way a client does."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import replace

import pytest

from confidential_common.tee.providers import SimulatedProvider
from gateway.attestation.service import AttestationService
from gateway.attestation.token import ResponseFacts
from gateway.attestation.verifier import (
    SimulatedEvidenceWarning,
    VerificationError,
    VerificationPolicy,
    VerifiedGateway,
    verify_evidence,
    verify_token,
)
from gateway.config import KeyBrokerKind
from gateway.upstreams.base import SealedWeights, Weights

NONCE = b"\x01" * 32
DEV = VerificationPolicy(allow_simulated=True)


@pytest.fixture(scope="module")
def service() -> AttestationService:
    return AttestationService(
        SimulatedProvider("c0de" * 16),
        tls_spki_sha256="ab" * 32,
        issuer="test-gateway",
        token_ttl_s=60,
        store_ttl_s=60,
    )


@pytest.fixture(scope="module")
def gateway(service: AttestationService) -> VerifiedGateway:
    with pytest.warns(SimulatedEvidenceWarning):
        return verify_evidence(service.evidence_document(NONCE.hex()), NONCE, DEV)


def facts(
    body: bytes, *, nonce: str | None = "n0nce-123", jti: str = "chatcmpl-1"
) -> ResponseFacts:
    return ResponseFacts(
        jti=jti,
        request_sha256=hashlib.sha256(b"request").hexdigest(),
        response_sha256=hashlib.sha256(body).hexdigest(),
        status=200,
        nonce=nonce,
        model={"name": "m", "weights_sha256": "f" * 64},
        pii={"policy_digest": "d" * 64, "counts": {"PERSON": 1}},
        upstream={"name": "m/local-0.0", "kind": "local", "in_guest": True},
    )


def check(token: str, gateway: VerifiedGateway, body: bytes, **kwargs: object) -> dict:
    return verify_token(
        token,
        gateway,
        response_sha256=hashlib.sha256(body).hexdigest(),
        request_body=b"request",
        **kwargs,  # type: ignore[arg-type]
    )


OWNER = "a" * 64


def test_token_verifies_and_carries_the_claims(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    token = service.sign(facts(b"answer"), owner=OWNER)
    claims = check(token, gateway, b"answer", nonce="n0nce-123")
    assert claims["tee"] == "simulated"
    assert claims["jti"] == "chatcmpl-1" and claims["eat_nonce"] == "n0nce-123"
    assert claims["pii"]["counts"] == {"PERSON": 1}
    assert claims["upstream"]["in_guest"] is True
    assert asyncio.run(service.stored("chatcmpl-1", OWNER)) == token
    # Another key does not read it; a second token for the id does not replace it.
    assert asyncio.run(service.stored("chatcmpl-1", "b" * 64)) is None
    service.sign(facts(b"other answer"), owner="b" * 64)
    assert asyncio.run(service.stored("chatcmpl-1", OWNER)) == token
    assert asyncio.run(service.stored("chatcmpl-1", "b" * 64)) is None


def test_unauthenticated_tokens_are_not_stored(service: AttestationService) -> None:
    service.sign(replace(facts(b"x"), jti="chatcmpl-anonymous"))
    assert asyncio.run(service.stored("chatcmpl-anonymous", OWNER)) is None


def test_flipped_byte_in_the_response_fails(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    token = service.sign(facts(b"answer"))
    with pytest.raises(VerificationError, match="response bytes"):
        check(token, gateway, b"answeR")


def test_token_replayed_onto_another_response_fails(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    first = service.sign(facts(b"first answer", nonce="nonce-aaaa"))
    with pytest.raises(VerificationError):
        check(first, gateway, b"second answer", nonce="nonce-bbbb")
    with pytest.raises(VerificationError, match="nonce"):
        check(first, gateway, b"first answer", nonce="nonce-bbbb")


def test_tampered_signature_or_claims_fail(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    header, payload, signature = service.sign(facts(b"x")).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["pii"]["counts"] = {}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(VerificationError, match="signature"):
        check(f"{header}.{forged}.{signature}", gateway, b"x")


def test_expired_token_fails(service: AttestationService, gateway: VerifiedGateway) -> None:
    token = service.sign(facts(b"x"))
    later = VerificationPolicy(now=lambda: time.time() + 3600)
    with pytest.raises(VerificationError, match="expired"):
        check(token, gateway, b"x", policy=later)


def test_key_not_bound_in_the_evidence_fails(service: AttestationService) -> None:
    document = service.evidence_document(NONCE.hex())
    other = AttestationService(
        SimulatedProvider("0" * 64),
        tls_spki_sha256="ab" * 32,
        issuer="x",
        token_ttl_s=60,
        store_ttl_s=60,
    )
    document["keyset"] = other.keyset.document()
    document["keyset_digest"] = other.keyset_digest
    with pytest.raises(VerificationError, match="does not bind"):
        verify_evidence(document, NONCE, DEV)


def test_wrong_nonce_in_the_evidence_fails(service: AttestationService) -> None:
    document = service.evidence_document(NONCE.hex())
    with pytest.raises(VerificationError, match="does not bind"):
        verify_evidence(document, b"\x02" * 32, DEV)


def test_simulated_evidence_needs_the_explicit_flag(service: AttestationService) -> None:
    with pytest.raises(VerificationError, match="SIMULATED"):
        verify_evidence(service.evidence_document(NONCE.hex()), NONCE, VerificationPolicy())


def test_token_from_another_gateway_fails(gateway: VerifiedGateway) -> None:
    other = AttestationService(
        SimulatedProvider("0" * 64),
        tls_spki_sha256="ab" * 32,
        issuer="x",
        token_ttl_s=60,
        store_ttl_s=60,
    )
    with pytest.raises(VerificationError, match="attested key"):
        check(other.sign(facts(b"x")), gateway, b"x")


def test_expected_model_and_policy_are_enforced(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    token = service.sign(facts(b"x"))
    with pytest.raises(VerificationError, match="weights"):
        check(token, gateway, b"x", policy=VerificationPolicy(expected_weights_sha256="0" * 64))
    with pytest.raises(VerificationError, match="PII policy"):
        check(token, gateway, b"x", policy=VerificationPolicy(expected_policy_digest="0" * 64))
    check(
        token,
        gateway,
        b"x",
        policy=VerificationPolicy(
            expected_weights_sha256="f" * 64, expected_policy_digest="d" * 64
        ),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], token: str) -> tuple[str, bytes]:
    """The signing input of ``token``'s claims under another header."""
    payload = token.split(".")[1]
    head = _b64(json.dumps(header, separators=(",", ":")).encode())
    return f"{head}.{payload}", f"{head}.{payload}".encode()


def test_a_token_with_alg_none_is_refused(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    unsigned, _ = _forge(
        {"alg": "none", "typ": "JWT", "kid": gateway.kid}, service.sign(facts(b"x"))
    )
    with pytest.raises(VerificationError, match="algorithm 'none' is not accepted"):
        check(f"{unsigned}.", gateway, b"x")


def test_an_hs256_token_keyed_with_the_public_key_is_refused(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    import hmac

    from jwcrypto.jwk import JWK

    token = service.sign(facts(b"x"))
    # The secrets a confused HMAC verifier would use: the public key as PEM, and as its JWK.
    public_pem = JWK(**gateway.keyset.signing_jwk).export_to_pem()
    for secret in (public_pem, json.dumps(gateway.keyset.signing_jwk).encode()):
        signing_input, data = _forge({"alg": "HS256", "typ": "JWT", "kid": gateway.kid}, token)
        mac = hmac.new(secret, data, "sha256").digest()
        with pytest.raises(VerificationError, match="algorithm 'HS256' is not accepted"):
            check(f"{signing_input}.{_b64(mac)}", gateway, b"x")


def test_a_token_signed_by_another_key_under_the_attested_kid_is_refused(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    from confidential_common.tee.keys import SigningKey

    impostor = SigningKey()
    header = json.dumps({"alg": "ES256", "typ": "JWT", "kid": gateway.kid}, separators=(",", ":"))
    payload = base64.urlsafe_b64decode(service.sign(facts(b"x")).split(".")[1] + "==")
    forged = impostor.sign_compact(header, payload)
    with pytest.raises(VerificationError, match="signature is invalid"):
        check(forged, gateway, b"x")


def test_token_bytes_keep_their_format(service: AttestationService) -> None:
    token = service.sign(facts(b"x"))
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = base64.urlsafe_b64decode(header_b64 + "==")
    assert header == (b'{"alg":"ES256","typ":"JWT","kid":"' + service.key.kid.encode() + b'"}')
    payload = base64.urlsafe_b64decode(payload_b64 + "==")
    claims = json.loads(payload)
    assert payload == json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(base64.urlsafe_b64decode(signature_b64 + "==")) == 64  # raw r || s
    assert "=" not in token


def test_jwks_is_the_public_signing_key_with_its_rfc7638_thumbprint(
    service: AttestationService,
) -> None:
    from confidential_common.tee.keys import canonical_json

    (key,) = service.jwks()["keys"]
    assert "d" not in key
    assert key["kty"] == "EC" and key["crv"] == "P-256"
    assert key["alg"] == "ES256" and key["use"] == "sig"
    members = canonical_json({name: key[name] for name in ("crv", "kty", "x", "y")})
    assert key["kid"] == _b64(hashlib.sha256(members).digest()) == service.key.kid
    assert {k: key[k] for k in ("x", "y")} == {k: service.keyset.signing_jwk[k] for k in ("x", "y")}


# -- sealed weights: the model claim the gateway signs, and the policy that checks it ------

PLAIN_SHA = "ab" * 32
SEALED_SHA = "cd" * 32
KEY_ID = "ef" * 16


def signed_by_the_gateway(
    service: AttestationService, weights: Weights | None, status: int = 200
) -> str:
    """A token as the gateway signs one for an answer a local engine with ``weights`` gave."""
    from gateway.config import APIKeyConfig
    from gateway.exchange import Exchange, RequestRecord, SigningFacts
    from gateway.signing import ResponseSigner
    from gateway.upstreams.local_engine import DESCRIPTION
    from gateway.upstreams.router import Routed

    request_sha256 = hashlib.sha256(b"request").hexdigest()
    facts = SigningFacts("req-1", request_sha256=request_sha256, model="m")
    record = RequestRecord("chat", facts, 0.0)
    record.exchange = Exchange(
        "req-1",
        "chat/completions",
        APIKeyConfig(name="k", sha256=OWNER),
        "m",
        b"request",
        {},
        routed=Routed("m", "m/local-0.0", DESCRIPTION, weights),
    )
    return ResponseSigner(service).sign(record, status, hashlib.sha256(b"x").hexdigest())


def sealed_weights(broker: KeyBrokerKind = "kbs") -> Weights:
    return Weights(PLAIN_SHA, SealedWeights(SEALED_SHA, KEY_ID, broker))


def test_a_sealed_models_token_says_how_its_weights_were_sealed(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    claims = check(signed_by_the_gateway(service, sealed_weights("cdh")), gateway, b"x")
    assert claims["model"] == {
        "name": "m",
        "group": "m",
        "weights_sha256": PLAIN_SHA,
        "sealed": {"sha256": SEALED_SHA, "key_id": KEY_ID, "key_broker": "cdh"},
    }


def test_a_plain_models_token_has_no_sealed_claim(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    claims = check(signed_by_the_gateway(service, Weights(PLAIN_SHA)), gateway, b"x")
    assert claims["model"] == {"name": "m", "group": "m", "weights_sha256": PLAIN_SHA}
    unknown = check(signed_by_the_gateway(service, None), gateway, b"x")
    assert unknown["model"] == {"name": "m", "group": "m", "weights_sha256": None}


def test_require_sealed_accepts_only_keys_released_after_attestation(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    policy = VerificationPolicy(require_sealed=True)
    for broker in ("kbs", "cdh"):
        token = signed_by_the_gateway(service, sealed_weights(broker))
        assert check(token, gateway, b"x", policy=policy)["model"]["sealed"]["key_broker"] == broker
    with pytest.raises(VerificationError, match="not sealed"):
        check(signed_by_the_gateway(service, Weights(PLAIN_SHA)), gateway, b"x", policy=policy)
    with pytest.raises(VerificationError, match="kbs or cdh"):
        check(signed_by_the_gateway(service, sealed_weights("file")), gateway, b"x", policy=policy)


def test_an_expected_key_id_pins_the_key_of_any_broker(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    token = signed_by_the_gateway(service, sealed_weights("file"))
    check(token, gateway, b"x", policy=VerificationPolicy(expected_key_id=KEY_ID.upper()))
    with pytest.raises(VerificationError, match="another key"):
        check(token, gateway, b"x", policy=VerificationPolicy(expected_key_id="00" * 16))
    plain = signed_by_the_gateway(service, Weights(PLAIN_SHA))
    with pytest.raises(VerificationError, match="not sealed"):
        check(plain, gateway, b"x", policy=VerificationPolicy(expected_key_id=KEY_ID))


def test_an_error_answer_is_not_held_to_the_sealed_policy(
    service: AttestationService, gateway: VerifiedGateway
) -> None:
    token = signed_by_the_gateway(service, None, status=429)
    policy = VerificationPolicy(require_sealed=True, expected_key_id=KEY_ID)
    assert check(token, gateway, b"x", policy=policy)["status"] == 429


def test_the_verify_cli_carries_the_model_policy() -> None:
    from gateway.attestation.verify_cli import policy_from_args
    from gateway.cli import build_parser

    args = build_parser().parse_args(["verify", "--url", "https://gw:8443"])
    assert policy_from_args(args).require_sealed is False
    args = build_parser().parse_args(
        [
            "verify",
            "--url",
            "https://gw:8443",
            "--expect-weights-sha256",
            PLAIN_SHA,
            "--require-sealed",
            "--expect-key-id",
            KEY_ID,
        ]
    )
    policy = policy_from_args(args)
    assert policy.expected_weights_sha256 == PLAIN_SHA
    assert policy.require_sealed is True and policy.expected_key_id == KEY_ID
