"""The signing key, the key set the evidence binds, and that binding.

At start-up the gateway generates an ES256 (P-256) key pair in memory; it is never written.
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

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

BINDING_DOMAIN = b"confidential-gateway/attestation/v1\x00"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def report_data_for(keyset_digest: str, nonce: bytes) -> bytes:
    """The 64 bytes a report must carry to bind ``keyset_digest`` and ``nonce``."""
    return hashlib.sha512(BINDING_DOMAIN + bytes.fromhex(keyset_digest) + nonce).digest()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    # RFC 7638 thumbprint as the key id.
    thumbprint = hashlib.sha256(canonical_json({k: jwk[k] for k in ("crv", "kty", "x", "y")}))
    return {**jwk, "kid": b64url(thumbprint.digest()), "alg": "ES256", "use": "sig"}


def jwk_public_key(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("only P-256 EC keys are supported")
    x = int.from_bytes(b64url_decode(jwk["x"]), "big")
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def es256_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def es256_verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """Raise cryptography's InvalidSignature unless ``signature`` (r||s) signs ``data``."""
    if len(signature) != 64:
        from cryptography.exceptions import InvalidSignature

        raise InvalidSignature()
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key.verify(der, data, ec.ECDSA(hashes.SHA256()))


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
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = public_jwk(self._key.public_key())
        self.kid = self.jwk["kid"]

    def sign(self, data: bytes) -> bytes:
        return es256_sign(self._key, data)
