"""A Trustee KBS (Key Broker Service) for tests: the RCAR protocol over real HTTP(S).

    python -m tests.support.kbs_server --policy POLICY.json [--port 0]
        [--tls-cert CERT --tls-key KEY] [--session-timeout-s 300] [--statuses protocol|trustee]

Binds 127.0.0.1 only and prints exactly one line on stdout once it accepts connections,
``kbs-test-server listening on http(s)://127.0.0.1:<port>``. Every request is logged to stderr
as one line (method, path, status, reason); resource bytes and tokens are never logged.

It follows Confidential Containers' Trustee (kbs/docs/kbs_attestation_protocol.md,
kbs/src/attestation/backend.rs, kbs/src/jwe/mod.rs, the sample and TDX verifiers) and the
kbs-types wire structs, written here from those documents, not translated from their code:

1. ``POST /kbs/v0/auth`` takes a Request ``{"version", "tee", "extra-params"}``; the version
   must be exactly 0.4.0 (Trustee's ``=0.4.0``). It answers a Challenge ``{"nonce": <base64
   of 32 random bytes>, "extra-params": ""}`` and sets the cookie ``kbs-session-id``.
2. ``POST /kbs/v0/attest`` takes an Attestation. The runtime data the primary evidence must
   bind is ``{"tee-pubkey", "nonce", "additional-evidence"}`` (the key reduced to the fields of
   kbs-types' TeePubKey, as Trustee's typed deserialisation does), serialised canonically
   (sorted keys, no whitespace) and hashed with SHA-384. ``sample`` evidence
   ``{"svn", "report_data"}`` must carry exactly that digest (base64) and is accepted only with
   ``"accept_sample": true``; an optional ``"simulated"`` member (our SimulatedProvider's signed
   document, its report data the digest and 16 zero bytes) is checked and its measurements
   become claims. ``tdx`` evidence ``{"quote", "cc_eventlog"}`` must carry the digest, padded
   with zeros to 64 bytes, in the quote's REPORTDATA; its measurements become claims.
   The answer is ``{"token": <ES256 JWT>}``; an already attested session gets its token again.
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the session cookie or
   ``Authorization: Bearer <token>`` answers the resource as a flattened JWE (kbs-types'
   Response: protected, encrypted_key, iv, ciphertext, tag; A256GCM with the ASCII of the
   protected header as AAD), its key wrapped for the tee-pubkey: ECDH-ES+A256KW (P-256 or
   P-521, Concat KDF with empty PartyU/PartyV info), RSA-OAEP-256 or the deprecated RSA1_5.

!!! THE TDX QUOTE'S SIGNATURE CHAIN IS NOT VERIFIED !!! There is no Intel PCS collateral
offline, so a forged quote is accepted as long as its REPORTDATA binds the runtime data.
Every TDX token says ``"tdx_signature_verified": false``. The CC event log is not replayed.
Sample evidence proves nothing at all (Trustee's sample attester); simulated evidence proves
only that someone holding a throwaway Ed25519 key signed it. Test use only.

Policy (JSON, re-read from disk on every attest and every resource request, so a test can
edit it while the server runs; write it atomically)::

    {
      "accept_sample": false,
      "reference_values": {"<claim>": ["allowed value", ...]},
      "resources": {
        "<repository>/<type>/<tag>": {"file": "<path>", "allowed": {"<claim>": ["value"]}}
      }
    }

All keys are optional. Every claim named in ``reference_values`` must be in the evidence's
claims with one of the listed values, or attestation fails (401). ``file`` is resolved
against the policy file's folder. ``allowed`` adds claim requirements for one resource.

Errors are Trustee's ErrorInformation ``{"type": ".../errors/<Kind>", "detail"}`` with the
kind names of kbs/src/error.rs. Statuses: with ``--statuses protocol`` (the default) they are
the protocol document's: 401 unauthenticated, 403 denied by policy, 404 unknown resource.
Trustee's code itself answers 401 for everything but InvalidRequestPath and PluginNotFound
(404), so a denied or missing resource is a 401 there; ``--statuses trustee`` does that.
Differences from Trustee: the session timeout is in seconds (Trustee: minutes, default 5);
an attest failure's detail carries its reason (Trustee logs it but answers only "RCAR
handshake Attest failed"); init-data is refused rather than checked; TEEs other than sample
and tdx are refused at attest; policy is this JSON, not Rego.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK
from jwcrypto.jws import JWS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from confidential_common.tee.keys import b64url, b64url_decode, canonical_json
from confidential_common.tee.quotes import EvidenceFormatError, parse_tdx_quote

NAME = "kbs-test-server"
PROTOCOL_VERSION = (0, 4, 0)
SESSION_COOKIE = "kbs-session-id"
ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors"
NONCE_BYTES = 32
REPORT_DATA_BYTES = 64
# kbs-types' Tee names (serde lowercase), and the hyphenated spellings the protocol doc lists.
TEE_NAMES = frozenset(
    [
        "azsnpvtpm",
        "aztdxvtpm",
        "nvidia",
        "sev",
        "sgx",
        "snp",
        "tdx",
        "cca",
        "csv",
        "se",
        "hygondcu",
        "tpm",
        "sample",
        "sampledevice",
        "az-snp-vtpm",
        "az-tdx-vtpm",
    ]
)
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$"
)
_EC_COORDINATE_BYTES = {"P-256": 32, "P-521": 66}
_EC_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-521": ec.SECP521R1,
}

Json = dict[str, Any]


class KbsError(Exception):
    """One ErrorInformation answer: Trustee's kind name, the protocol's status, a detail."""

    def __init__(self, kind: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status
        self.detail = detail


def _auth_failed(reason: str) -> KbsError:
    return KbsError(
        "AttestationError", 401, f"Attestation error: RCAR handshake Auth failed: {reason}"
    )


def _attest_failed(reason: str) -> KbsError:
    return KbsError(
        "AttestationError", 401, f"Attestation error: RCAR handshake Attest failed: {reason}"
    )


# --- policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRule:
    file: Path
    allowed: dict[str, list[str]]


@dataclass(frozen=True)
class Policy:
    accept_sample: bool = False
    reference_values: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[str, ResourceRule] = field(default_factory=dict)


def _claim_lists(value: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object of claim name -> list of values")
    for name, allowed in value.items():
        if not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed):
            raise ValueError(f"{where}.{name}: expected a list of strings")
    return {str(name): list(allowed) for name, allowed in value.items()}


def load_policy(path: Path) -> Policy:
    """The policy file, validated; a ValueError names the key path that is wrong."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read policy: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the policy must be a JSON object")
    unknown = set(document) - {"accept_sample", "reference_values", "resources"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    accept_sample = document.get("accept_sample", False)
    if not isinstance(accept_sample, bool):
        raise ValueError(f"{path}: accept_sample: expected true or false")
    reference = _claim_lists(document.get("reference_values", {}), "reference_values")
    resources_doc = document.get("resources", {})
    if not isinstance(resources_doc, dict):
        raise ValueError(f"{path}: resources: expected an object")
    resources: dict[str, ResourceRule] = {}
    for name, rule in resources_doc.items():
        where = f"resources.{name}"
        if len(name.split("/")) != 3 or not all(name.split("/")):
            raise ValueError(f"{path}: {where}: the name must be <repository>/<type>/<tag>")
        if not isinstance(rule, dict) or not isinstance(rule.get("file"), str):
            raise ValueError(f"{path}: {where}.file: expected a string")
        allowed = _claim_lists(rule.get("allowed", {}), f"{where}.allowed")
        resources[name] = ResourceRule(path.parent / rule["file"], allowed)
    return Policy(accept_sample, reference, resources)


def unmet_claims(claims: Mapping[str, Any], required: Mapping[str, list[str]]) -> list[str]:
    """The required claims that are absent or hold none of their allowed values."""
    return [name for name, allowed in required.items() if claims.get(name) not in allowed]


# --- the Attestation message ---------------------------------------------------------------


def tee_pubkey_fields(value: Any) -> Json:
    """The tee-pubkey as kbs-types' TeePubKey keeps it: only its own fields, the rest dropped."""
    if not isinstance(value, dict):
        raise ValueError("runtime-data.tee-pubkey is not an object")
    names = {"EC": ("kty", "crv", "alg", "x", "y"), "RSA": ("kty", "alg", "n", "e")}.get(
        str(value.get("kty"))
    )
    if names is None:
        raise ValueError(f"unknown tee-pubkey kty {value.get('kty')!r}")
    missing = [n for n in names if not isinstance(value.get(n), str)]
    if missing:
        raise ValueError(f"the tee-pubkey lacks the string fields {missing}")
    return {n: value[n] for n in names}


@dataclass(frozen=True)
class Attestation:
    tee_pubkey: Json
    nonce: str
    primary_evidence: Any
    additional_evidence: str

    @classmethod
    def parse(cls, body: bytes) -> Attestation:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _attest_failed(f"deserialize Attestation: {exc}") from None
        if not isinstance(document, dict):
            raise _attest_failed("deserialize Attestation: not a JSON object")
        runtime = document.get("runtime-data")
        evidence = document.get("tee-evidence")
        if not isinstance(runtime, dict) or not isinstance(runtime.get("nonce"), str):
            raise _attest_failed("deserialize Attestation: runtime-data.nonce missing")
        if not isinstance(evidence, dict) or "primary_evidence" not in evidence:
            raise _attest_failed("deserialize Attestation: tee-evidence.primary_evidence missing")
        if not isinstance(evidence.get("additional_evidence"), str):
            raise _attest_failed(
                "deserialize Attestation: tee-evidence.additional_evidence must be a string"
            )
        if document.get("init-data") is not None:
            raise _attest_failed("init-data is not supported by this test server")
        try:
            tee_pubkey = tee_pubkey_fields(runtime.get("tee-pubkey"))
        except ValueError as exc:
            raise _attest_failed(f"deserialize Attestation: {exc}") from None
        return cls(
            tee_pubkey,
            runtime["nonce"],
            evidence["primary_evidence"],
            evidence["additional_evidence"],
        )

    def runtime_data(self) -> Json:
        """What the primary evidence must bind (Trustee's backend.rs, primary_runtime_data)."""
        return {
            "tee-pubkey": self.tee_pubkey,
            "nonce": self.nonce,
            "additional-evidence": self.additional_evidence,
        }


def runtime_data_digest(runtime_data: Json) -> bytes:
    """SHA-384 of the canonical JSON: Trustee's hash for every TEE but ``se``."""
    return hashlib.sha384(canonical_json(runtime_data)).digest()


# --- evidence verifiers: one function per TEE, listed once in VERIFIERS ---------------------


class EvidenceRejected(ValueError):
    """The evidence does not verify, or does not bind the runtime data."""


@dataclass(frozen=True)
class VerifiedEvidence:
    claims: dict[str, Any]
    notes: dict[str, Any]  # added to the token: what was and was not verified


def _b64_standard(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EvidenceRejected(f"{what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceRejected(f"{what} is not standard base64") from None


def _simulated_measurements(document: Any, expected: bytes) -> dict[str, str]:
    if not isinstance(document, dict) or document.get("format") != "simulated-v1":
        raise EvidenceRejected("simulated: not a simulated-v1 document")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(document["platform_key"]))
        key.verify(b64url_decode(document["signature"]), canonical_json(unsigned))
    except (KeyError, TypeError, ValueError, binascii.Error, InvalidSignature):
        raise EvidenceRejected("simulated: the document's signature is invalid") from None
    if document.get("report_data") != expected.hex():
        raise EvidenceRejected("simulated: report_data does not bind the runtime data")
    measurements = document.get("measurements")
    if not isinstance(measurements, dict):
        raise EvidenceRejected("simulated: measurements missing")
    return {str(k): str(v) for k, v in measurements.items()}


def verify_sample(evidence: Any, digest: bytes, policy: Policy) -> VerifiedEvidence:
    if not policy.accept_sample:
        raise EvidenceRejected(
            "sample evidence proves nothing; the policy's accept_sample is false"
        )
    if not isinstance(evidence, dict) or not isinstance(evidence.get("svn"), str):
        raise EvidenceRejected("Deserialize Quote failed: sample evidence needs a string svn")
    if _b64_standard(evidence.get("report_data", ""), "report_data") != digest:
        raise EvidenceRejected("REPORT_DATA is different from that in Sample Quote")
    claims: dict[str, Any] = {"svn": evidence["svn"]}
    notes: dict[str, Any] = {"sample_evidence": True}
    if "simulated" in evidence:
        padded = digest.ljust(REPORT_DATA_BYTES, b"\0")
        claims.update(_simulated_measurements(evidence["simulated"], padded))
        notes["simulated"] = True
    return VerifiedEvidence(claims, notes)


def verify_tdx(evidence: Any, digest: bytes, policy: Policy) -> VerifiedEvidence:
    if not isinstance(evidence, dict) or not isinstance(evidence.get("quote"), str):
        raise EvidenceRejected("Deserialize TDX Evidence failed: quote missing")
    if not evidence["quote"]:
        raise EvidenceRejected("TDX Quote is empty.")
    try:
        quote = parse_tdx_quote(_b64_standard(evidence["quote"], "quote"))
    except EvidenceFormatError as exc:
        raise EvidenceRejected(f"TDX quote: {exc}") from None
    if quote.report_data != digest.ljust(REPORT_DATA_BYTES, b"\0")[:REPORT_DATA_BYTES]:
        raise EvidenceRejected("REPORT_DATA is different from that in TDX Quote")
    notes = {"tdx_signature_verified": False, "cc_eventlog_replayed": False}
    return VerifiedEvidence(dict(quote.measurements()), notes)


Verifier = Callable[[Any, bytes, Policy], VerifiedEvidence]
VERIFIERS: dict[str, Verifier] = {"sample": verify_sample, "tdx": verify_tdx}


# --- the JWE resource response ----------------------------------------------------------------


def concat_kdf(shared_secret: bytes, algorithm: str, key_bytes: int) -> bytes:
    """NIST SP 800-56A Concat KDF with SHA-256, as JOSE (RFC 7518 4.6.2) with empty apu/apv."""
    other_info = (
        len(algorithm).to_bytes(4, "big")
        + algorithm.encode()
        + (0).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + (key_bytes * 8).to_bytes(4, "big")
    )
    output = b""
    for counter in range(1, -(-key_bytes // 32) + 1):
        output += hashlib.sha256(counter.to_bytes(4, "big") + shared_secret + other_info).digest()
    return output[:key_bytes]


def _wrap_for_ec(tee_pubkey: Json, cek: bytes) -> tuple[Json, bytes]:
    crv, alg = tee_pubkey["crv"], tee_pubkey["alg"]
    if crv not in _EC_CURVES or alg != "ECDH-ES+A256KW":
        raise ValueError(f"curve {crv} and algorithm {alg} is not supported")
    size = _EC_COORDINATE_BYTES[crv]
    x, y = b64url_decode(tee_pubkey["x"]), b64url_decode(tee_pubkey["y"])
    if len(x) != size or len(y) != size:
        raise ValueError("invalid bytes length of the tee-pubkey's coordinates")
    curve = _EC_CURVES[crv]()
    peer = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
    ).public_key()
    ephemeral = ec.generate_private_key(curve)
    kek = concat_kdf(ephemeral.exchange(ec.ECDH(), peer), alg, 32)
    epk = ephemeral.public_key().public_numbers()
    header = {
        "alg": alg,
        "enc": "A256GCM",
        "epk": {
            "crv": crv,
            "kty": "EC",
            "x": b64url(epk.x.to_bytes(size, "big")),
            "y": b64url(epk.y.to_bytes(size, "big")),
        },
    }
    return header, aes_key_wrap(kek, cek)


def _wrap_for_rsa(tee_pubkey: Json, cek: bytes) -> tuple[Json, bytes]:
    alg = tee_pubkey["alg"]
    key = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(tee_pubkey["e"]), "big"),
        int.from_bytes(b64url_decode(tee_pubkey["n"]), "big"),
    ).public_key()
    if alg == "RSA-OAEP-256":
        oaep = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        return {"alg": alg, "enc": "A256GCM"}, key.encrypt(cek, oaep)
    if alg == "RSA1_5":
        _log_line("WARNING: JWE for a tee-pubkey with the deprecated RSA1_5 (PKCS#1 v1.5)")
        return {"alg": alg, "enc": "A256GCM"}, key.encrypt(cek, padding.PKCS1v15())
    raise ValueError(f"algorithm {alg} is not supported")


def encrypt_resource(tee_pubkey: Json, payload: bytes) -> dict[str, str]:
    """kbs-types' Response for ``payload``: a flattened JWE with no ``aad`` member."""
    cek = AESGCM.generate_key(bit_length=256)
    wrap = _wrap_for_ec if tee_pubkey["kty"] == "EC" else _wrap_for_rsa
    header, encrypted_key = wrap(tee_pubkey, cek)
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, payload, protected.encode("ascii"))
    return {
        "protected": protected,
        "encrypted_key": b64url(encrypted_key),
        "iv": b64url(iv),
        "ciphertext": b64url(sealed[:-16]),
        "tag": b64url(sealed[-16:]),
    }


# --- tokens and sessions ----------------------------------------------------------------------


class TokenIssuer:
    """This process's ES256 key (jwcrypto); it signs attestation tokens and checks bearers."""

    def __init__(self) -> None:
        self._key = JWK.generate(kty="EC", crv="P-256")
        self.public_jwk: dict[str, str] = self._key.export_public(as_dict=True)
        self._kid = str(self._key.thumbprint())

    def issue(self, claims: Json) -> str:
        token = JWS(canonical_json({**claims, "jwk": self.public_jwk}))
        header = {"alg": "ES256", "typ": "JWT", "kid": self._kid}
        token.add_signature(self._key, alg="ES256", protected=json.dumps(header))
        return str(token.serialize(compact=True))

    def verify(self, token: str, now: float) -> Json:
        try:
            jws = JWS()
            jws.deserialize(token)
            jws.verify(self._key, alg="ES256")
            claims = json.loads(jws.payload)
        except (JWException, ValueError) as exc:
            raise KbsError("TokenVerifierError", 401, f"Token Verifier error: {exc}") from None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
            raise KbsError("TokenVerifierError", 401, "Token Verifier error: no exp claim")
        if claims["exp"] <= now:
            raise KbsError("TokenVerifierError", 401, "Token Verifier error: the token expired")
        return claims


@dataclass
class Session:
    id: str
    tee: str
    nonce: str
    expires_at: float  # seconds since the epoch: the cookie says it too
    token: str | None = None

    def set_cookie(self, response: Response) -> None:
        expires = formatdate(self.expires_at, usegmt=True)
        # Like Trustee's cookie: only Expires (no Path, so it applies under /kbs/v0).
        response.headers.append("set-cookie", f"{SESSION_COOKIE}={self.id}; Expires={expires}")


class SessionExpired(Exception):
    """The cookie names a session whose time is up; it is forgotten now."""


class SessionStore:
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._sessions: dict[str, Session] = {}

    def open(self, tee: str, nonce: str) -> Session:
        session = Session(uuid.uuid4().hex, tee, nonce, time.time() + self._timeout_s)
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str) -> Session | None:
        """The live session; an expired one is forgotten (Trustee deletes it on sight)."""
        session = self._sessions.get(session_id)
        if session is not None and session.expires_at < time.time():
            del self._sessions[session_id]
            raise SessionExpired(session_id)
        return session


# --- the HTTP face ------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[tuple[Response, str]]]
ANY = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]  # Starlette defaults to GET


def _log_line(text: str) -> None:
    print(f"{NAME}: {text}", file=sys.stderr, flush=True)


class KbsTestServer:
    def __init__(
        self, policy_path: Path, *, session_timeout_s: float = 300.0, statuses: str = "protocol"
    ) -> None:
        self._policy_path = policy_path
        self._sessions = SessionStore(session_timeout_s)
        self._issuer = TokenIssuer()
        self._trustee_statuses = statuses == "trustee"
        load_policy(policy_path)  # refuse to start on a broken policy

    def app(self) -> ASGIApp:
        kbs = "/kbs/v0"
        return Starlette(
            routes=[
                Route("/healthz", self._logged(self._healthz), methods=["GET"]),
                Route(f"{kbs}/auth", self._logged(self._auth), methods=["POST"]),
                Route(f"{kbs}/attest", self._logged(self._attest), methods=["POST"]),
                Route(f"{kbs}/resource/{{path:path}}", self._logged(self._resource), methods=ANY),
                Route(f"{kbs}/{{plugin}}", self._logged(self._no_plugin), methods=ANY),
                Route(
                    f"{kbs}/{{plugin}}/{{path:path}}", self._logged(self._no_plugin), methods=ANY
                ),
                Route("/{path:path}", self._logged(self._not_found), methods=ANY),
            ]
        )

    def _logged(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                response, reason = await handler(request)
            except KbsError as exc:
                status = exc.status
                if self._trustee_statuses:
                    status = 404 if exc.kind in ("InvalidRequestPath", "PluginNotFound") else 401
                info = {"type": f"{ERROR_TYPE_PREFIX}/{exc.kind}", "detail": exc.detail}
                response, reason = JSONResponse(info, status), f"{exc.kind}: {exc.detail}"
            _log_line(f"{request.method} {request.url.path} {response.status_code} {reason}")
            return response

        return endpoint

    def _policy(self) -> Policy:
        try:
            return load_policy(self._policy_path)
        except ValueError as exc:
            raise KbsError("PolicyEngineError", 401, f"Policy engine error: {exc}") from None

    async def _healthz(self, request: Request) -> tuple[Response, str]:
        return PlainTextResponse(""), "healthy"

    async def _not_found(self, request: Request) -> tuple[Response, str]:
        return PlainTextResponse("", 404), "no such endpoint"

    async def _no_plugin(self, request: Request) -> tuple[Response, str]:
        plugin = request.path_params["plugin"]
        raise KbsError("PluginNotFound", 404, f"Plugin {plugin} not found")

    async def _auth(self, request: Request) -> tuple[Response, str]:
        try:
            document = json.loads(await request.body())
        except ValueError as exc:
            raise _auth_failed(f"deserialize Request: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("version"), str):
            raise _auth_failed("deserialize Request: missing field `version`")
        if document.get("tee") not in TEE_NAMES:
            raise _auth_failed(f"deserialize Request: unknown tee {document.get('tee')!r}")
        if "extra-params" not in document:
            raise _auth_failed("deserialize Request: missing field `extra-params`")
        version = _SEMVER.match(document["version"])
        if version is None:
            raise _auth_failed("failed to parse KBS version")
        numbers = tuple(int(version.group(i)) for i in (1, 2, 3))
        if numbers != PROTOCOL_VERSION or version.group(4) is not None:
            raise _auth_failed(
                "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is "
                + document["version"]
            )
        nonce = base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode()
        session = self._sessions.open(document["tee"], nonce)
        response = JSONResponse({"nonce": nonce, "extra-params": ""})
        session.set_cookie(response)
        return response, f"challenge issued, session {session.id[:8]} tee {session.tee}"

    async def _attest(self, request: Request) -> tuple[Response, str]:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id is None:
            raise _attest_failed("cookie not found")
        attestation = Attestation.parse(await request.body())
        try:
            session = self._sessions.find(session_id)
        except SessionExpired:
            raise _attest_failed("session expired.") from None
        if session is None:
            raise _attest_failed("session not found")
        if session.token is not None:
            response = JSONResponse({"token": session.token})
            session.set_cookie(response)
            return response, f"session {session.id[:8]} already attested: same token"
        if attestation.nonce != session.nonce:
            raise _attest_failed(
                "the nonce in the handshake session is different from the client side in "
                "KBS protocol's Attestation message"
            )
        verifier = VERIFIERS.get(session.tee)
        if verifier is None:
            raise _attest_failed(f"TEE {session.tee} is not supported by this test server")
        policy = self._policy()
        runtime_data = attestation.runtime_data()
        try:
            verified = verifier(
                attestation.primary_evidence, runtime_data_digest(runtime_data), policy
            )
        except EvidenceRejected as exc:
            raise _attest_failed(f"verify TEE evidence failed: {exc}") from None
        unmet = unmet_claims(verified.claims, policy.reference_values)
        if unmet:
            shown = {name: verified.claims.get(name) for name in unmet}
            raise _attest_failed(f"claims not among the reference values: {shown}")
        now = int(time.time())
        session.token = self._issuer.issue(
            {
                "iss": NAME,
                "iat": now,
                "exp": int(session.expires_at),
                "tee": session.tee,
                "tcb-status": verified.claims,
                "customized_claims": {"runtime_data": runtime_data},
                **verified.notes,
            }
        )
        response = JSONResponse({"token": session.token})
        session.set_cookie(response)
        return response, f"session {session.id[:8]} attested, claims {verified.claims}"

    def _attested_claims(self, request: Request) -> Json:
        """The token claims of the caller: its session's first (as Trustee), else its bearer."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id is not None:
            try:
                session = self._sessions.find(session_id)
            except SessionExpired:
                session = None
            if session is not None and session.token is not None:
                return self._issuer.verify(session.token, time.time())
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise KbsError("TokenNotFound", 401, "Attestation Token not found")
        return self._issuer.verify(token.strip(), time.time())

    async def _resource(self, request: Request) -> tuple[Response, str]:
        name = request.path_params["path"]
        if request.method != "GET":
            raise KbsError(
                "AdminAuthAccess", 401, "admin access denied: this test server has no admin API"
            )
        claims = self._attested_claims(request)
        if len(name.split("/")) != 3 or not all(name.split("/")):
            raise KbsError("InvalidRequestPath", 404, f"Request path resource/{name} is invalid")
        rule = self._policy().resources.get(name)
        if rule is None:
            raise KbsError("PluginInternalError", 404, f"Plugin internal error: no resource {name}")
        tcb = claims.get("tcb-status", {})
        unmet = unmet_claims(tcb if isinstance(tcb, dict) else {}, rule.allowed)
        if unmet:
            raise KbsError("PolicyDeny", 403, f"Access denied by policy: {name} needs {unmet}")
        try:
            payload = rule.file.read_bytes()
        except OSError as exc:
            raise KbsError(
                "PluginInternalError", 404, f"Plugin internal error: {name}: {exc.strerror}"
            ) from None
        tee_pubkey = claims.get("customized_claims", {}).get("runtime_data", {}).get("tee-pubkey")
        try:
            body = encrypt_resource(tee_pubkey_fields(tee_pubkey), payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise KbsError("JweError", 401, f"JWE failed: {exc}") from None
        alg = json.loads(b64url_decode(body["protected"]))["alg"]
        return JSONResponse(body), f"released {name} ({len(payload)} bytes) as {alg} JWE"


# --- serving --------------------------------------------------------------------------------------


async def serve_on_loopback(
    app: ASGIApp,
    *,
    name: str,
    port: int,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` (0: any free port); once it accepts connections,
    print ``<name> listening on <url>`` on stdout. Returns when uvicorn stops (SIGINT/SIGTERM)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        scheme = "https" if tls_cert else "http"
        bound = listener.getsockname()[1]
        print(f"{name} listening on {scheme}://127.0.0.1:{bound}", flush=True)
    await serving


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kbs_server")
    parser.add_argument("--policy", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--session-timeout-s", type=float, default=300.0)
    parser.add_argument("--statuses", choices=("protocol", "trustee"), default="protocol")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    try:
        kbs = KbsTestServer(
            args.policy, session_timeout_s=args.session_timeout_s, statuses=args.statuses
        )
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(
        serve_on_loopback(
            kbs.app(), name=NAME, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key
        )
    )


if __name__ == "__main__":
    main()
