"""Client-side verification: evidence, key binding, TLS identity, and response tokens.

``verify_evidence`` turns an ``/v1/attestation`` document plus the nonce the client chose
into a ``VerifiedGateway``: the hardware vouches (TDX via dcap-qvl and Intel collateral,
SEV-SNP via the VCEK/ASK/ARK chain) that its report carries
``SHA-512(domain || keyset_digest || nonce)``, so the key set was held inside that TEE.
Measurements come from the verified evidence itself, never from the document's claims.
``verify_token`` then checks a response token against that key set and the exact bytes.
Genuine evidence must also pass the TEE policy (``tee_policy``): no debug guest unless
``allow_debug``, and a TCB at or above the floor, checked on the parsed fields before any
signature. Simulated evidence passes only with ``allow_simulated`` and always warns.
Token signatures are checked by jwcrypto with ES256 as the only accepted algorithm.
A policy may pin what served an answer: the weights' hash, and that they were sealed at rest
with a key released after attestation (``require_sealed``) or with a given key
(``expected_key_id``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import load_der_x509_certificate
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK
from jwcrypto.jws import JWS

from confidential_common.tee.keys import (
    SIGNING_ALG,
    KeySet,
    b64url_decode,
    canonical_json,
    jwk_public_key,
    report_data_for,
)
from confidential_common.tee.quotes import EvidenceFormatError, parse_snp_report, parse_tdx_quote
from gateway.attestation.snp_verify import SnpVerificationError, verify_snp_report
from gateway.attestation.tdx_verify import (
    ACCEPTED_STATUSES,
    TdxVerificationError,
    verify_tdx_quote,
)
from gateway.attestation.tee_policy import (
    DEFAULT_SNP_MIN_TCB,
    DEFAULT_TDX_MIN_TEE_TCB_SVN,
    SnpTcb,
    TeePolicyError,
    check_snp_report,
    check_tdx_quote,
)

log = logging.getLogger("gateway.verifier")
CLOCK_SKEW_S = 60
# The only JWS algorithm a token may use: never "none", never HMAC keyed with the public key.
ALLOWED_TOKEN_ALGS = (SIGNING_ALG,)


class VerificationError(Exception):
    """The gateway, its evidence or a response failed verification; never trust the data."""


class SimulatedEvidenceWarning(UserWarning):
    """Emitted whenever simulated (software-only) evidence is accepted."""


@dataclass
class VerificationPolicy:
    allow_simulated: bool = False
    # Debug guests (readable by the host) only for development.
    allow_debug: bool = False
    # TCB floors whatever else is pinned; None means no floor (see tee_policy for defaults).
    snp_min_tcb: SnpTcb | None = DEFAULT_SNP_MIN_TCB
    tdx_min_tee_tcb_svn: bytes | None = DEFAULT_TDX_MIN_TEE_TCB_SVN
    tdx_collateral: str | None = None
    tdx_accepted_statuses: frozenset[str] = ACCEPTED_STATUSES
    snp_vcek: bytes | None = None
    snp_ask_ark: bytes | None = None
    snp_ark_sha256: str | None = None
    expected_measurements: dict[str, str] = field(default_factory=dict)
    expected_weights_sha256: str | None = None
    # Sealed weights (the token's ``model.sealed``) whose key a KBS or the in-guest CDH
    # released after attestation; a development key file does not count.
    require_sealed: bool = False
    # The id of the key the weights were sealed with (any broker, the file one included).
    expected_key_id: str | None = None
    expected_policy_digest: str | None = None
    require_in_guest: bool = False
    now: Callable[[], float] = time.time


@dataclass(frozen=True)
class VerifiedGateway:
    tee: str
    keyset: KeySet
    keyset_digest: str
    measurements: dict[str, str]
    public_key: JWK
    kid: str


def spki_sha256_of_der_certificate(der: bytes) -> str:
    cert = load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _verify_simulated(blob: bytes, expected: bytes, policy: VerificationPolicy) -> dict[str, str]:
    if not policy.allow_simulated:
        raise VerificationError(
            "the gateway presented SIMULATED evidence (no hardware TEE); refusing. Pass "
            "allow_simulated / --allow-simulated only for development."
        )
    document = json.loads(blob)
    signature = b64url_decode(document.pop("signature"))
    key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(document["platform_key"]))
    try:
        key.verify(signature, canonical_json(document))
    except InvalidSignature:
        raise VerificationError("the simulated evidence document's signature is invalid") from None
    if bytes.fromhex(document["report_data"]) != expected:
        raise VerificationError("the evidence does not bind this key set and nonce")
    warnings.warn(
        "accepted SIMULATED attestation evidence: no hardware vouches for this gateway",
        SimulatedEvidenceWarning,
        stacklevel=3,
    )
    log.warning("accepted SIMULATED attestation evidence: no hardware vouches for this gateway")
    return dict(document["measurements"])


def verify_evidence(
    document: dict[str, Any], nonce: bytes, policy: VerificationPolicy
) -> VerifiedGateway:
    try:
        keyset = KeySet.from_document(document["keyset"])
        blob = base64.b64decode(document["evidence"], validate=True)
        evidence_format = str(document["evidence_format"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"malformed attestation document ({exc})") from None
    digest = keyset.digest
    if document.get("keyset_digest") not in (None, digest):
        raise VerificationError("the document's keyset_digest does not match its key set")
    expected = report_data_for(digest, nonce)
    try:
        if evidence_format == "tdx-quote":
            quote = parse_tdx_quote(blob)
            check_tdx_quote(
                quote,
                allow_debug=policy.allow_debug,
                min_tee_tcb_svn=policy.tdx_min_tee_tcb_svn,
            )
            if quote.report_data != expected:
                raise VerificationError("the TDX quote does not bind this key set and nonce")
            if policy.tdx_collateral is None:
                raise VerificationError("TDX evidence needs Intel collateral to be verified")
            verify_tdx_quote(
                blob,
                policy.tdx_collateral,
                now=int(policy.now()),
                accepted_statuses=policy.tdx_accepted_statuses,
            )
            tee, measurements = "tdx", quote.measurements()
        elif evidence_format == "sev-snp-report":
            report = parse_snp_report(blob)
            check_snp_report(report, allow_debug=policy.allow_debug, min_tcb=policy.snp_min_tcb)
            if report.report_data != expected:
                raise VerificationError("the SEV-SNP report does not bind this key set and nonce")
            if policy.snp_vcek is None or policy.snp_ask_ark is None:
                raise VerificationError("SEV-SNP evidence needs the VCEK and the ASK/ARK chain")
            verify_snp_report(
                report,
                vcek=policy.snp_vcek,
                ask_ark_pem=policy.snp_ask_ark,
                now=datetime.datetime.fromtimestamp(policy.now(), datetime.UTC),
                expected_ark_sha256=policy.snp_ark_sha256,
            )
            tee, measurements = "sev-snp", report.measurements()
        elif evidence_format == "simulated-v1":
            tee, measurements = "simulated", _verify_simulated(blob, expected, policy)
        else:
            raise VerificationError(f"unknown evidence format {evidence_format!r}")
    except (EvidenceFormatError, TeePolicyError, TdxVerificationError, SnpVerificationError) as exc:
        raise VerificationError(str(exc)) from None
    for name, value in policy.expected_measurements.items():
        if measurements.get(name, "").lower() != value.lower():
            raise VerificationError(f"measurement {name} is not the expected value")
    try:
        public_key = jwk_public_key(keyset.signing_jwk)
    except (KeyError, ValueError) as exc:
        raise VerificationError(f"the key set's signing key is unusable ({exc})") from None
    return VerifiedGateway(tee, keyset, digest, measurements, public_key, keyset.signing_jwk["kid"])


def decode_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(payload_b64))
        signature = b64url_decode(signature_b64)
    except ValueError as exc:
        raise VerificationError(f"malformed response token ({exc})") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise VerificationError("malformed response token (header or claims not an object)")
    return header, claims, f"{header_b64}.{payload_b64}".encode("ascii"), signature


def verified_token_claims(token: str, gateway: VerifiedGateway) -> dict[str, Any]:
    """The claims of ``token`` if the attested key signed it with an allowed algorithm."""
    header, _, _, _ = decode_token(token)
    if header.get("alg") not in ALLOWED_TOKEN_ALGS:
        raise VerificationError(
            f"the token's algorithm {header.get('alg')!r} is not accepted "
            f"(only {', '.join(ALLOWED_TOKEN_ALGS)})"
        )
    if header.get("kid") != gateway.kid:
        raise VerificationError("the token was not signed by the attested key")
    checked = JWS()
    checked.allowed_algs = list(ALLOWED_TOKEN_ALGS)
    try:
        checked.deserialize(token)
        checked.verify(gateway.public_key, alg=SIGNING_ALG)
        claims = json.loads(checked.payload)
    except (JWException, ValueError):
        raise VerificationError("the token's signature is invalid") from None
    if not isinstance(claims, dict):
        raise VerificationError("the token's claims are not a JSON object")
    return claims


def verify_token(
    token: str,
    gateway: VerifiedGateway,
    *,
    response_sha256: str,
    request_body: bytes | None = None,
    nonce: str | None = None,
    policy: VerificationPolicy | None = None,
) -> dict[str, Any]:
    """The token's claims, if it was signed by ``gateway`` over exactly these bytes."""
    policy = policy or VerificationPolicy()
    claims = verified_token_claims(token, gateway)
    now = policy.now()
    if claims.get("keyset_digest") != gateway.keyset_digest or claims.get("tee") != gateway.tee:
        raise VerificationError("the token names another key set or TEE")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < now - CLOCK_SKEW_S:
        raise VerificationError("the token has expired")
    if not isinstance(claims.get("iat"), int) or claims["iat"] > now + CLOCK_SKEW_S:
        raise VerificationError("the token was issued in the future")
    if nonce is not None and claims.get("eat_nonce") != nonce:
        raise VerificationError("the token does not echo this request's nonce (replayed?)")
    if claims.get("response_sha256") != response_sha256:
        raise VerificationError("the response bytes do not match the token (altered or replayed)")
    if (
        request_body is not None
        and claims.get("request_sha256") != hashlib.sha256(request_body).hexdigest()
    ):
        raise VerificationError("the token covers a different request body")
    model = claims.get("model") or {}
    weights = model.get("weights_sha256")
    if policy.expected_weights_sha256 is not None and (
        not isinstance(weights, str) or weights.lower() != policy.expected_weights_sha256.lower()
    ):
        raise VerificationError("the answer came from other model weights than expected")
    if claims.get("status") == 200:
        _check_sealed(model.get("sealed"), policy)
    pii = claims.get("pii") or {}
    if (
        policy.expected_policy_digest is not None
        and pii.get("policy_digest") != policy.expected_policy_digest
    ):
        raise VerificationError("the answer was produced under another PII policy")
    in_guest = (claims.get("upstream") or {}).get("in_guest")
    if policy.require_in_guest and claims.get("status") == 200 and not in_guest:
        raise VerificationError("the answer was produced outside the attested guest")
    return claims


# Brokers that release a key only to attested guests (``file`` is a development key).
ATTESTED_KEY_BROKERS = frozenset({"kbs", "cdh"})


def _check_sealed(sealed: Any, policy: VerificationPolicy) -> None:
    """The token's ``model.sealed`` against the policy; an answer is what it checks, so the
    caller skips error tokens (nothing served them)."""
    if not policy.require_sealed and policy.expected_key_id is None:
        return
    if not isinstance(sealed, dict):
        raise VerificationError("the answer came from model weights that were not sealed")
    if policy.require_sealed and sealed.get("key_broker") not in ATTESTED_KEY_BROKERS:
        raise VerificationError(
            f"the sealed weights' key came from {sealed.get('key_broker')!r}, not a broker that "
            "releases it only after attestation (kbs or cdh)"
        )
    key_id = sealed.get("key_id")
    if policy.expected_key_id is not None and (
        not isinstance(key_id, str) or key_id.lower() != policy.expected_key_id.lower()
    ):
        raise VerificationError("the sealed weights were opened with another key than expected")
