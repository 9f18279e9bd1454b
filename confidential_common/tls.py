"""A TLS server identity: generated in memory at start-up, or the operator's files. The
gateway's listener and the engine's remote face both serve one.

A generated private key never touches the disk: it is handed to OpenSSL through an
anonymous in-memory file (``memfd``) that is closed right after loading. Only the
certificate is written, so clients can trust it.

The generated certificate is a leaf, not a CA: CA:FALSE (critical), digitalSignature only
(no keyCertSign), serverAuth. Clients pin the file itself as their trust anchor; OpenSSL (so
Python's ``ssl``, httpx and the OpenAI SDK, curl and Node) accepts a self-signed certificate
from the trust store as an anchor whatever its CA bit, and since it cannot sign certificates,
nothing signed with its key is trusted. The attestation key set binds this leaf's SPKI.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
CERT_VALIDITY = datetime.timedelta(days=30)


class TLSSetupError(Exception):
    """The TLS identity could not be created or loaded."""


@dataclass(frozen=True)
class TLSIdentity:
    """What a server serves and what clients (and attestation) need to know about it."""

    context: ssl.SSLContext
    cert_pem: bytes
    cert_path: Path
    generated: bool

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def fingerprint_sha256(self) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    @property
    def spki_sha256(self) -> str:
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()


def server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """A fresh P-256 key and a self-signed leaf certificate for ``names`` (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "localhost")]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # An EC key signs the handshake; keyEncipherment is for RSA key transport only.
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_chain_from_memory(context: ssl.SSLContext, cert_path: Path, key_pem: bytes) -> None:
    fd = os.memfd_create("tls-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, key_pem)
        context.load_cert_chain(certfile=str(cert_path), keyfile=f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _write_certificate(path: Path, cert_pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(cert_pem)
    tmp.replace(path)


def identity_from_files(cert_file: Path, key_file: Path) -> TLSIdentity:
    """The operator's certificate chain and key, as they are on disk."""
    context = server_context()
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
        cert_pem = cert_file.read_bytes()
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"cannot load {cert_file} / {key_file}: {exc}") from None
    return TLSIdentity(context, cert_pem, cert_file, generated=False)


def generated_identity(names: list[str], cert_out: Path) -> TLSIdentity:
    """A fresh key for ``names``, held in memory only; its certificate is written to
    ``cert_out`` for clients to trust."""
    context = server_context()
    cert_pem, key_pem = self_signed(names)
    try:
        _write_certificate(cert_out, cert_pem)
        _load_chain_from_memory(context, cert_out, key_pem)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"cannot set up the generated TLS identity: {exc}") from None
    finally:
        del key_pem
    return TLSIdentity(context, cert_pem, cert_out, generated=True)
