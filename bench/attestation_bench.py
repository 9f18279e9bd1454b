"""Cost of signing and verifying response tokens.

    python -m bench.attestation_bench [--runs 5000] [--json FILE]

Signing: the gateway's ES256 token as it ships (jwcrypto's JWSCore over the gateway's own
compact claims), beside the same claims through jwcrypto's high-level ``JWS`` object in the
same run. The whole stage: hashing
a typical 2 KB response, building the claims, signing and storing the token, which is what
the signing stage adds to every response. Verification: what a client pays per response.
Prints JSON and a table (microseconds).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.paths import default_json
from bench.report import describe, emit, table
from bench.stats import summary
from confidential_common.tee.providers import SimulatedProvider
from gateway.attestation.service import AttestationService
from gateway.attestation.token import ResponseFacts
from gateway.attestation.verifier import VerificationPolicy, verify_evidence, verify_token

OPERATIONS = ("sign_shipped", "sign_jwcrypto_jws", "stage_total", "verify_token")

RESPONSE = json.dumps(
    {"id": "chatcmpl-x", "choices": [{"message": {"content": "word " * 400}}]}
).encode()


def measure(fn: Callable[[], Any], runs: int) -> dict[str, float | None]:
    for _ in range(min(200, runs)):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return summary(samples, (50, 99), unit="us", digits=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=default_json("attestation"))
    args = parser.parse_args()

    service = AttestationService(
        SimulatedProvider("0" * 64),
        tls_spki_sha256="ab" * 32,
        issuer="bench",
        token_ttl_s=600,
        store_ttl_s=600,
    )
    nonce = b"\x01" * 32
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
    figures: dict[str, Any] = {"runs": args.runs}
    figures["sign_shipped"] = measure(lambda: issuer.issue(facts()), args.runs)

    ids = itertools.count()

    def whole_stage() -> None:
        digest = hashlib.sha256(RESPONSE).hexdigest()
        f = facts()
        f.response_sha256 = digest
        f.jti = f"chatcmpl-{next(ids)}"  # each id is stored once
        service.sign(f, owner="0" * 64)  # stored, as an authenticated request's is

    figures["stage_total"] = measure(whole_stage, args.runs)
    token = issuer.issue(facts())
    figures["verify_token"] = measure(
        lambda: verify_token(token, gateway, response_sha256=response_sha), args.runs
    )
    try:
        from jwcrypto import jwk, jws
        from jwcrypto.common import json_encode

        key = jwk.JWK.generate(kty="EC", crv="P-256")
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))

        def jwcrypto_sign() -> str:
            signer = jws.JWS(json_encode(claims))
            signer.add_signature(key, alg="ES256", protected=json_encode({"alg": "ES256"}))
            return str(signer.serialize(compact=True))

        figures["sign_jwcrypto_jws"] = measure(jwcrypto_sign, args.runs)
    except ImportError:
        figures["sign_jwcrypto_jws"] = None

    report = emit("attestation", figures, args.json)
    rows = [
        [name, report[name]["p50_us"], report[name]["p99_us"]]
        for name in OPERATIONS
        if report[name]
    ]
    print()
    print(table(["operation", "p50 us", "p99 us"], rows))
    print(f"\n{describe(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
