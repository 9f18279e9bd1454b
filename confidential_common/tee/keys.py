"""The signing key, the key set the evidence binds, and that binding.

At start-up a gateway (or an engine's remote face) generates an ES256 (P-256) key pair in
memory; it is never written.
JOSE (JWK export, JWS signing) goes through jwcrypto.
The key set is the signing key's JWK plus the SHA-256 of the TLS certificate's
SubjectPublicKeyInfo; its digest, with the verifier's nonce, is what the hardware report's
64-byte REPORTDATA carries:

    REPORTDATA = SHA-512("confidential-gateway/attestation/v1" || 0x00 || digest || nonce)

so a verifier that sees its own nonce and this digest in genuine evidence knows the key set
was held by that TEE when it asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from jwcrypto.common import JWException
from jwcrypto.jwk import JWK, JWKSet
from jwcrypto.jws import JWSCore

BINDING_DOMAIN = b"confidential-gateway/attestation/v1\x00"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def report_data_for(keyset_digest: str, nonce: bytes) -> bytes:
    """The 64 bytes a report must carry to bind ``keyset_digest`` and ``nonce``."""
    return hashlib.sha512(BINDING_DOMAIN + bytes.fromhex(keyset_digest) + nonce).digest()


SIGNING_ALG = "ES256"


def public_jwk(key: JWK) -> dict[str, str]:
    """The public half of ``key`` as served in the key set and at /.well-known/jwks.json."""
    public: dict[str, str] = key.export_public(as_dict=True)
    # RFC 7638 thumbprint as the key id.
    return {**public, "kid": str(key.thumbprint()), "alg": SIGNING_ALG, "use": "sig"}


def jwk_public_key(jwk: dict[str, str]) -> JWK:
    """The verification key a key set names; only a public P-256 key is accepted."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("only P-256 EC keys are supported")
    if "d" in jwk:
        raise ValueError("the key set publishes a private key")
    try:
        key = JWK(kty="EC", crv="P-256", x=jwk["x"], y=jwk["y"])
    except JWException as exc:
        raise ValueError(f"invalid P-256 key: {exc}") from None
    return key


@dataclass(frozen=True)
class KeySet:
    signing_jwk: dict[str, str]
    tls_spki_sha256: str

    def document(self) -> dict[str, Any]:
        return {"signing_key": self.signing_jwk, "tls_spki_sha256": self.tls_spki_sha256}

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.document())).hexdigest()

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> KeySet:
        return cls(dict(document["signing_key"]), str(document["tls_spki_sha256"]))


class SigningKey:
    """This process's ES256 key. The private half lives only in this object's memory."""

    def __init__(self) -> None:
        self._key = JWK.generate(kty="EC", crv="P-256")
        self.jwk = public_jwk(self._key)
        self.kid = self.jwk["kid"]
        published = JWKSet()
        published.add(JWK(**self.jwk))
        self._jwks: dict[str, Any] = published.export(private_keys=False, as_dict=True)

    def jwks(self) -> dict[str, Any]:
        """The JWK Set document (RFC 7517): the public key only, exported by jwcrypto."""
        return self._jwks

    def sign_compact(self, protected_header: str, payload: bytes) -> str:
        """A compact JWS of ``payload`` whose protected header is exactly this JSON text."""
        # JWSCore is jwcrypto's signing primitive; JWS() adds a per-object header registry copy
        # that costs more than the signature itself, for nothing a compact token needs.
        signed = JWSCore(SIGNING_ALG, self._key, protected_header, payload, [SIGNING_ALG]).sign()
        return ".".join(_text(signed[part]) for part in ("protected", "payload", "signature"))
