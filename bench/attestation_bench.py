"""Cost of signing and verifying response tokens.

    .venv/bin/python bench/attestation_bench.py [--runs 5000]

Signing: the gateway's ES256 token as it ships (jwcrypto's JWSCore over the gateway's own
compact claims), beside the same claims through jwcrypto's high-level ``JWS`` object in the
same run. The whole stage: hashing
a typical 2 KB response, building the claims, signing and storing the token, which is what
the signing stage adds to every response. Verification: what a client pays per response.
Prints JSON and a table (microseconds).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.attestation.providers import SimulatedProvider  # noqa: E402
from gateway.attestation.service import AttestationService  # noqa: E402
from gateway.attestation.token import ResponseFacts  # noqa: E402
from gateway.attestation.verifier import (  # noqa: E402
    VerificationPolicy,
    verify_evidence,
    verify_token,
)

RESPONSE = json.dumps(
    {"id": "chatcmpl-x", "choices": [{"message": {"content": "word " * 400}}]}
).encode()


def measure(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    for _ in range(min(200, runs)):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return {
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[int(0.99 * (len(samples) - 1))], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "attestation.json"
    )
    args = parser.parse_args()

    service = AttestationService(
        SimulatedProvider("0" * 64),
        tls_spki_sha256="ab" * 32,
        issuer="bench",
        token_ttl_s=600,
        store_ttl_s=600,
    )
    nonce = b"\x01" * 32
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gateway = verify_evidence(
            service.evidence_document(nonce.hex()), nonce, VerificationPolicy(allow_simulated=True)
        )
    response_sha = hashlib.sha256(RESPONSE).hexdigest()
    counter = iter(range(10**9))

    def facts() -> ResponseFacts:
        return ResponseFacts(
            jti=f"chatcmpl-{next(counter)}",
            request_sha256="0" * 64,
            response_sha256=response_sha,
            status=200,
            nonce="client-nonce-123",
            model={"name": "m", "group": "m", "weights_sha256": "f" * 64},
            pii={"policy_digest": "d" * 64, "mode": "tokenize", "counts": {"PERSON": 2}},
            upstream={"name": "m/local-0.0", "kind": "local", "in_guest": True},
        )

    issuer = service._issuer  # the bare signer, without the token store
    report: dict[str, Any] = {"runs": args.runs}
    report["sign_shipped"] = measure(lambda: issuer.issue(facts()), args.runs)

    ids = itertools.count()

    def whole_stage() -> None:
        digest = hashlib.sha256(RESPONSE).hexdigest()
        f = facts()
        f.response_sha256 = digest
        f.jti = f"chatcmpl-{next(ids)}"  # each id is stored once
        service.sign(f, owner="0" * 64)  # stored, as an authenticated request's is

    report["stage_total"] = measure(whole_stage, args.runs)
    token = issuer.issue(facts())
    report["verify_token"] = measure(
        lambda: verify_token(token, gateway, response_sha256=response_sha), args.runs
    )
    try:
        from jwcrypto import jwk, jws
        from jwcrypto.common import json_encode

        key = jwk.JWK.generate(kty="EC", crv="P-256")
        claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))

        def jwcrypto_sign() -> str:
            signer = jws.JWS(json_encode(claims))
            signer.add_signature(key, alg="ES256", protected=json_encode({"alg": "ES256"}))
            return str(signer.serialize(compact=True))

        report["sign_jwcrypto_jws"] = measure(jwcrypto_sign, args.runs)
    except ImportError:
        report["sign_jwcrypto_jws"] = None

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"\n{'operation':34s} {'p50 us':>8s} {'p99 us':>8s}")
    for name in ("sign_shipped", "sign_jwcrypto_jws", "stage_total", "verify_token"):
        value = report[name]
        if value:
            print(f"{name:34s} {value['p50_us']:8.1f} {value['p99_us']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
