"""``confidential-gateway verify``: attest a running gateway from the command line."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import ssl
import sys
import time
import warnings
from typing import Any

import httpx

from gateway.attestation.tdx_verify import load_collateral
from gateway.attestation.tee_policy import parse_snp_tcb, parse_tdx_svn
from gateway.attestation.verifier import (
    SimulatedEvidenceWarning,
    VerificationError,
    VerificationPolicy,
    spki_sha256_of_der_certificate,
    verify_evidence,
    verify_token,
)

BANNER = "!" * 78


def policy_from_args(args: argparse.Namespace) -> VerificationPolicy:
    expected = {}
    for item in args.expect:
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"verify: --expect needs NAME=HEX, got {item!r}")
        expected[name] = value
    now = args.now
    floors: dict[str, Any] = {}
    try:
        if getattr(args, "snp_min_tcb", None) is not None:
            floors["snp_min_tcb"] = parse_snp_tcb(args.snp_min_tcb)
        if getattr(args, "tdx_min_tee_tcb_svn", None) is not None:
            floors["tdx_min_tee_tcb_svn"] = parse_tdx_svn(args.tdx_min_tee_tcb_svn)
    except ValueError as exc:
        raise SystemExit(f"verify: bad TCB floor ({exc})") from None
    pins = {
        "--expect-weights-sha256": (args.expect_weights_sha256, 64),
        "--expect-key-id": (args.expect_key_id, 32),
    }
    for flag, (value, length) in pins.items():
        if value is not None and not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value):
            raise SystemExit(f"verify: {flag} needs {length} hex characters, got {value!r}")
    if args.require_sealed and args.expect_key_id is None and args.expect_weights_sha256 is None:
        # The host writes the config: it could seal a model of its own and run its own KBS.
        print(
            "verify: --require-sealed alone proves only that some broker released some key; "
            "pin yours with --expect-key-id (or the weights with --expect-weights-sha256)",
            file=sys.stderr,
        )
    return VerificationPolicy(
        allow_simulated=args.allow_simulated,
        allow_debug=getattr(args, "allow_debug", False),
        **floors,
        tdx_collateral=load_collateral(args.tdx_collateral) if args.tdx_collateral else None,
        snp_vcek=args.snp_vcek.read_bytes() if args.snp_vcek else None,
        snp_ask_ark=args.snp_chain.read_bytes() if args.snp_chain else None,
        snp_ark_sha256=args.snp_ark_sha256,
        expected_measurements=expected,
        expected_weights_sha256=args.expect_weights_sha256,
        require_sealed=args.require_sealed,
        expected_key_id=args.expect_key_id,
        now=(lambda: float(now)) if now is not None else time.time,
    )


def run_verify(args: argparse.Namespace) -> int:
    policy = policy_from_args(args)
    context = ssl.create_default_context(cafile=str(args.cacert) if args.cacert else None)
    nonce = secrets.token_bytes(32)
    url = args.url.rstrip("/") + f"/v1/attestation?nonce={nonce.hex()}"
    try:
        with httpx.Client(verify=context, timeout=30) as client:
            response = client.get(url)
            stream = response.extensions.get("network_stream")
            ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
            peer = ssl_object.getpeercert(True) if ssl_object else None
        if response.status_code != 200:
            raise VerificationError(f"attestation endpoint answered HTTP {response.status_code}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SimulatedEvidenceWarning)
            gateway = verify_evidence(response.json(), nonce, policy)
        if peer is None or spki_sha256_of_der_certificate(peer) != gateway.keyset.tls_spki_sha256:
            raise VerificationError("the TLS key of this connection is not the attested one")
        report = {
            "verified": True,
            "tee": gateway.tee,
            "keyset_digest": gateway.keyset_digest,
            "signing_kid": gateway.kid,
            "tls_spki_sha256": gateway.keyset.tls_spki_sha256,
            "measurements": gateway.measurements,
        }
        if args.token:
            if args.response_file is None:
                raise VerificationError(
                    "--token needs --response-file (and ideally --request-file)"
                )
            claims = verify_token(
                args.token,
                gateway,
                response_sha256=hashlib.sha256(args.response_file.read_bytes()).hexdigest(),
                request_body=args.request_file.read_bytes() if args.request_file else None,
                policy=policy,
            )
            report["token_claims"] = claims
    except (VerificationError, httpx.HTTPError, OSError, ValueError) as exc:
        print(f"verify: FAILED: {exc}", file=sys.stderr)
        return 1
    if caught:
        print(BANNER, file=sys.stderr)
        print("!! SIMULATED EVIDENCE: no hardware TEE vouches for this gateway.", file=sys.stderr)
        print("!! Accepted only because of --allow-simulated. Never rely on it.", file=sys.stderr)
        print(BANNER, file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0
