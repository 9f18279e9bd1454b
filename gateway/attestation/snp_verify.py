"""Verify an AMD SEV-SNP report: VCEK signature over the report, and VCEK <- ASK <- ARK.

The VCEK signs with ECDSA P-384/SHA-384 (r and s stored little-endian); AMD's ASK and ARK
sign with RSA-PSS, SHA-384, salt length 48. Pin the ARK you trust (``expected_ark_sha256``)
to tie the chain to AMD rather than to whoever sent it.
"""

from __future__ import annotations

import datetime
import hashlib
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from confidential_common.tee.quotes import SnpReport

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_HWID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")


class SnpVerificationError(Exception):
    pass


def load_certificate(data: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        # AMD KDS issues VCEKs with serial number 0, which cryptography warns about.
        warnings.simplefilter("ignore")
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)


def load_chain(pem: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(pem)


def _check_pss(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnpVerificationError(f"{what}: issuer key is not RSA")
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise SnpVerificationError(f"{what}: signature does not verify") from None


def _check_time(cert: x509.Certificate, now: datetime.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SnpVerificationError(f"{what} is not valid at {now.isoformat()}")


def verify_snp_report(
    report: SnpReport,
    *,
    vcek: bytes,
    ask_ark_pem: bytes,
    now: datetime.datetime,
    expected_ark_sha256: str | None = None,
) -> None:
    """Raise SnpVerificationError unless the report is signed by a VCEK that chains to the ARK."""
    vcek_cert = load_certificate(vcek)
    chain = load_chain(ask_ark_pem)
    if len(chain) != 2:
        raise SnpVerificationError("the ASK/ARK chain must hold exactly two certificates")
    ask, ark = chain
    ark_digest = hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
    if expected_ark_sha256 is not None and ark_digest != expected_ark_sha256.lower():
        raise SnpVerificationError("the ARK is not the pinned AMD root")
    _check_pss(ark, ark, "ARK self-signature")
    _check_pss(ask, ark, "ASK")
    _check_pss(vcek_cert, ask, "VCEK")
    for cert, name in ((vcek_cert, "VCEK"), (ask, "ASK"), (ark, "ARK")):
        _check_time(cert, now, name)
    try:
        hwid = vcek_cert.extensions.get_extension_for_oid(_HWID_OID).value
        hwid_bytes = getattr(hwid, "value", b"")
        if hwid_bytes and hwid_bytes[-64:].hex() != report.chip_id:
            raise SnpVerificationError("the VCEK belongs to another chip")
    except x509.ExtensionNotFound:
        pass
    if report.sig_algo != 1:
        raise SnpVerificationError(f"unsupported report signature algorithm {report.sig_algo}")
    key = vcek_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SnpVerificationError("the VCEK key is not ECDSA")
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SnpVerificationError("the report signature does not verify with the VCEK") from None
